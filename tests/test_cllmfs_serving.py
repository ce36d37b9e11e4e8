"""What the gateway needs to serve CLLMFS in process: the shipped adapter, selected by name."""

from __future__ import annotations

from typing import Any

from nerve.generation.weights import CLLMFS_ADAPTER, resolve_adapter
from nerve.settings import REPO_ROOT, Settings
from trainers.cllmfs.cli import NAME
from trainers.cllmfs.config import CllmfsConfig
from trainers.wraner.cli import parse_args


def test_llm_adapter_cllmfs_selects_the_shipped_adapter() -> None:
    assert Settings(llm={"adapter": "cllmfs"}).llm.adapter == "cllmfs"
    path = resolve_adapter("cllmfs")
    assert path == REPO_ROOT / CLLMFS_ADAPTER
    assert path.is_file() and path.name == f"{NAME}-lora.gguf"
    assert (path.parent / f"{NAME}-peft" / "adapter_config.json").is_file()


def test_the_shipped_config_is_the_fold_a_run_plus_the_contrastive_settings() -> None:
    shipped = REPO_ROOT / "model_repository/llm_cpu/1/adapters/cllmfs-train-config.yaml"
    config, _ = parse_args(["--config", str(shipped)], CllmfsConfig)
    fold_a, _ = parse_args(
        ["--config", str(REPO_ROOT / "trainers/configs/gemma3-270m-cpu-cllmfs-fold-a.yaml")],
        CllmfsConfig,
    )
    assert isinstance(config, CllmfsConfig) and config.contrastive_weight == 0.1
    different = {
        name for name in CllmfsConfig.model_fields if getattr(config, name) != getattr(fold_a, name)
    }
    # only where the run kept its data, caches and checkpoints: the same budget as the shipped
    # IF-WRANER adapter (1,000 steps) and the config's contrastive view (rmsnorm)
    assert different <= {"data_dir", "model_cache_dir", "run_dir"}
    assert config.steps == 1000 and config.contrastive_normalise == "rmsnorm"


async def test_behind_triton_method_cllmfs_calls_its_own_model() -> None:
    """NERVE_GENERATOR=triton: method=cllmfs is a TritonGenerator on NERVE_TRITON_CLLMFS_MODEL;
    the adapter is Triton's to load (the gateway's host need not hold the file); unset, the
    method is not served."""
    from nerve.generation.triton import TritonGenerator
    from nerve.methods.builder_deps import MethodDeps
    from nerve.methods.cllmfs.builder import build as build_cllmfs
    from nerve.metrics import Metrics

    def cllmfs(adapter: str, generator: str = "triton") -> Any:
        settings = Settings(
            generator=generator,
            triton={"url": "h:1"},
            cllmfs={"adapter": adapter},
            lar={"postprocess": False},
        )
        wraner = TritonGenerator("h:1", "ensemble")
        return build_cllmfs(MethodDeps(settings, wraner, Metrics()))

    handler = cllmfs("/not/on/this/host/cllmfs-lora.gguf")
    assert handler is not None and handler.name == "cllmfs"
    assert handler.model == "llm_cpu_cllmfs"
    await handler.close()
    assert cllmfs("none") is None
    assert cllmfs("cllmfs", generator="openai") is None

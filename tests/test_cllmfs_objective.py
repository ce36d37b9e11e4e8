"""The CLLMFS objective on a tiny random Gemma-3 (real tokenizer): token roles, the layer the
hook reads, gradients into the LoRA weights, and a short run of the IF-WRANER loop with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nerve.data.crossner_types import entity_types_for
from nerve.prompting.prompt import build_prompt, render_answer
from nerve.vocab.types import Example, Span
from trainers.cllmfs.config import CllmfsConfig
from trainers.cllmfs.loss import IGNORE, chance_level, info_nce, normalise_states
from trainers.cllmfs.objective import (
    ANCHORS,
    LABELS,
    ContrastiveObjective,
    decoder_layers,
    norm_after,
    resolve_layer,
)
from trainers.cllmfs.roles import NON_ENTITY, encode_roles
from trainers.wraner.prompts import TrainPrompt
from trainers.wraner.train import add_lora, collate, latest_checkpoint, train

torch = pytest.importorskip("torch")

TYPES = ["person", "location"]
SHOT = Example(
    text="Anna Meyer lives in Oslo .",
    entities=[Span(start=0, end=10, type="person"), Span(start=20, end=24, type="location")],
)
QUERY = Example(
    text="John Smith flew from Oslo to Lima .",
    entities=[
        Span(start=0, end=10, type="person"),
        Span(start=21, end=25, type="location"),
        Span(start=29, end=33, type="location"),
    ],
)


def _prompt(renamed: dict[str, str] | None = None, query: Example = QUERY) -> TrainPrompt:
    names = renamed or {}
    shown = [names.get(t, t) for t in TYPES]
    types = [
        t.model_copy(update={"name": names.get(t.name, t.name)}) for t in entity_types_for(TYPES)
    ]

    def retyped(e: Example) -> Example:
        spans = [s.model_copy(update={"type": names.get(s.type, s.type)}) for s in e.entities]
        return e.model_copy(update={"entities": spans})

    return TrainPrompt(
        id="q",
        prompt=build_prompt(types, [retyped(SHOT)], query.text).text,
        answer=render_answer(retyped(query), shown),
        types=TYPES,
        removed=[],
        shuffled=False,
        k=1,
        renamed=names,
    )


def _config(tmp_path: Path, **overrides: object) -> CllmfsConfig:
    values: dict[str, object] = {
        "dtype": "float32",
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj", "down_proj"],
        "lr": 1e-2,
        "warmup_steps": 1,
        "steps": 3,
        "batch_size": 1,
        "grad_accum": 1,
        "checkpoint_every": 1,
        "log_every": 1,
        "run_dir": tmp_path / "run",
        "contrastive_weight": 1.0,
        "contrastive_noise": 0.1,
    }
    values.update(overrides)
    return CllmfsConfig.model_validate(values)


def _load(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return model, tokenizer


def _marked(tokenizer, ids: list[int], roles: list[int], wanted) -> list[str]:
    return [tokenizer.decode([i]).strip() for i, r in zip(ids, roles, strict=True) if wanted(r)]


@pytest.mark.parametrize("renamed", [None, {"person": "individual"}])
def test_roles_mark_mentions_in_sentences_and_answers(tiny_model_dir: Path, renamed) -> None:
    _, tokenizer = _load(tiny_model_dir)
    prompt = _prompt(renamed)
    ids, roles, anchors = encode_roles(tokenizer, prompt, window=1)
    assert len(ids) == len(roles) == len(anchors)
    person = "".join(_marked(tokenizer, ids, roles, lambda r: r == 1))
    location = "".join(_marked(tokenizer, ids, roles, lambda r: r == 2))
    # the example's sentence and answer line, the query's sentence, then the answer
    assert person == "AnnaMeyer" * 2 + "JohnSmith" * 2
    assert location == "Oslo" * 2 + "OsloLima" * 2
    answer_start = len(tokenizer(prompt.prompt)["input_ids"])
    assert all(a == 0 for a in anchors[:answer_start])
    anchored = _marked(
        tokenizer,
        ids,
        [r if a else IGNORE for r, a in zip(roles, anchors, strict=True)],
        lambda r: r > 0,
    )
    assert "".join(anchored) == "JohnSmithOsloLima"
    neighbours = _marked(tokenizer, ids, roles, lambda r: r == NON_ENTITY)
    assert "lives" in neighbours and "flew" in neighbours
    assert "Find" not in neighbours  # instruction text has no role


def test_default_layer_is_80_percent_of_depth() -> None:
    assert resolve_layer(None, 18) == 14
    assert resolve_layer(None, 2) == 2
    assert resolve_layer(1, 18) == 1
    with pytest.raises(ValueError, match=r"within 1\.\.18"):
        resolve_layer(19, 18)


@pytest.mark.parametrize("layer", [1, 2])
def test_loss_reads_the_configured_layer_and_reaches_lora(
    tiny_model_dir: Path, tmp_path: Path, layer: int
) -> None:
    model, tokenizer = _load(tiny_model_dir)
    config = _config(tmp_path, contrastive_layer=layer, contrastive_noise=0.0)
    model = add_lora(model, config)
    objective = ContrastiveObjective(config)
    batch = collate([objective.encode(tokenizer, _prompt())], tokenizer.pad_token_id)
    total, parts = objective.loss(model, batch)
    assert torch.isfinite(total) and parts["anchors"] > 0
    seen = objective.last_capture
    assert seen is not None and seen.layer == layer and seen.calls == [layer]
    with torch.no_grad():
        states = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            output_hidden_states=True,
        ).hidden_states
    captured = seen.hidden.detach()
    if layer == len(decoder_layers(model)):  # the model's last hidden state is after its norm
        captured = model.get_base_model().model.norm(captured)
    assert torch.allclose(captured, states[layer], atol=1e-5)

    # the contrastive term alone: gradients reach the LoRA weights of the blocks up to the
    # configured layer, none after it (lora_B starts at zero, so lora_A gets none yet)
    contrastive, _ = info_nce(seen.hidden, batch[LABELS], batch[ANCHORS] == 1, 0.1)
    contrastive.backward()
    blocks = decoder_layers(model)
    for index, block in enumerate(blocks, start=1):
        grads = [p.grad for n, p in block.named_parameters() if "lora_B" in n]
        assert grads
        reached = any(g is not None and float(g.abs().sum()) > 0 for g in grads)
        assert reached == (index <= layer), index


def test_contrastive_terms_are_logged_only_for_batches_with_anchors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A prompt whose answer has no entity has no anchor: its step logs no InfoNCE value (a 0.0
    # would drag the logged mean down by the share of such prompts); one with anchors logs the
    # value beside its chance level, log(N - 1).
    model, tokenizer = _load(tiny_model_dir)
    config = _config(tmp_path, contrastive_noise=0.0)
    model = add_lora(model, config)
    objective = ContrastiveObjective(config)
    empty = Example(text="Nothing to see here .", entities=[])
    batch = collate([objective.encode(tokenizer, _prompt(query=empty))], tokenizer.pad_token_id)
    _, parts = objective.loss(model, batch)
    assert parts["anchors"] == 0
    assert "contrastive_loss" not in parts and "contrastive_chance" not in parts
    batch = collate([objective.encode(tokenizer, _prompt())], tokenizer.pad_token_id)
    _, parts = objective.loss(model, batch)
    assert parts["anchors"] > 0 and parts["contrastive_loss"] > 0
    assert parts["contrastive_chance"] == pytest.approx(
        chance_level(batch[LABELS], batch[ANCHORS] == 1)
    )


@pytest.mark.parametrize("layer", [1, 2])
def test_rmsnorm_reads_the_norm_the_model_applies_next(
    tiny_model_dir: Path, tmp_path: Path, layer: int
) -> None:
    model, tokenizer = _load(tiny_model_dir)
    config = _config(tmp_path, contrastive_layer=layer, contrastive_noise=0.0)
    assert config.contrastive_normalise == "rmsnorm"  # the default
    model = add_lora(model, config)
    blocks = decoder_layers(model)
    expected = blocks[1].input_layernorm if layer == 1 else model.get_base_model().model.norm
    assert norm_after(model, layer) is expected
    with torch.no_grad():  # a random init has unit gains: give the norm some to tell it apart
        expected.weight.copy_(torch.linspace(-0.9, 3.0, expected.weight.numel()))
    objective = ContrastiveObjective(config)
    batch = collate([objective.encode(tokenizer, _prompt())], tokenizer.pad_token_id)
    total, parts = objective.loss(model, batch)
    labels, anchors = batch[LABELS], batch[ANCHORS] == 1
    hidden = objective.last_capture.hidden
    normed, _ = info_nce(expected(hidden), labels, anchors, config.contrastive_temperature)
    raw, _ = info_nce(hidden, labels, anchors, config.contrastive_temperature)
    assert parts["contrastive_loss"] == pytest.approx(float(normed), rel=1e-5)
    assert float(normed) != pytest.approx(float(raw), rel=1e-3)
    assert float(total) == pytest.approx(parts["lm_loss"] + float(normed), rel=1e-5)
    centred = normalise_states(hidden, labels, "centre")
    same = {"contrastive_layer": layer, "contrastive_noise": 0.0}
    none = ContrastiveObjective(_config(tmp_path, contrastive_normalise="none", **same))
    assert none.loss(model, batch)[1]["contrastive_loss"] == pytest.approx(float(raw), rel=1e-5)
    centre = ContrastiveObjective(_config(tmp_path, contrastive_normalise="centre", **same))
    centre_loss, _ = info_nce(centred, labels, anchors, config.contrastive_temperature)
    assert centre.loss(model, batch)[1]["contrastive_loss"] == pytest.approx(
        float(centre_loss), rel=1e-5
    )


def test_total_loss_decreases_over_optimiser_steps(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = _load(tiny_model_dir)
    config = _config(tmp_path)
    torch.manual_seed(0)
    model = add_lora(model, config)
    objective = ContrastiveObjective(config)
    batch = collate([objective.encode(tokenizer, _prompt())], tokenizer.pad_token_id)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    history = []
    for _ in range(8):
        optimiser.zero_grad()
        total, parts = objective.loss(model, batch)
        total.backward()
        optimiser.step()
        history.append(parts)
    assert all(torch.isfinite(torch.tensor(h["contrastive_loss"] + h["lm_loss"])) for h in history)
    assert history[-1]["contrastive_loss"] < history[0]["contrastive_loss"]
    assert history[-1]["lm_loss"] < history[0]["lm_loss"]


def test_training_loop_logs_both_terms_and_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import get_peft_model_state_dict

    config = _config(tmp_path)
    prompts = [_prompt(), _prompt({"location": "place"})]
    model, tokenizer = _load(tiny_model_dir)
    peft_model = train(config, model, tokenizer, prompts, False, ContrastiveObjective(config))
    state = get_peft_model_state_dict(peft_model)
    assert all(float(v.abs().sum()) > 0 for k, v in state.items() if "lora_B" in k)
    lines = [json.loads(x) for x in (config.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert all(x["contrastive_loss"] > 0 and x["anchors"] > 0 for x in lines)
    assert latest_checkpoint(config.run_dir).name == "checkpoint-3"

    # another contrastive setting is another run: its checkpoints are not continued
    from trainers.wraner.train import RunDirInUse

    model, tokenizer = _load(tiny_model_dir)
    other = _config(tmp_path, contrastive_temperature=0.5)
    with pytest.raises(RunDirInUse):
        train(other, model, tokenizer, prompts, False, ContrastiveObjective(other))


def test_gradient_checkpointing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        _config(tmp_path, gradient_checkpointing=True)

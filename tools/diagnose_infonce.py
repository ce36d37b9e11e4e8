"""Why the CLLMFS InfoNCE term does not fall: similarities, gradient share, a toy run.

    # cosines among the contrastive candidates, loss vs its uniform value and its floor, the
    # residual stream's outlier dimensions, and the gradient of each term on the LoRA weights
    python -m tools.diagnose_infonce measure --prompts runs/cllmfs-1000/prompts.jsonl \\
        --adapter none --adapter runs/cllmfs-1000/final-adapter --output measure.json

    # can the term fall at all: a fresh LoRA, one fixed batch, the contrastive term alone
    python -m tools.diagnose_infonce toy --prompts runs/cllmfs-1000/prompts.jsonl --steps 30

    # a run's logged InfoNCE against its chance level, per 100 steps (tokenizer only)
    python -m tools.diagnose_infonce log --run-dir runs/cllmfs-1000

Every statistic is read at the layer the trainer reads (``contrastive_layer``; default the
output of block round(0.8 x depth)), under each of several views of the hidden state
(``--view``): ``none`` (as the trainer saw it before the fix), ``rmsnorm`` (the model's own
RMSNorm that the next block applies to its input), ``centre`` (minus the mean of the sequence's
candidates), ``drop-outliers`` (the ``--outliers`` dimensions of largest mean magnitude
zeroed). Uniform value: the loss when every similarity is equal, log(N - 1) per anchor; floor:
the loss when positives are all alike and negatives infinitely far, log |P| per anchor.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from trainers.cllmfs.config import CllmfsConfig
from trainers.cllmfs.loss import (
    IGNORE,
    NORMALISE,
    chance_level,
    info_nce,
    normalise_states,
    positive_noise,
    row_roles,
)
from trainers.cllmfs.objective import (
    ANCHORS,
    LABELS,
    ContrastiveObjective,
    capture_block,
    decoder_layers,
    norm_after,
    resolve_layer,
)
from trainers.wraner.prompts import TrainPrompt
from trainers.wraner.train import Encoded, answer_loss, collate

app = typer.Typer(add_completion=False, help=__doc__)

VIEWS = (*NORMALISE, "drop-outliers")
View = Callable[[Any, Any], Any]  # (hidden (B, T, d), labels (B, T)) -> hidden


def read_prompts(path: Path, count: int, stride: int) -> list[TrainPrompt]:
    """Every ``stride``-th prompt of a run's prompts.jsonl (its first line is a header)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    prompts = [TrainPrompt(**r) for r in records if "fingerprint" not in r]
    return prompts[::stride][:count]


def load_model(config: CllmfsConfig, adapter: str) -> tuple[Any, Any]:
    """The base model with a LoRA: fresh as configured (``none``, the base model's outputs,
    since lora_B starts at zero) or a saved PEFT adapter; both trainable."""
    import torch
    from peft import PeftModel

    from trainers.wraner.model import base_model_dir, load_model_and_tokenizer
    from trainers.wraner.train import add_lora

    model, tokenizer = load_model_and_tokenizer(config, base_model_dir(config))
    torch.manual_seed(config.seed)
    if adapter == "none":
        return add_lora(model, config), tokenizer
    return PeftModel.from_pretrained(model, adapter, is_trainable=True), tokenizer


def make_view(name: str, model: Any, layer: int, outliers: int) -> View:
    """The named view of the hidden states: the trainer's ``contrastive_normalise`` modes, or
    ``drop-outliers`` (the ``outliers`` dimensions of largest mean |h| over the candidates
    zeroed)."""
    import torch

    if name in NORMALISE:
        norm = norm_after(model, layer) if name == "rmsnorm" else None
        return lambda hidden, labels: normalise_states(hidden, labels, name, norm)
    if name == "drop-outliers":

        def drop(hidden: Any, labels: Any) -> Any:
            mask = (labels != IGNORE).unsqueeze(-1).to(hidden.dtype)
            magnitude = (hidden.detach().abs() * mask).sum((0, 1))
            keep = torch.ones(hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
            keep[magnitude.topk(outliers).indices] = 0
            return hidden * keep

        return drop
    raise typer.BadParameter(f"unknown view {name!r}; choose from {', '.join(VIEWS)}")


@dataclass
class ViewStats:
    """One view of one prompt's candidates (means over its counted anchors)."""

    anchors: int
    candidates: int
    loss: float
    loss_noised: float
    uniform: float
    floor: float
    cos_positive: float
    cos_negative: float
    cos_all: float
    ranking: float  # share of (positive, negative) pairs with the positive closer to the anchor


def view_stats(
    hidden: Any, labels: Any, anchors: Any, temperature: float, noise: float, seed: int
) -> ViewStats:
    """The statistics of batch row 0 (one prompt) under one view."""
    import torch
    import torch.nn.functional as F

    roles = row_roles(labels[0], anchors[0])
    if roles is None or not bool(roles.valid.any()):
        raise ValueError("prompt without a counted anchor")
    h = hidden.detach()
    loss, counted = info_nce(h, labels, anchors, temperature)
    noise_t = positive_noise(h, noise, torch.Generator().manual_seed(seed)) if noise > 0 else None
    noised, _ = info_nce(h, labels, anchors, temperature, noise_t)
    z = F.normalize(h[0, roles.candidates].float(), dim=-1)
    sims = z[roles.anchors] @ z.T
    valid = roles.valid
    pos, neg = roles.positive[valid], roles.negative[valid]
    s = sims[valid]
    n = roles.candidates.numel()
    ranks = [
        float((row[p][:, None] > row[q][None, :]).float().mean())
        for row, p, q in zip(s, pos, neg, strict=True)
    ]
    off = ~torch.eye(n, dtype=torch.bool)
    return ViewStats(
        anchors=counted,
        candidates=n,
        loss=float(loss),
        loss_noised=float(noised),
        uniform=math.log(n - 1),
        floor=floor_level(labels[:1], anchors[:1]),
        cos_positive=float(s[pos].mean()),
        cos_negative=float(s[neg].mean()),
        cos_all=float((z @ z.T)[off].mean()),
        ranking=sum(ranks) / len(ranks),
    )


def floor_level(labels: Any, anchors: Any) -> float:
    """The least :func:`info_nce` can be: positives alike, negatives infinitely far; the mean
    over the counted anchors of log |P|, P the anchor's positives."""
    values: list[float] = []
    for row in range(labels.shape[0]):
        roles = row_roles(labels[row], anchors[row])
        if roles is not None:
            values += roles.positive[roles.valid].sum(1).float().log().tolist()
    return sum(values) / len(values) if values else math.nan


def outlier_dims(hidden: Any, labels: Any, top: int) -> dict[str, Any]:
    """The dimensions of largest mean |h| over the candidates and their share of |h|^2."""
    h = hidden.detach()[labels != IGNORE].float()
    magnitude = h.abs().mean(0)
    order = magnitude.argsort(descending=True)[:top]
    energy = (h**2).sum(1)
    share = float(((h[:, order] ** 2).sum(1) / energy).mean())
    return {
        "dims": [int(i) for i in order],
        "mean_abs": [round(float(magnitude[i]), 2) for i in order],
        "median_abs_all_dims": round(float(magnitude.median()), 3),
        "energy_share": round(share, 4),
        "mean_norm": round(float(energy.sqrt().mean()), 2),
    }


def counts(encoded: Encoded) -> bool:
    """Whether a prompt has an anchor that counts (one with a positive and a negative)."""
    batch = collate([encoded], 0)
    roles = row_roles(batch[LABELS][0], batch[ANCHORS][0] == 1)
    return roles is not None and bool(roles.valid.any())


def lora_params(model: Any) -> list[tuple[str, Any]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]


def grad_norm(loss: Any, params: Sequence[Any]) -> float:
    import torch

    grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float((g.float() ** 2).sum()) for g in grads if g is not None))


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else float("nan")


@app.command()
def measure(
    prompts: Annotated[Path, typer.Option(help="A run's prompts.jsonl.")],
    adapter: Annotated[
        list[str], typer.Option(help="'none' (fresh LoRA = base model) or a PEFT dir; repeatable.")
    ],
    config: Annotated[Path | None, typer.Option(help="CLLMFS YAML (else the defaults).")] = None,
    count: Annotated[int, typer.Option(help="Prompts measured.")] = 6,
    stride: Annotated[int, typer.Option(help="Take every n-th prompt.")] = 97,
    view: Annotated[list[str] | None, typer.Option(help=f"Views: {', '.join(VIEWS)}.")] = None,
    outliers: Annotated[int, typer.Option(help="Dims zeroed by drop-outliers.")] = 4,
    dtype: Annotated[str, typer.Option(help="Weights: float32 or bfloat16.")] = "float32",
    output: Annotated[Path | None, typer.Option(help="Write the results as JSON.")] = None,
) -> None:
    """Similarities, loss vs uniform/floor, outlier dims and gradient share, per adapter."""
    import torch

    from trainers.wraner.config import load_config

    cfg = load_config(config, {"dtype": dtype, "lora_dropout": 0.0}, CllmfsConfig)
    assert isinstance(cfg, CllmfsConfig)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    views = view or list(VIEWS)
    chosen = read_prompts(prompts, count * 4, stride)
    results: dict[str, Any] = {"config": {k: getattr(cfg, k) for k in ContrastiveObjective.fields}}
    results["adapters"] = {}
    for name in adapter:
        started = time.monotonic()
        model, tokenizer = load_model(cfg, name)
        model.eval()  # dropout off: the measurement is deterministic
        objective = ContrastiveObjective(cfg)
        layer = resolve_layer(cfg.contrastive_layer, len(decoder_layers(model)))
        params = [p for _, p in lora_params(model)]
        per_view: dict[str, list[ViewStats]] = {v: [] for v in views}
        grads: dict[str, list[float]] = {"lm": [], **{f"cl_{v}": [] for v in views}}
        dims: list[dict[str, Any]] = []
        used = 0
        for prompt in chosen:
            encoded = objective.encode(tokenizer, prompt)
            if not counts(encoded):
                continue
            batch = collate([encoded], tokenizer.pad_token_id)
            labels, anchors = batch[LABELS], batch[ANCHORS] == 1
            with capture_block(model, layer) as seen:
                lm = answer_loss(model, batch)
            grads["lm"].append(grad_norm(lm, params))
            for v in views:
                hidden = make_view(v, model, layer, outliers)(seen.hidden, labels)
                per_view[v].append(
                    view_stats(
                        hidden,
                        labels,
                        anchors,
                        cfg.contrastive_temperature,
                        cfg.contrastive_noise,
                        0,
                    )
                )
                cl, _ = info_nce(hidden, labels, anchors, cfg.contrastive_temperature)
                grads[f"cl_{v}"].append(cfg.contrastive_weight * grad_norm(cl, params))
            dims.append(outlier_dims(seen.hidden, labels, 8))
            used += 1
            if used == count:
                break
        summary = {
            v: {k: _mean([getattr(s, k) for s in stats]) for k in ViewStats.__dataclass_fields__}
            for v, stats in per_view.items()
        }
        results["adapters"][name] = {
            "layer": layer,
            "prompts": used,
            "views": summary,
            "per_prompt": {v: [asdict(s) for s in stats] for v, stats in per_view.items()},
            "grad_norm": {k: _mean(v) for k, v in grads.items()},
            "grad_norm_per_prompt": grads,
            "outlier_dims": dims,
            "seconds": round(time.monotonic() - started, 1),
        }
        _print_table(name, layer, used, summary, results["adapters"][name]["grad_norm"], dims)
        del model
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2), encoding="utf-8")


def _print_table(
    name: str,
    layer: int,
    used: int,
    summary: dict[str, dict[str, float]],
    grads: dict[str, float],
    dims: list[dict[str, Any]],
) -> None:
    typer.echo(f"\n## adapter {name}: block {layer} output, {used} prompts (means)")
    head = (
        "| view | loss | noised | uniform log(N-1) | floor log|P| | cos+ | cos- | cos all | rank |"
    )
    typer.echo(head)
    typer.echo("|" + " --- |" * 9)
    for v, s in summary.items():
        typer.echo(
            f"| {v} | {s['loss']:.3f} | {s['loss_noised']:.3f} | {s['uniform']:.3f} | "
            f"{s['floor']:.3f} | {s['cos_positive']:.3f} | {s['cos_negative']:.3f} | "
            f"{s['cos_all']:.3f} | {s['ranking']:.3f} |"
        )
    typer.echo("grad norm on LoRA (lm, weight x InfoNCE per view): " + json.dumps(grads))
    if dims:
        typer.echo(
            f"outlier dims (prompt 1): {dims[0]['dims']} mean|h| {dims[0]['mean_abs']} "
            f"(median dim {dims[0]['median_abs_all_dims']}), energy share of top 8: "
            f"{_mean([d['energy_share'] for d in dims])}, mean |h| {dims[0]['mean_norm']}"
        )


@app.command()
def toy(
    prompts: Annotated[Path, typer.Option(help="A run's prompts.jsonl.")],
    config: Annotated[Path | None, typer.Option(help="CLLMFS YAML (else the defaults).")] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts in the one fixed batch.")] = 3,
    stride: Annotated[int, typer.Option(help="Take every n-th prompt.")] = 97,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 30,
    lr: Annotated[float | None, typer.Option(help="AdamW lr (else the config's).")] = None,
    weight: Annotated[float, typer.Option(help="InfoNCE weight.")] = 1.0,
    lm_weight: Annotated[float, typer.Option(help="LM loss weight (0 = off).")] = 0.0,
    view: Annotated[list[str] | None, typer.Option(help="The views trained, one run each.")] = None,
    outliers: Annotated[int, typer.Option(help="Dims zeroed by drop-outliers.")] = 4,
    rotate: Annotated[
        bool,
        typer.Option(
            help="Train on a new prompt each step (as the trainer does; the fixed batch is "
            "then only measured) instead of on the fixed batch."
        ),
    ] = False,
    every: Annotated[int, typer.Option(help="Steps between measurements.")] = 1,
    output: Annotated[Path | None, typer.Option(help="Write the results as JSON.")] = None,
) -> None:
    """Train a fresh LoRA with the InfoNCE term read through each view; log, every ``every``
    steps, the loss every view would report on the fixed batch (noise off) and the ranking
    share. The fixed batch is trained on, or with ``--rotate`` only measured."""
    import torch

    from trainers.wraner.config import load_config

    cfg = load_config(config, {"dtype": "float32"}, CllmfsConfig)
    assert isinstance(cfg, CllmfsConfig)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    chosen = read_prompts(prompts, batch_size * 8, stride)
    stream = [p for p in read_prompts(prompts, 10**6, 1) if p not in chosen] if rotate else []
    results: dict[str, Any] = {"steps": steps, "lm_weight": lm_weight, "weight": weight}
    results["runs"] = {}
    for trained in view or ["none", "rmsnorm"]:
        started = time.monotonic()
        model, tokenizer = load_model(cfg, "none")
        model.train()
        objective = ContrastiveObjective(cfg)
        layer = resolve_layer(cfg.contrastive_layer, len(decoder_layers(model)))
        encoded = [e for e in (objective.encode(tokenizer, p) for p in chosen) if counts(e)]
        fixed = collate(encoded[:batch_size], tokenizer.pad_token_id)
        labels, anchors = fixed[LABELS], fixed[ANCHORS] == 1
        results["chance"] = chance_level(labels, anchors)
        results["floor"] = floor_level(labels, anchors)
        views = {v: make_view(v, model, layer, outliers) for v in VIEWS}
        params = [p for _, p in lora_params(model)]
        optimiser = torch.optim.AdamW(params, lr=lr or cfg.lr, weight_decay=cfg.weight_decay)
        generator = torch.Generator().manual_seed(cfg.seed)
        history: list[dict[str, float]] = []
        for step in range(steps + 1):
            optimiser.zero_grad(set_to_none=True)
            if step % every == 0 or step == steps:
                measuring = torch.no_grad() if rotate else contextlib.nullcontext()
                with measuring, capture_block(model, layer) as seen:
                    lm = answer_loss(model, fixed)
                record: dict[str, float] = {"step": step, "lm": round(float(lm.detach()), 4)}
                for v, fn in views.items():
                    hidden = fn(seen.hidden.detach(), labels)
                    loss = info_nce(hidden, labels, anchors, cfg.contrastive_temperature)[0]
                    record[f"loss_{v}"] = round(float(loss), 4)
                    ranks = [
                        view_stats(
                            hidden[r : r + 1], labels[r : r + 1], anchors[r : r + 1], 0.1, 0, 0
                        )
                        for r in range(hidden.shape[0])  # every row has a counted anchor
                    ]
                    record[f"rank_{v}"] = _mean([s.ranking for s in ranks])
                history.append(record)
                typer.echo(f"[{trained}] {json.dumps(record)} {time.monotonic() - started:.0f}s")
            if step == steps:
                break  # the last record is the state after the last step
            batch, batch_labels, batch_anchors = fixed, labels, anchors
            if rotate or step % every != 0:
                if rotate:
                    batch = collate(
                        [objective.encode(tokenizer, stream[step])], tokenizer.pad_token_id
                    )
                    batch_labels, batch_anchors = batch[LABELS], batch[ANCHORS] == 1
                with capture_block(model, layer) as seen:
                    lm = answer_loss(model, batch)
            hidden = views[trained](seen.hidden, batch_labels)
            noise = (
                positive_noise(hidden, cfg.contrastive_noise, generator)
                if cfg.contrastive_noise > 0
                else None
            )
            cl, _ = info_nce(
                hidden, batch_labels, batch_anchors, cfg.contrastive_temperature, noise
            )
            total = weight * cl + lm_weight * lm
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimiser.step()
        results["runs"][trained] = {
            "tokens": int(fixed["attention_mask"].sum()),
            "rotate": rotate,
            "history": history,
            "seconds": round(time.monotonic() - started, 1),
        }
        first, last = history[0], history[-1]
        typer.echo(f"\n## trained through view {trained}: step 0 -> {steps}")
        for v in VIEWS:
            typer.echo(
                f"  loss_{v}: {first[f'loss_{v}']} -> {last[f'loss_{v}']}   "
                f"rank_{v}: {first[f'rank_{v}']} -> {last[f'rank_{v}']}"
            )
        typer.echo(f"  lm: {first['lm']} -> {last['lm']}")
        del model
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2), encoding="utf-8")


@app.command()
def log(
    run_dir: Annotated[Path, typer.Option(help="A CLLMFS run dir (train_log.jsonl, prompts).")],
    config: Annotated[
        Path | None, typer.Option(help="Its YAML (else run_dir/config.yaml).")
    ] = None,
    window: Annotated[int, typer.Option(help="Logged lines per table row.")] = 10,
    output: Annotated[Path | None, typer.Option(help="Write the table as JSON.")] = None,
) -> None:
    """Read a run's logged InfoNCE against what it would log at chance, step by step: replays
    the run's batch order over its prompts (tokenizer only) to know, for every step, the chance
    level log(N - 1) of its prompt and whether it had a counted anchor (a trainer before the
    fix logged 0.0 for a prompt without one, inside the mean; a later log has no such zeros)."""
    from transformers import AutoTokenizer

    from trainers.wraner.config import load_config
    from trainers.wraner.model import base_model_dir
    from trainers.wraner.train import batch_order

    cfg = load_config(config or run_dir / "config.yaml", {}, CllmfsConfig)
    assert isinstance(cfg, CllmfsConfig)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir(cfg)))
    prompts = read_prompts(run_dir / "prompts.jsonl", 10**9, 1)
    objective = ContrastiveObjective(cfg)
    logged: dict[int, dict[str, float]] = {}
    for line in (run_dir / "train_log.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        logged[int(record["step"])] = record  # a resumed run logs some steps twice: last wins
    steps = max(logged)
    order = batch_order(len(prompts), cfg.batch_size * cfg.grad_accum, cfg.seed, steps)
    chance: dict[int, float | None] = {}
    for indices in order:
        for i in indices:
            if i not in chance:
                batch = collate([objective.encode(tokenizer, prompts[i])], 0)
                level = chance_level(batch[LABELS], batch[ANCHORS] == 1)
                chance[i] = None if math.isnan(level) else level
    rows: list[dict[str, Any]] = []  # "steps" is a range label, the rest numbers
    ends = sorted(s for s in logged if "contrastive_loss" in logged[s])
    for start in range(0, len(ends), window):
        group = ends[start : start + window]
        previous = ends[start - 1] if start else 0
        per_step = [chance[i] for s in range(previous, group[-1]) for i in order[s]]
        counted = [c for c in per_step if c is not None]
        logged_mean = _mean([logged[s]["contrastive_loss"] for s in group])
        share = len(counted) / len(per_step)
        # A trainer since the fix logs `contrastive_chance` and averages over anchored prompts
        # only: no logged zeros to divide out.
        fixed_log = all("contrastive_chance" in logged[s] for s in group)
        rows.append(
            {
                "steps": f"{previous + 1}-{group[-1]}",
                "logged": logged_mean,
                "with_anchor_share": round(share, 3),
                "chance_with_zeros": _mean([c or 0.0 for c in per_step]),
                "logged_per_anchored_prompt": round(
                    logged_mean if fixed_log else logged_mean / share, 4
                ),
                "chance_per_anchored_prompt": _mean(counted),
            }
        )
    typer.echo("| steps | logged | share with anchors | per anchored prompt | chance | excess |")
    typer.echo("|" + " --- |" * 6)
    for r in rows:
        excess = r["logged_per_anchored_prompt"] - r["chance_per_anchored_prompt"]
        typer.echo(
            f"| {r['steps']} | {r['logged']:.3f} | {r['with_anchor_share']:.2f} | "
            f"{r['logged_per_anchored_prompt']:.3f} | {r['chance_per_anchored_prompt']:.3f} | "
            f"{excess:+.3f} |"
        )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    app()

"""Summarise `nerve eval --output` JSON files as Markdown tables (for docs/history/benchmarks.md).

python -m tools.bench_table runs/untuned-word-*.json            # one method, per domain
python -m tools.bench_table --methods runs/methods-*.json       # methods side by side
python -m tools.bench_table --common ../shared/data/crossner runs/methods-*.json
    # the methods' F1 on the same sentences (from the --predictions JSONL beside each JSON)
python -m tools.bench_table --errors runs/methods-*.json        # why gold entities were missed
python -m tools.bench_table --types runs/untuned-word-*.json    # the same, per entity type
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

DOMAIN_ORDER = ("politics", "science", "music", "literature", "ai")
METHOD_ORDER = ("wraner", "baner", "lar")


def _domain_rank(domain: str) -> int:
    return DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER)


def variant(settings: dict) -> str:
    """How a run gave the service its input (issue 14's stress variants); runs from before
    these were recorded used the curated descriptions and the original text."""
    types = settings.get("type_descriptions", "curated")
    text = settings.get("text", "original")
    first = settings.get("offset", 0)
    return f"{types} type descriptions, {text} text" + (f", from sentence {first}" if first else "")


def _variants_line(rows: list[dict]) -> str:
    return "input: " + "; ".join(sorted({variant(r.get("settings", {})) for r in rows}))


def _runs_by_domain(paths: list[Path]) -> dict[str, dict[str, tuple[Path, dict]]]:
    """domain -> method -> (file, its JSON), domains in the CrossNER order."""
    runs: dict[str, dict[str, tuple[Path, dict]]] = {}
    for path in paths:
        row = json.loads(path.read_text())
        by_method = runs.setdefault(row["domain"], {})
        method = row["settings"]["method"]
        if method in by_method:
            # e.g. the curated and the bare-types run: one column cannot hold both.
            raise ValueError(
                f"two {method} runs of {row['domain']}: {by_method[method][0]} and {path}; "
                "tabulate each variant separately"
            )
        by_method[method] = (path, row)
    return {d: runs[d] for d in sorted(runs, key=_domain_rank)}


def _methods_in(runs: dict[str, dict[str, tuple[Path, dict]]]) -> list[str]:
    return [m for m in METHOD_ORDER if any(m in by_method for by_method in runs.values())]


def table(paths: list[Path]) -> str:
    rows = [json.loads(p.read_text()) for p in paths]
    rows.sort(key=lambda r: _domain_rank(r["domain"]))
    lines = [
        "| domain | sentences | P | R | F1 | median ms | p95 ms | escalated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["micro"]
        lines.append(
            f"| {r['domain']} | {r['sentences']} | {m['precision'] * 100:.1f} | "
            f"{m['recall'] * 100:.1f} | {m['f1'] * 100:.1f} | {r['median_latency_ms']:.0f} | "
            f"{r['p95_latency_ms']:.0f} | {r['escalated']} |"
        )
    if rows:
        average = sum(r["micro"]["f1"] for r in rows) / len(rows) * 100
        lines.append(f"| **average** | | | | **{average:.1f}** | | | |")
        lines.append("")
        lines.append(_variants_line(rows))
        lines.append(f"settings: `{rows[0]['settings']}`")
    return "\n".join(lines)


def methods_table(paths: list[Path]) -> str:
    """One row per domain: each method's F1 (on all the sentences it scored) and median
    latency, and how many times faster each encoder method is than the LLM, both medians taken
    over the sentences every method scored (the first n of the split)."""
    runs = _runs_by_domain(paths)
    methods = _methods_in(runs)
    encoders = [m for m in methods if m != "wraner"]
    header = ["domain"]
    header += [f"{m} F1 (n)" for m in methods]
    header += [f"{m} median ms" for m in methods]
    header += [f"wraner/{m} speed" for m in encoders if "wraner" in methods]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    f1s: dict[str, list[float]] = {m: [] for m in methods}
    for domain, files in runs.items():
        by_method = {m: row for m, (_, row) in files.items()}
        common = min(len(r["latencies_ms"]) for r in by_method.values())
        cells = [domain]
        medians: dict[str, float] = {}
        for m in methods:
            r = by_method.get(m)
            if r is None:
                cells.append("-")
                continue
            f1s[m].append(r["micro"]["f1"] * 100)
            cells.append(f"{r['micro']['f1'] * 100:.1f} ({r['sentences']})")
            answered = [v for v in r["latencies_ms"][:common] if v is not None]
            if answered:
                medians[m] = statistics.median(answered)
        cells += [f"{medians[m]:.0f}" if m in medians else "-" for m in methods]
        if "wraner" in methods:
            for m in encoders:
                ok = "wraner" in medians and medians.get(m)
                cells.append(f"{medians['wraner'] / medians[m]:.0f}x" if ok else "-")
        lines.append("| " + " | ".join(cells) + " |")
    averages = [f"**{statistics.mean(f1s[m]):.1f}**" if f1s[m] else "-" for m in methods]
    lines.append(
        "| **average** | " + " | ".join(averages) + " |" + " |" * (len(header) - 1 - len(methods))
    )
    rows = [row for files in runs.values() for _, row in files.values()]
    return "\n".join([*lines, "", _variants_line(rows)])


def common_f1_table(paths: list[Path], data_dir: Path) -> str:
    """The methods' micro-F1 on the sentences every method scored (the first n of the split),
    from the per-sentence predictions (``<run>.jsonl``) against the gold of ``data_dir``."""
    from nerve.data.readers import read_split
    from nerve.data.scoring import score

    runs = _runs_by_domain(paths)
    methods = _methods_in(runs)
    lines = ["| domain | n | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    f1s: dict[str, list[float]] = {m: [] for m in methods}
    for domain, files in runs.items():
        predictions = {
            m: [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]
            for m, (path, _) in files.items()
        }
        common = min(len(p) for p in predictions.values())
        split = next(iter(files.values()))[1]["split"]
        offsets = {row["settings"].get("offset", 0) for _, row in files.values()}
        if len(offsets) > 1:
            raise ValueError(f"{domain}: the runs start at different sentences {sorted(offsets)}")
        first = offsets.pop()
        gold = [e.entities for e in read_split(data_dir, domain, split)[first : first + common]]
        cells = [domain, str(common)]
        for m in methods:
            if m not in predictions:
                cells.append("-")
                continue
            spans = [[(e["start"], e["end"], e["type"]) for e in p] for p in predictions[m]]
            f1 = score(gold, spans[:common]).f1 * 100
            f1s[m].append(f1)
            cells.append(f"{f1:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    averages = [f"**{statistics.mean(f1s[m]):.1f}**" if f1s[m] else "-" for m in methods]
    lines.append("| **average** | | " + " | ".join(averages) + " |")
    rows = [row for files in runs.values() for _, row in files.values()]
    return "\n".join([*lines, "", _variants_line(rows)])


def errors_table(paths: list[Path]) -> str:
    """Where the errors are, one row per run tag (the file name before ``-<domain>.json``),
    summed over its domains: every gold entity is found, or missed for a reason (a prediction of
    the same span with the wrong type, an overlapping one with wrong boundaries, nothing)."""
    totals: dict[str, dict[str, int]] = {}
    for path in paths:
        row = json.loads(path.read_text())
        tag = path.name.removesuffix(".json").removesuffix(f"-{row['domain']}")
        report = row["report"]
        total = totals.setdefault(
            tag, dict.fromkeys(("gold", "tp", "fp", "type", "bound", "none"), 0)
        )
        total["gold"] += report["gold"]
        total["tp"] += report["tp"]
        total["fp"] += report["fp"]
        for errors in report["errors"].values():
            total["type"] += errors["wrong_type"]
            total["bound"] += errors["wrong_boundary"] + errors["wrong_both"]
            total["none"] += errors["missed"]
    lines = [
        "| run | gold | found | wrong type | wrong boundaries | missed | false positives |",
        "|---|---|---|---|---|---|---|",
    ]
    for tag, t in totals.items():
        share = [
            f"{t[k]} ({t[k] / max(t['gold'], 1) * 100:.0f}%)"
            for k in ("tp", "type", "bound", "none")
        ]
        lines.append(f"| {tag} | {t['gold']} | " + " | ".join(share) + f" | {t['fp']} |")
    return "\n".join(lines)


def types_table(paths: list[Path], most: int = 25) -> str:
    """Where the errors are per gold entity type, summed over the files (one run's domains):
    exact-match F1 and, for the gold entities, found / wrong type / wrong boundaries / missed.
    The ``most`` types with the most gold entities, most first."""
    counts: dict[str, dict[str, int]] = {}
    for path in paths:
        report = json.loads(path.read_text())["report"]
        for name, scores in report.get("per_type", {}).items():
            row = counts.setdefault(name, dict.fromkeys(("tp", "fp", "fn", "type", "bound"), 0))
            for key in ("tp", "fp", "fn"):
                row[key] += scores[key]
        for name, errors in report["errors"].items():
            row = counts.setdefault(name, dict.fromkeys(("tp", "fp", "fn", "type", "bound"), 0))
            row["type"] += errors["wrong_type"]
            row["bound"] += errors["wrong_boundary"] + errors["wrong_both"]
    lines = [
        "| type | gold | F1 | found | wrong type | wrong boundaries | missed |",
        "|---|---|---|---|---|---|---|",
    ]
    ranked = sorted(counts.items(), key=lambda kv: (-(kv[1]["tp"] + kv[1]["fn"]), kv[0]))
    for name, c in ranked[:most]:
        gold = c["tp"] + c["fn"]
        if gold == 0:
            continue
        missed = c["fn"] - c["type"] - c["bound"]  # no overlapping prediction at all
        f1 = 200 * c["tp"] / max(2 * c["tp"] + c["fp"] + c["fn"], 1)
        share = [f"{n} ({n / gold * 100:.0f}%)" for n in (c["tp"], c["type"], c["bound"], missed)]
        lines.append(f"| {name} | {gold} | {f1:.1f} | " + " | ".join(share) + " |")
    return "\n".join(lines)


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--errors":
        sys.stdout.write(errors_table([Path(p) for p in args[1:]]) + "\n")
        return
    if args and args[0] == "--types":
        sys.stdout.write(types_table([Path(p) for p in args[1:]]) + "\n")
        return
    if len(args) > 1 and args[0] == "--common":
        sys.stdout.write(common_f1_table([Path(p) for p in args[2:]], Path(args[1])) + "\n")
        return
    if args and args[0] == "--methods":
        sys.stdout.write(methods_table([Path(p) for p in args[1:]]) + "\n")
        return
    sys.stdout.write(table([Path(p) for p in args]) + "\n")


if __name__ == "__main__":
    main()

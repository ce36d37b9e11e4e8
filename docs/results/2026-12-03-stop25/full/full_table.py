"""Session script: the full CrossNER test sets from two `nerve eval` runs per method and domain.

Stop 24 scored the first 50 test sentences of each domain; stop 25 scored sentences 51..end
(`--offset 50`) with the same frozen tree and adapters (greedy decoding: deterministic, checked
on 3 sentences). This script joins the two halves per method and domain into one
`full-{method}-{domain}.jsonl` / `.json` (predictions; per-sentence latencies), then prints
F1 with / without misc, latency p50 / p95, the error split of the gold entities and the
per-type error table.

usage: PYTHONPATH=<tree> python full_table.py FIRST50_DIR REST_DIR OUT_DIR METHOD=FIRST:REST ...
  e.g. wraner=wraner-{domain}:wraner-{domain} (fold-B domains use FIRST's "-b" names, see below)
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from app.core.readers import read_split
from app.core.scoring import ERROR_KINDS, score

DOMAINS = ("music", "literature", "ai", "politics", "science")
FOLD_B = ("politics", "science")
DATA = "/work/shared/data/crossner"


def first_stem(pattern: str, domain: str) -> str:
    # Stop 24 named its fold-B runs "<tag>-b-<domain>".
    stem = pattern.format(domain=domain)
    if domain in FOLD_B:
        stem = stem.replace(f"-{domain}", f"-b-{domain}")
    return stem


def join(
    first: Path, rest: Path, out: Path, domain: str, sentences: int
) -> tuple[list[list[dict]], list[float]]:
    rows: list[list[dict]] = []
    latencies: list[float] = []
    parser: dict[str, dict[str, float]] = {}
    for half in (first, rest):
        with open(half.with_suffix(".jsonl")) as lines:
            rows += [json.loads(line) for line in lines]
        report = json.loads(half.with_suffix(".json").read_text())
        latencies += report["latencies_ms"]
        for group, counts in report.get("parser", {}).items():
            for key, value in counts.items():
                parser.setdefault(group, {})[key] = parser.get(group, {}).get(key, 0) + value
    if len(rows) != sentences or len(latencies) != sentences:
        raise SystemExit(
            f"{out}: {len(rows)} answers, {len(latencies)} latencies, {sentences} gold"
        )
    out.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {
        "domain": domain,
        "split": "test",
        "sentences": len(rows),
        "parser": parser,
        "latencies_ms": latencies,
        "halves": [str(first), str(rest)],
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    return rows, latencies


def spans(rows: list[list[dict]], drop_misc: bool) -> list[list[tuple[int, int, str]]]:
    return [
        [(e["start"], e["end"], e["type"]) for e in r if not (drop_misc and e["type"] == "misc")]
        for r in rows
    ]


def sentence_tp_fp_fn(
    gold: list[list[tuple[int, int, str]]], pred: list[list[tuple[int, int, str]]]
) -> np.ndarray:
    """Per sentence (tp, fp, fn) of exact (start, end, type) matches."""
    rows = []
    for g, p in zip(gold, pred, strict=True):
        g_set, p_set = set(g), set(p)
        rows.append((len(g_set & p_set), len(p_set - g_set), len(g_set - p_set)))
    return np.array(rows, dtype=np.int64)


def f1(summed: np.ndarray) -> np.ndarray:
    tp, fp, fn = summed[..., 0], summed[..., 1], summed[..., 2]
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


def paired_bootstrap(
    per_domain: dict[str, tuple[np.ndarray, np.ndarray]], draws: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """95% interval of (B - A) of the domain-averaged micro-F1, sentences resampled within
    each domain, both methods on the same draw; and the share of draws where B - A > 0."""
    rng = np.random.default_rng(seed)
    diffs = np.zeros(draws)
    for a, b in per_domain.values():
        idx = rng.integers(0, len(a), size=(draws, len(a)))
        diffs += f1(b[idx].sum(axis=1)) - f1(a[idx].sum(axis=1))
    diffs *= 100 / len(per_domain)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high), float((diffs > 0).mean())


def main(first_dir: str, rest_dir: str, out_dir: str, methods: list[str]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table: dict[str, dict[str, tuple[float, float, float, float]]] = {}
    sentence_counts: dict[str, dict[tuple[str, bool], np.ndarray]] = {}
    errors: dict[str, dict[str, dict[str, int]]] = {}
    for spec in methods:
        method, patterns = spec.split("=")
        first_pattern, rest_pattern = patterns.split(":")
        for domain in DOMAINS:
            first = Path(first_dir) / first_stem(first_pattern, domain)
            rest = Path(rest_dir) / rest_pattern.format(domain=domain)
            if not rest.with_suffix(".json").exists():
                continue
            gold = [
                [(s.start, s.end, s.type) for s in ex.entities]
                for ex in read_split(DATA, domain, "test")
            ]
            rows, latencies = join(first, rest, out / f"full-{method}-{domain}", domain, len(gold))
            no_misc = [[g for g in sentence if g[2] != "misc"] for sentence in gold]
            with_misc = score(gold, spans(rows, False))
            for drop in (False, True):
                sentence_counts.setdefault(method, {})[(domain, drop)] = sentence_tp_fp_fn(
                    no_misc if drop else gold, spans(rows, drop)
                )
            without = score(no_misc, spans(rows, True))
            p95 = statistics.quantiles(latencies, n=20)[-1]
            table.setdefault(method, {})[domain] = (
                100 * with_misc.f1,
                100 * without.f1,
                statistics.median(latencies),
                p95,
            )
            counts = {kind: 0 for kind in ERROR_KINDS}
            for kinds in with_misc.errors.values():
                for kind in ERROR_KINDS:
                    counts[kind] += getattr(kinds, kind)
            counts["gold"] = sum(len(g) for g in gold)
            errors.setdefault(method, {})[domain] = counts
    print("| method | " + " | ".join(DOMAINS) + " | avg (with / w/o misc) |")
    print("| --- |" + " ---: |" * (len(DOMAINS) + 1))
    for method, by_domain in table.items():
        cells = [
            f"{by_domain[d][0]:.2f} / {by_domain[d][1]:.2f}" if d in by_domain else "-"
            for d in DOMAINS
        ]
        done = list(by_domain.values())
        avg = (
            f"{statistics.mean(v[0] for v in done):.2f} / {statistics.mean(v[1] for v in done):.2f}"
            f" ({len(done)} domains)"
        )
        print(f"| {method} | " + " | ".join(cells) + f" | {avg} |")
    print(
        "\n| method | domain | p50 ms | p95 ms | gold | wrong type | wrong boundary | both | missed |"
    )
    print("| --- | --- |" + " ---: |" * 7)
    for method, by_domain in table.items():
        for domain, (_, _, p50, p95) in by_domain.items():
            e = errors[method][domain]
            share = " | ".join(f"{e[k]} ({100 * e[k] / e['gold']:.0f}%)" for k in ERROR_KINDS)
            print(f"| {method} | {domain} | {p50:.0f} | {p95:.0f} | {e['gold']} | {share} |")

    methods_done = list(sentence_counts)
    if len(methods_done) == 2:
        a, b = methods_done
        print(f"\nPaired bootstrap, {b} - {a}, average micro-F1 over the domains both finished:")
        for drop in (False, True):
            shared = {
                d: (sentence_counts[a][(d, drop)], sentence_counts[b][(d, drop)])
                for d in DOMAINS
                if (d, drop) in sentence_counts[a] and (d, drop) in sentence_counts[b]
            }
            low, high, share = paired_bootstrap(shared)
            label = "without misc" if drop else "with misc"
            print(f"- {label}: 95% interval [{low:+.2f}, {high:+.2f}], {b} ahead in {share:.0%}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])

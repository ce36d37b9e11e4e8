"""Summarise `nerve eval --output` JSON files as one Markdown table (for docs/benchmarks.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

DOMAIN_ORDER = ("politics", "science", "music", "literature", "ai")


def table(paths: list[Path]) -> str:
    rows = [json.loads(p.read_text()) for p in paths]
    rows.sort(key=lambda r: DOMAIN_ORDER.index(r["domain"]) if r["domain"] in DOMAIN_ORDER else 99)
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
        lines.append(f"settings: `{rows[0]['settings']}`")
    return "\n".join(lines)


def main() -> None:
    sys.stdout.write(table([Path(p) for p in sys.argv[1:]]) + "\n")


if __name__ == "__main__":
    main()

"""Join the bare-type-name wraner runs of a domain into one full-test-set run.

    PYTHONPATH=. python docs/results/2026-12-03-stop26/join_bare.py FIRST100_DIR CHUNK_DIR OUT_DIR DOMAIN...

FIRST100_DIR/wraner-{domain}.jsonl holds sentences 1-100 (`eval_bare_first100.sh`),
CHUNK_DIR/wraner-{domain}-{offset}.jsonl the 50-sentence chunks from 101 on
(`eval_bare_rest.sh`). Writes OUT_DIR/wraner-{domain}.jsonl and .json (per-sentence
latencies, the layout `tools.cascade_eval` reads) only for a domain whose chunks cover every
test sentence; says which chunks are missing otherwise. FIRST100_DIR "-": the chunks start at
sentence 1 (`wraner-{domain}-0`, stop 27's lowercased runs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.core.readers import read_split

DATA = Path("/work/shared/data/crossner")


def test_size(domain: str) -> int:
    return len(read_split(DATA, domain, "test"))


def main(first_dir: Path, chunk_dir: Path, out_dir: Path, domains: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for domain in domains:
        n = test_size(domain)
        first = 0 if str(first_dir) == "-" else 100
        parts = [] if first == 0 else [first_dir / f"wraner-{domain}"]
        parts += [chunk_dir / f"wraner-{domain}-{off}" for off in range(first, n, 50)]
        missing = [p.name for p in parts if not p.with_suffix(".jsonl").is_file()]
        if missing:
            print(f"{domain}: missing {', '.join(missing)}")
            continue
        lines: list[str] = []
        latencies: list[float | None] = []
        for part in parts:
            rows = part.with_suffix(".jsonl").read_text(encoding="utf-8").splitlines()
            lat = json.loads(part.with_suffix(".json").read_text(encoding="utf-8"))["latencies_ms"]
            if len(rows) != len(lat):
                raise SystemExit(f"{part}: {len(rows)} predictions but {len(lat)} latencies")
            lines += rows
            latencies += lat
        if len(lines) != n:
            raise SystemExit(f"{domain}: {len(lines)} sentences joined, the test set has {n}")
        (out_dir / f"wraner-{domain}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        summary = {"domain": domain, "sentences": n, "latencies_ms": latencies}
        (out_dir / f"wraner-{domain}.json").write_text(json.dumps(summary), encoding="utf-8")
        print(f"{domain}: {n} sentences joined")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])

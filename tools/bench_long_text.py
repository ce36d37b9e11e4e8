"""Time and memory of one long document through ``/v1/ner``, per method.

``python -m tools.bench_long_text --method baner --words 10000 --output runs/long-baner.json``
(``--via jobs``: through ``POST /v1/ner/jobs`` and its status polled, with the time to the 202
and to the finished job.)

The gateway runs in this process (the app with its real components: Milvus Lite in a temp dir,
the embedder, BANER/LAR, the LLM), the domain's train split is the pool, and the document is
the domain's test sentences joined until ``--words`` words. After one short warm-up request,
the peak resident set size is reset (``/proc/self/clear_refs``) so that the reported peak is the
long request's own; every entity's offsets are checked against the text. Run one method per
process: a peak is the process's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nerve.settings import CROSSNER_DIR, load_settings


def document(data: Path, domain: str, words: int) -> str:
    from nerve.data.readers import read_split

    sentences = [e.text for e in read_split(data, domain, "test")]
    out: list[str] = []
    count = 0
    while count < words:
        for sentence in sentences:
            tokens = sentence.split()[: words - count]
            out.append(" ".join(tokens))
            count += len(tokens)
            if count >= words:
                break
    return " ".join(out)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from app.main import build_app
    from nerve.data.crossner_types import entity_types_for
    from nerve.data.readers import entity_types_of, read_split
    from nerve.vocab.segment import split_segments

    pool = read_split(args.data, args.domain, "train")
    text = document(args.data, args.domain, args.words)
    types = entity_types_for(entity_types_of(pool))
    overrides: dict[str, Any] = {"cache": {"entries": 0}, "log_json": False}
    overrides["llm"] = {"timeout_s": args.generation_timeout}
    if args.max_new_tokens:
        overrides["wraner"] = {"max_new_tokens": args.max_new_tokens}
    with tempfile.TemporaryDirectory(prefix="nerve-long-") as scratch:
        settings = load_settings(data_dir=Path(scratch), **overrides)
        with TestClient(build_app(settings)) as client:
            domain = {
                "name": args.domain,
                "entity_types": [{"name": t.name, "description": t.description} for t in types],
            }
            client.post("/v1/domains", json=domain).raise_for_status()
            rows = [
                {"text": e.text, "entities": [s.model_dump() for s in e.entities]} for e in pool
            ]
            client.post(f"/v1/domains/{args.domain}/examples", json={"examples": rows})
            warm = {"text": pool[0].text, "domain": args.domain, "method": args.method}
            client.post("/v1/ner", json=warm).raise_for_status()
            rss_before = _status_kb("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM)
            body = {"text": text, "domain": args.domain, "method": args.method}
            started = time.perf_counter()
            if args.via == "jobs":
                response, job = _through_job(client, body, args.poll)
            else:
                response, job = client.post("/v1/ner", json=body), {}
            seconds = time.perf_counter() - started
            peak = _status_kb("VmHWM")
            answer = response.json()
            if args.via == "jobs" and response.status_code == 200:
                answer = answer["result"] or answer
    if response.status_code != 200 or "entities" not in answer:
        raise RuntimeError(f"{response.status_code}: {json.dumps(answer)[:500]}")
    exact = all(text[e["start"] : e["end"]] == e["text"] for e in answer["entities"])
    return {
        "tool": "python -m tools.bench_long_text",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()),
        "affinity": sorted(os.sched_getaffinity(0)),
        "method": args.method,
        "via": args.via,
        **job,
        "domain": args.domain,
        "pool_size": len(pool),
        "words": len(text.split()),
        "characters": len(text),
        "segments": len(split_segments(text, settings.segment.chars)),
        "segment_batch": settings.segment.batch,
        "max_new_tokens": settings.wraner.max_new_tokens,
        "seconds": round(seconds, 2),
        "timings_ms": answer["timings_ms"],
        "entities": len(answer["entities"]),
        "offsets_exact": exact,
        "rss_before_mb": round(rss_before / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_increase_mb": round((peak - rss_before) / 1024, 1),
    }


def _through_job(client: Any, body: dict[str, Any], poll_s: float) -> tuple[Any, dict[str, Any]]:
    """POST the job, poll its status until it finishes: (last status response, its figures)."""
    started = time.perf_counter()
    accepted = client.post("/v1/ner/jobs", json=body)
    accepted_s = time.perf_counter() - started
    if accepted.status_code != 202:
        return accepted, {}
    url = accepted.json()["status_url"]
    polls = 0
    while True:
        time.sleep(poll_s)
        response = client.get(url)
        polls += 1
        status = response.json().get("status")
        if response.status_code != 200 or status in ("done", "failed", "cancelled"):
            break
    job = response.json()
    return response, {
        "seconds_to_202": round(accepted_s, 3),
        "job_status": status,
        "job_progress": job.get("progress"),
        "job_error": job.get("error"),
        "polls": polls,
        "poll_s": poll_s,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_long_text")
    parser.add_argument("--data", type=Path, default=CROSSNER_DIR)
    parser.add_argument("--domain", default="music")
    parser.add_argument("--method", default="baner")
    parser.add_argument("--words", type=int, default=10_000)
    parser.add_argument("--max-new-tokens", type=int, default=0, help="0: the setting's")
    parser.add_argument("--generation-timeout", type=float, default=600.0)
    parser.add_argument("--via", choices=("sync", "jobs"), default="sync")
    parser.add_argument("--poll", type=float, default=1.0, help="--via jobs: s between polls")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Latency of ``/v1/ner`` in process vs through the CPU Triton LLM: same sentences, same model.

``python -m tools.bench_paths --domain politics --limit 30 --output runs/x.json``

One run starts tritonserver (``llm_cpu`` + ``ensemble``) and two gateways sharing one embedder:
one with ``NERVE_GENERATOR=llama_cpp``, one with ``NERVE_GENERATOR=triton``. Both index the
domain's train split; each test sentence is then sent to both, in alternating order so the
machine's load falls on both alike. The answer cache is off. Entities are compared too.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nerve.settings import REPO_ROOT, load_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "mean": statistics.fmean(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from app.components import build_components, build_embedder
    from app.main import build_app
    from cli.triton_server import TritonServer
    from nerve.data.crossner_types import entity_types_for
    from nerve.data.readers import entity_types_of, read_split

    pool = read_split(args.data, args.domain, "train")
    test = read_split(args.data, args.domain, "test")[: args.limit]
    types = entity_types_for(entity_types_of([*pool, *test]))
    domain = {
        "name": args.domain,
        "entity_types": [{"name": t.name, "description": t.description} for t in types],
    }
    examples = [{"text": e.text, "entities": [s.model_dump() for s in e.entities]} for e in pool]
    # A long timeout: the benchmark measures latency, it must not fail on a loaded machine.
    common: dict[str, Any] = {
        "llm": {"adapter": args.adapter, "timeout_s": 600.0},
        "cache": {"entries": 0},
        "log_json": False,
    }
    with tempfile.TemporaryDirectory(prefix="nerve-bench-") as scratch:
        root = Path(scratch)
        base = load_settings(data_dir=root / "triton", **common)
        server = TritonServer(
            base,
            http_port=_free_port(),
            grpc_port=_free_port(),
            metrics_port=_free_port(),
            models=["llm_cpu", "ensemble"],
            address="127.0.0.1",
            log_path=root / "tritonserver.log",
        )
        embedder = build_embedder(base)
        paths = {
            "in_process": load_settings(data_dir=root / "local", generator="llama_cpp", **common),
            "triton": load_settings(
                data_dir=root / "remote",
                generator="triton",
                triton={"url": f"127.0.0.1:{server.grpc_port}", "model": "ensemble"},
                **common,
            ),
        }
        with server:
            clients = {
                name: TestClient(
                    build_app(
                        s, components_factory=lambda s: build_components(s, embedder=embedder)
                    )
                )
                for name, s in paths.items()
            }
            for client in clients.values():
                client.__enter__()
            try:
                return _measure(clients, domain, examples, test, args)
            finally:
                for client in clients.values():
                    client.__exit__(None, None, None)


def _measure(
    clients: dict[str, Any],
    domain: dict[str, Any],
    examples: list[dict[str, Any]],
    test: Sequence[Any],
    args: argparse.Namespace,
) -> dict[str, Any]:
    for client in clients.values():
        client.post("/v1/domains", json=domain).raise_for_status()
        for start in range(0, len(examples), 500):
            chunk = {"examples": examples[start : start + 500]}
            client.post(f"/v1/domains/{args.domain}/examples", json=chunk).raise_for_status()
    names = list(clients)
    latencies: dict[str, list[float]] = {n: [] for n in names}
    generate: dict[str, list[float]] = {n: [] for n in names}
    same = 0
    warm = {"text": test[0].text, "domain": args.domain, "top_k": args.top_k}
    for client in clients.values():
        client.post("/v1/ner", json=warm).raise_for_status()
    for index, example in enumerate(test):
        body = {"text": example.text, "domain": args.domain, "top_k": args.top_k}
        answers = {}
        for name in names if index % 2 == 0 else reversed(names):
            started = time.perf_counter()
            response = clients[name].post("/v1/ner", json=body)
            latencies[name].append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            answers[name] = response.json()
            generate[name].append(answers[name]["timings_ms"]["generate"])
        spans = [[(e["start"], e["end"], e["type"]) for e in answers[n]["entities"]] for n in names]
        same += int(spans[0] == spans[1])
    return {
        "domain": args.domain,
        "sentences": len(test),
        "top_k": args.top_k,
        "adapter": args.adapter,
        "same_entities": same,
        "latency_ms": {n: _summary(v) for n, v in latencies.items()},
        "generate_ms": {n: _summary(v) for n, v in generate.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_paths")
    parser.add_argument(
        "--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "crossner"
    )
    parser.add_argument("--domain", default="politics")
    parser.add_argument("--limit", type=int, default=30, help="test sentences measured")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--adapter", default="none", help="none, wraner or a LoRA GGUF")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

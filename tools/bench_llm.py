"""The in-process LLM request against raw llama.cpp on the same prompt (issue 16: at most 1.1x).

``python -m tools.bench_llm --domain music --limit 10 --configs adapter,merged-same,base``

Each configuration is a gateway (``NERVE_GENERATOR=llama_cpp``, one thread, answer cache off)
over the domain's train split: ``adapter`` (the shipped LoRA applied unmerged), ``merged-T``
(the LoRA merged into the GGUF, ``NERVE_LLM_MERGE_ADAPTER=T``), ``base`` (no adapter). Per test
sentence, each configuration answers ``/v1/ner`` (``method=wraner``) in turn, and its prompt,
exactly as the gateway sent it, is timed through raw llama-cpp-python on the base model: a fresh
evaluation of the whole prompt (no cache) and greedy decoding of as many tokens as the gateway
generated, no grammar, no stop, no log-probs. The ratio request/raw is the issue's measure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerve.generation.base import Generation, GenerationRequest, Generator
from nerve.settings import REPO_ROOT, Settings, load_settings
from tools.bench_paths import _summary

if TYPE_CHECKING:  # the app loads models on import: only where a run needs it
    from app.components import Components


@dataclass
class Recording:
    """A generator that keeps the last request and answer of the one it wraps."""

    inner: Generator
    calls: list[tuple[GenerationRequest, Generation]] = field(default_factory=list)

    name: str = field(init=False)
    model: str = field(init=False)

    def __post_init__(self) -> None:
        self.name, self.model = self.inner.name, self.inner.model

    async def generate(self, request: GenerationRequest) -> Generation:
        generation = await self.inner.generate(request)
        self.calls.append((request, generation))
        return generation

    async def ready(self) -> bool:
        return await self.inner.ready()

    async def close(self) -> None:
        await self.inner.close()


class RawLlama:
    """llama-cpp-python as a user would call it: the base GGUF, a whole prompt, greedy tokens."""

    def __init__(self, model_path: Path, threads: int, n_ctx: int) -> None:
        from llama_cpp import Llama

        self._llm = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=512,
            verbose=False,
        )

    def seconds(self, prompt: str, tokens: int) -> float:
        started = time.perf_counter()
        self._llm.reset()  # no cached prefix: the raw cost of this prompt
        ids = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        for made, _ in enumerate(self._llm.generate(ids, temp=0.0, top_k=1, top_p=1.0), 1):
            if made >= tokens:
                break
        return time.perf_counter() - started


def _config_settings(name: str, common: dict[str, Any]) -> dict[str, Any]:
    if name == "base":
        return {**common, "llm": {**common["llm"], "adapter": "none"}}
    if name == "adapter":
        return {**common, "llm": {**common["llm"], "adapter": "wraner", "merge_adapter": "off"}}
    if name.startswith("merged-"):
        merge = name.removeprefix("merged-")
        return {**common, "llm": {**common["llm"], "adapter": "wraner", "merge_adapter": merge}}
    raise SystemExit(f"unknown configuration {name!r}: adapter, base or merged-<same|q8_0|f16>")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from app.components import build_embedder
    from app.main import build_app
    from nerve.data.crossner_types import entity_types_for
    from nerve.data.readers import entity_types_of, read_split
    from nerve.generation.llama_cpp import LlamaCppGenerator
    from nerve.generation.weights import ensure_base_gguf

    pool = read_split(args.data, args.domain, "train")
    test = read_split(args.data, args.domain, "test")[: args.limit + 1]
    types = entity_types_for(entity_types_of([*pool, *test]))
    domain = {
        "name": args.domain,
        "entity_types": [{"name": t.name, "description": t.description} for t in types],
    }
    examples = [{"text": e.text, "entities": [s.model_dump() for s in e.entities]} for e in pool]
    common: dict[str, Any] = {
        "cache": {"entries": 0},
        "log_json": False,
        "llm": {"timeout_s": 900.0, "threads": args.threads},
        "wraner": {"constrained_decoding": args.constrained},
    }
    names = args.configs.split(",")
    with tempfile.TemporaryDirectory(prefix="nerve-bench-llm-") as scratch:
        root = Path(scratch)
        shared = load_settings(data_dir=args.models_from, **common)
        base_gguf = ensure_base_gguf(shared.models_dir)
        embedder = build_embedder(shared)
        recorders: dict[str, Recording] = {}
        clients: dict[str, Any] = {}
        for name in names:
            # One models directory for all (the merged files are cached there), own state each.
            configured = _config_settings(name, common)
            configured["llm"] = {**configured["llm"], "model_path": base_gguf}
            settings = load_settings(data_dir=root / name, **configured)
            recorder = Recording(LlamaCppGenerator.from_settings(_with_models(settings, shared)))
            recorders[name] = recorder
            clients[name] = TestClient(
                build_app(settings, components_factory=_components(embedder, recorder))
            )
        raw = RawLlama(base_gguf, args.threads, shared.llm.context_tokens)
        for client in clients.values():
            client.__enter__()
        try:
            return _measure(clients, recorders, raw, domain, examples, test, args)
        finally:
            for client in clients.values():
                client.__exit__(None, None, None)


def _with_models(settings: Any, shared: Any) -> Any:
    """``settings`` building its model files in ``shared``'s models directory."""
    return settings.model_copy(update={"data_dir": shared.data_dir})


def _measure(
    clients: dict[str, Any],
    recorders: dict[str, Recording],
    raw: RawLlama,
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
    # The first sentence warms every gateway (and puts the instruction in its KV cache).
    for client in clients.values():
        warm = {"text": test[0].text, "domain": args.domain, "method": "wraner"}
        client.post("/v1/ner", json=warm).raise_for_status()
    rows: list[dict[str, Any]] = []
    for index, example in enumerate(test[1:]):
        body = {
            "text": example.text,
            "domain": args.domain,
            "method": "wraner",
            "top_k": args.top_k,
        }
        row: dict[str, Any] = {"sentence": index}
        for name in names if index % 2 == 0 else reversed(names):
            started = time.perf_counter()
            response = clients[name].post("/v1/ner", json=body)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            answer = response.json()
            request, generation = recorders[name].calls[-1]
            answered = max(generation.completion_tokens, 1)
            raw_s = raw.seconds(request.prompt, answered)
            row[name] = {
                "request_s": round(elapsed, 3),
                "generate_s": round(answer["timings_ms"]["generate"] / 1000, 3),
                "raw_base_s": round(raw_s, 3),
                "prompt_tokens": generation.prompt_tokens,
                "cached_tokens": generation.cached_tokens,
                "answer_tokens": generation.completion_tokens,
                "entities": sorted((e["start"], e["end"], e["type"]) for e in answer["entities"]),
            }
        rows.append(row)
        sys.stderr.write(json.dumps(row) + "\n")
    summary = {}
    for name in names:
        per = [r[name] for r in rows]
        summary[name] = {
            "request_over_raw": _summary([p["request_s"] / p["raw_base_s"] for p in per]),
            "generate_over_raw": _summary([p["generate_s"] / p["raw_base_s"] for p in per]),
            "request_s": _summary([p["request_s"] for p in per]),
            "raw_base_s": _summary([p["raw_base_s"] for p in per]),
            "prompt_tokens": statistics.fmean(p["prompt_tokens"] for p in per),
            "cached_tokens": statistics.fmean(p["cached_tokens"] for p in per),
            "answer_tokens": statistics.fmean(p["answer_tokens"] for p in per),
        }
        if "adapter" in names and name != "adapter":
            summary[name]["same_entities_as_adapter"] = sum(
                r[name]["entities"] == r["adapter"]["entities"] for r in rows
            )
    return {
        "domain": args.domain,
        "sentences": len(rows),
        "threads": args.threads,
        "constrained_decoding": args.constrained,
        "summary": summary,
        "rows": rows,
    }


def _components(embedder: Any, generator: Recording) -> Callable[[Settings], Components]:
    """The app's components with the shared embedder and this configuration's generator."""

    from app.components import build_components

    def build(settings: Settings) -> Components:
        return build_components(settings, embedder=embedder, generator=generator)

    return build


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_llm")
    parser.add_argument(
        "--data", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "crossner"
    )
    parser.add_argument("--domain", default="music")
    parser.add_argument("--limit", type=int, default=10, help="test sentences measured")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (both sides)")
    parser.add_argument("--configs", default="adapter,merged-same,base")
    parser.add_argument("--constrained", action="store_true", help="answers under the grammar")
    parser.add_argument(
        "--models-from",
        type=Path,
        default=REPO_ROOT / ".cache",
        help="data dir whose models/ holds (or receives) the base GGUF and the merged files",
    )
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

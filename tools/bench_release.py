"""``make bench-release``: the numbers the README quotes, measured by one command (issue 32, item 4).

``python -m tools.bench_release run`` measures the shipped defaults on this machine:

- **load**: ``nerve bench serve`` (:mod:`tools.bench_serve`) on music for every method the
  defaults serve, one method per started gateway, at each concurrency level, ``--runs`` times
  (each run a fresh gateway, the same unseen test sentences); the tables show the median of the
  runs and their spread (min-max);
- **quality**: ``nerve eval`` (:mod:`tools.evaluation`) on the first ``--limit`` test sentences
  of each CrossNER domain (the LLM methods, ``wraner`` and ``auto``, on the first
  ``--llm-limit``), each method, with the curated type descriptions and with bare type names;
  F1 with and without ``misc``. Leave-domains-out as in docs/results.md: the domains of
  ``--fold-b-domains`` (politics, science) are scored with the fold B adapter and calibration,
  the others with the shipped (fold A) ones;

and saves it all to one JSON file, ``runs/release-<date>-<commit>.json``, with the date, the
commit (refusing a dirty tree unless ``--allow-dirty``), the machine (CPU model, cores, RAM) and
the exact command line. ``--write`` then writes the tables too.

``python -m tools.bench_release write runs/release-....json`` writes the tables of such a file
into README.md (between :data:`README_START` and :data:`README_END`) and docs/results.md
(between :data:`RESULTS_START` and :data:`RESULTS_END`); the same file always gives the same
bytes, and writing twice changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nerve.settings import CROSSNER_DIR, REPO_ROOT, Settings, load_settings

SCHEMA = "nerve-bench-release/1"
DOMAINS = ("music", "literature", "ai", "politics", "science")
VARIANTS = ("curated", "bare")
# Methods whose every sentence (wraner) or some (auto) goes to the LLM: scored on fewer.
# Quality: sentences each method answers (not scored) on fresh components before its rows.
WARMUP = 2
LLM_METHODS = frozenset({"wraner", "cllmfs", "auto"})
METHOD_ORDER = ("auto", "wraner", "cllmfs", "baner", "lar")
# Leave-domains-out (docs/results.md, "Conventions"): the shipped adapter and calibration are
# fold A's, which saw politics' and science's dev sets; those two are scored with fold B's.
FOLD_B = {
    "adapter": "model_repository/llm_cpu/1/adapters/fold-b/wraner-lora.gguf",
    "calibration": "model_repository/cascade/calibration-fold-b.json",
}
README = REPO_ROOT / "README.md"
RESULTS = REPO_ROOT / "docs" / "results.md"
README_START = "<!-- release-tables:start -->"
README_END = "<!-- release-tables:end -->"
RESULTS_START = "<!-- release-results:start -->"
RESULTS_END = "<!-- release-results:end -->"
PLACEHOLDER = (
    "_These tables are written by `make bench-release` (`python -m tools.bench_release`) "
    "and have not been produced on the current defaults yet._"
)
# Environment variables whose value is never recorded (only that they were set).
SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.I)

Log = Callable[[str], None]


class DirtyTree(RuntimeError):
    """The checkout has uncommitted changes: its numbers would belong to no commit."""


class MissingMarkers(ValueError):
    """A file has no (or more than one) block between the release markers."""


# --- what was measured where -----------------------------------------------------------------
def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """The commit (full and short), the branch and whether the tree is dirty (``git status
    --porcelain``, untracked files included; ignored ones such as ``runs/`` are not)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.rstrip("\n")  # not strip(): porcelain lines start with a space

    changes = git("status", "--porcelain").splitlines()
    return {
        "commit": git("rev-parse", "HEAD"),
        "short": git("rev-parse", "--short", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(changes),
        "changes": changes[:50],
    }


def check_clean(state: dict[str, Any], allow_dirty: bool) -> None:
    if state["dirty"] and not allow_dirty:
        listed = "\n  ".join(state["changes"][:10])
        raise DirtyTree(
            f"the tree at {state['short']} has uncommitted changes, so its numbers would belong "
            f"to no commit; commit or stash them, or pass --allow-dirty:\n  {listed}"
        )


def machine(
    cpuinfo: Path = Path("/proc/cpuinfo"), meminfo: Path = Path("/proc/meminfo")
) -> dict[str, Any]:
    """The CPU model (``/proc/cpuinfo``), the cores (logical CPUs, and those this process may
    use), the RAM (``/proc/meminfo``) and the platform."""
    model = None
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Processor") and value.strip():
                model = value.strip()
                break
    ram_kb = None
    with contextlib.suppress(OSError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_kb = int(line.split()[1])
                break
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": model or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "usable_cores": len(affinity) if affinity is not None else os.cpu_count(),
        "ram_gb": round(ram_kb / 1024**2, 1) if ram_kb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(v, 2) for v in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }


def nerve_environment() -> dict[str, str]:
    """The ``NERVE_*`` variables set for the run (a release run should set none that changes a
    default); secret-looking ones by name only."""
    return {
        k: ("<set>" if SECRET.search(k) else v)
        for k, v in sorted(os.environ.items())
        if k.startswith("NERVE_")
    }


def output_path(started: datetime, state: dict[str, Any], directory: Path) -> Path:
    dirty = "-dirty" if state["dirty"] else ""
    return directory / f"release-{started:%Y-%m-%d}-{state['short']}{dirty}.json"


# --- the measurements ------------------------------------------------------------------------
def served_methods(log: Log) -> list[str]:
    """The methods the shipped defaults serve (``GET /v1/methods``'s list), from components
    built with the default settings and closed again."""
    from app.components import build_components

    async def names_of(scratch: str) -> list[str]:
        components = build_components(load_settings(data_dir=Path(scratch), milvus={"uri": None}))
        try:
            return list(components.methods.names)
        finally:
            await components.close()

    with tempfile.TemporaryDirectory(prefix="nerve-release-") as scratch:
        names = asyncio.run(names_of(scratch))
    ordered = sorted(names, key=_method_rank)
    log(f"served methods: {', '.join(ordered)}")
    return ordered


def run_load(args: argparse.Namespace, methods: Sequence[str], log: Log) -> list[dict[str, Any]]:
    """``nerve bench serve`` of each method, ``args.runs`` times: one started gateway per run
    and method (the same unseen sentences every time: none can hit a cache)."""
    from tools.bench_serve import BenchConfig
    from tools.bench_serve import run as bench_serve

    out: list[dict[str, Any]] = []
    for number in range(1, args.runs + 1):
        for method in methods:
            log(f"load: run {number}/{args.runs}, {method}")
            config = BenchConfig(
                data=args.data,
                domain=args.load_domain,
                methods=(method,),
                levels=tuple(args.concurrency),
                requests=args.requests,
                seconds=args.seconds,
            )
            started = time.monotonic()
            result = bench_serve(config, log=log)
            out.append(
                {"run": number, "method": method, "wall_s": round(time.monotonic() - started, 1)}
                | {"result": result}
            )
    return out


def summarise_load(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method and concurrency level: the median of the runs and their min and max."""
    levels: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        for level in run["result"]["levels"]:
            levels.setdefault((level["method"], level["clients"]), []).append(level)
    rows = []
    for (method, clients), found in levels.items():
        row: dict[str, Any] = {"method": method, "clients": clients, "runs": len(found)}
        for key in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_request"):
            values = [v[key] for v in found if v.get(key) is not None]
            row[key] = _spread(values)
        row["requests"] = sum(v["requests"] for v in found)
        row["errors"] = sum(v["errors"] for v in found)
        rows.append(row)
    rows.sort(key=lambda r: (_method_rank(r["method"]), r["clients"]))
    return rows


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _method_rank(method: str) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def fold_of(domain: str, fold_b_domains: Sequence[str]) -> str:
    return "b" if domain in fold_b_domains else "a"


def fold_overrides(fold: str) -> dict[str, Any]:
    if fold == "a":
        return {}
    return {
        "llm": {"adapter": str(REPO_ROOT / FOLD_B["adapter"])},
        "cascade": {"calibration": REPO_ROOT / FOLD_B["calibration"]},
    }


def quality_settings(scratch: Path, fold: str) -> Settings:
    """The shipped defaults with the fold's overrides, as an evaluation runs them
    (:func:`tools.evaluation.scratch_settings`: a scratch store, the answer cache off, no
    adaptation run beside the timed rows)."""
    from tools.evaluation import scratch_settings

    return scratch_settings(load_settings(**fold_overrides(fold)), scratch)


def run_quality(args: argparse.Namespace, methods: Sequence[str], log: Log) -> list[dict[str, Any]]:
    """``nerve eval`` of each method, domain and type-description variant; one set of
    components per fold (:func:`quality_settings`), shared by its runs."""
    from app.components import build_components
    from tools.evaluation import evaluate

    rows: list[dict[str, Any]] = []
    folds: dict[str, list[str]] = {}
    for domain in args.domains:
        folds.setdefault(fold_of(domain, args.fold_b_domains), []).append(domain)

    async def one_fold(fold: str, domains: list[str], scratch: str) -> None:
        components = build_components(quality_settings(Path(scratch), fold))
        try:
            for method in methods:  # not counted: the first requests load what a method uses
                log(f"quality: fold {fold}, warm-up of {method}")
                await evaluate(
                    components.settings,
                    args.data,
                    domains[0],
                    "test",
                    limit=WARMUP,
                    method=method,
                    components=components,
                    progress=False,
                )
            for domain in domains:
                for method in methods:
                    for variant in args.variants:
                        log(f"quality: fold {fold}, {domain}, {method}, {variant} types")
                        rows.append(
                            await _quality_row(args, components, fold, domain, method, variant)
                        )
        finally:
            await components.close()

    for fold, domains in sorted(folds.items()):
        with tempfile.TemporaryDirectory(prefix="nerve-release-") as scratch:
            asyncio.run(one_fold(fold, domains, scratch))
    return rows


async def _quality_row(
    args: argparse.Namespace, components: Any, fold: str, domain: str, method: str, variant: str
) -> dict[str, Any]:
    from nerve.data.readers import read_split
    from nerve.data.scoring import score
    from tools.evaluation import _parser_counts, _spans, evaluate

    limit = args.llm_limit if method in LLM_METHODS else args.limit
    before = _parser_counts(components)
    started = time.monotonic()
    result = await evaluate(
        components.settings,
        args.data,
        domain,
        "test",
        limit=limit,
        method=method,
        components=components,
        progress=False,
        bare_types=variant == "bare",
    )
    seconds = time.monotonic() - started
    one_model(result.settings, f"{method} on {domain} ({variant})")
    routed = _delta(before, _parser_counts(components), "cascade_routed")
    gold = [e.entities for e in read_split(args.data, domain, "test")[: result.sentences]]
    predicted = [_spans(p) for p in result.predictions]
    no_misc = score(
        [[s for s in g if s.type != "misc"] for g in gold],
        [[s for s in p if s[2] != "misc"] for p in predicted],
    )
    segments = routed.get("true", 0.0) + routed.get("false", 0.0)
    payload = result.to_dict()
    return {
        "method": method,
        "domain": domain,
        "variant": variant,
        "fold": fold,
        "sentences": result.sentences,
        "f1": round(result.report.f1 * 100, 2),
        "f1_no_misc": round(no_misc.f1 * 100, 2),
        "precision": round(result.report.precision * 100, 2),
        "recall": round(result.report.recall * 100, 2),
        "median_latency_ms": round(result.median_latency_ms, 1),
        "p95_latency_ms": round(payload["p95_latency_ms"], 1),
        "routed_share": round(routed.get("true", 0.0) / segments, 3) if segments else None,
        "escalated": result.escalated,
        "failed": len(result.failures),
        "wall_s": round(seconds, 1),
        "settings": result.settings,
    }


def one_model(settings: dict[str, Any], row: str) -> None:
    """Refuse a row whose answers name more than one model (a domain model promoted mid-row,
    say): its F1 would describe neither."""
    models = settings.get("answered_by") or []
    if len(models) > 1:
        raise RuntimeError(f"the answers of {row} came from {len(models)} models: {models}")


def _delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], name: str
) -> dict[str, float]:
    old = before.get(name, {})
    return {k: v - old.get(k, 0.0) for k, v in after.get(name, {}).items()}


def measure(argv: Sequence[str], args: argparse.Namespace, log: Log) -> dict[str, Any]:
    """Everything ``run`` saves: checked and described first, then measured."""
    state = git_state()
    check_clean(state, args.allow_dirty)
    started = datetime.now(UTC)
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "synthetic": False,
        "date": started.isoformat(timespec="seconds"),
        "git": state,
        "machine": machine(),
        "command": shlex.join([sys.executable, "-m", "tools.bench_release", *argv]),
        "cwd": str(Path.cwd()),
        "environment": nerve_environment(),
        "parameters": {
            "data": str(args.data),
            "runs": args.runs,
            "load_domain": args.load_domain,
            "concurrency": list(args.concurrency),
            "requests": args.requests,
            "seconds": args.seconds,
            "domains": list(args.domains),
            "limit": args.limit,
            "llm_limit": args.llm_limit,
            "llm_methods": sorted(LLM_METHODS),
            "variants": list(args.variants),
            "fold_b_domains": list(args.fold_b_domains),
            "fold_b": FOLD_B,
        },
    }
    methods = list(args.methods) if args.methods else served_methods(log)
    record["methods"] = methods
    load_runs = [] if args.skip_load else run_load(args, methods, log)
    record["load"] = {"runs": load_runs, "summary": summarise_load(load_runs)}
    record["quality"] = [] if args.skip_quality else run_quality(args, methods, log)
    record["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    record["duration_s"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return record


# --- the tables ------------------------------------------------------------------------------
def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _cell(spread: dict[str, float] | None, digits: int) -> str:
    if spread is None:
        return "-"
    if spread["min"] == spread["max"]:
        return _fmt(spread["median"], digits)
    return (
        f"{_fmt(spread['median'], digits)} "
        f"({_fmt(spread['min'], digits)}-{_fmt(spread['max'], digits)})"
    )


def _short_date(record: dict[str, Any]) -> str:
    return str(record["date"]).replace("T", " ").replace("+00:00", " UTC")


def provenance(record: dict[str, Any]) -> str:
    m = record["machine"]
    git = record["git"]
    dirty = " (with uncommitted changes)" if git["dirty"] else ""
    ram = f", {m['ram_gb']:g} GB RAM" if m.get("ram_gb") else ""
    synthetic = (
        "**Synthetic numbers (a test fixture), not a measurement.** "
        if record.get("synthetic")
        else ""
    )
    return (
        f"{synthetic}Measured by `make bench-release` on {_short_date(record)} at commit "
        f"`{git['short']}`{dirty} on {m['cpu_model']} ({m['cores']} cores{ram}), "
        f"shipped defaults."
    )


def load_table(record: dict[str, Any]) -> str:
    p = record["parameters"]
    summary = record["load"]["summary"]
    if not summary:
        return "Load: not measured in this run."
    lines = [
        f"Load through the HTTP API (`nerve bench serve`, {p['load_domain']}, unseen test "
        f"sentences, at most {p['requests']} requests or {p['seconds']:g} s a level; median of "
        f"{p['runs']} run{'s' if p['runs'] != 1 else ''}, (min-max)):",
        "",
        "| method | clients | req/s | p50 ms | p95 ms | gateway CPU ms/req | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary:
        lines.append(
            f"| `{r['method']}` | {r['clients']} | {_cell(r['requests_per_s'], 1)} | "
            f"{_cell(r['p50_ms'], 0)} | {_cell(r['p95_ms'], 0)} | "
            f"{_cell(r['server_cpu_ms_per_request'], 0)} | {r['errors']} |"
        )
    return "\n".join(lines)


def quality_table(record: dict[str, Any]) -> str:
    rows = record["quality"]
    if not rows:
        return "Quality: not measured in this run."
    p = record["parameters"]
    domains = [d for d in p["domains"] if any(r["domain"] == d for r in rows)]
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["variant"]), {})[r["domain"]] = r
    order = sorted(
        groups,
        key=lambda k: (
            VARIANTS.index(k[1]) if k[1] in VARIANTS else len(VARIANTS),
            _method_rank(k[0]),
        ),
    )
    fold_b = [d for d in domains if d in p["fold_b_domains"]]
    llm = sorted(LLM_METHODS & {k[0] for k in groups})
    sample = f"the first {p['limit']} test sentences of each CrossNER domain"
    if llm and p["llm_limit"] != p["limit"]:
        sample += f" ({', '.join(f'`{m}`' for m in llm)} on the first {p['llm_limit']})"
    lines = [
        f"Quality (`nerve eval`): micro-F1 over exact spans, with / without misc, on {sample}; "
        "pool = the domain's train split"
        + (
            f"; {', '.join(fold_b)} scored with the fold B adapter and calibration "
            "(leave-domains-out)"
            if fold_b
            else ""
        )
        + ":",
        "",
        "| method | type descriptions | sentences a domain | avg F1 | "
        + " | ".join(domains)
        + " | sent to the LLM | p50 ms |",
        "| --- | --- | ---: | ---: | " + "---: | " * len(domains) + "---: | ---: |",
    ]
    for method, variant in order:
        by_domain = groups[(method, variant)]
        found = [by_domain[d] for d in domains if d in by_domain]
        avg = (
            f"{statistics.mean(r['f1'] for r in found):.1f} / "
            f"{statistics.mean(r['f1_no_misc'] for r in found):.1f}"
        )
        cells = [
            f"{by_domain[d]['f1']:.1f} / {by_domain[d]['f1_no_misc']:.1f}"
            if d in by_domain
            else "-"
            for d in domains
        ]
        sizes = sorted({r["sentences"] for r in found})
        routed = _routed(method, found)
        latency = statistics.median(r["median_latency_ms"] for r in found)
        lines.append(
            f"| `{method}` | {variant} | {'/'.join(str(n) for n in sizes)} | **{avg}** | "
            + " | ".join(cells)
            + f" | {routed} | {_fmt(latency, 0)} |"
        )
    lines += [
        "",
        "(p50 ms: the median over the domains of each domain's median latency per sentence, "
        "one sentence at a time.)",
    ]
    return "\n".join(lines)


def _routed(method: str, rows: list[dict[str, Any]]) -> str:
    if method in ("wraner", "cllmfs"):
        return "100%"
    shares = [r["routed_share"] for r in rows if r.get("routed_share") is not None]
    if method == "auto" and shares:
        return f"{statistics.mean(shares) * 100:.0f}%"
    return "0%" if method in ("baner", "lar") else "-"


def readme_block(record: dict[str, Any], source: str) -> str:
    return "\n\n".join(
        [
            provenance(record) + f" Source: `{source}`.",
            load_table(record),
            quality_table(record),
        ]
    )


def results_block(record: dict[str, Any], source: str) -> str:
    m = record["machine"]
    git = record["git"]
    methods = ", ".join(f"`{x}`" for x in record["methods"])
    details = [
        f"- Measured: {_short_date(record)} to "
        f"{str(record['finished']).replace('T', ' ').replace('+00:00', ' UTC')} "
        f"({record['duration_s'] / 60:.0f} min), commit `{git['commit']}`"
        + (" with uncommitted changes" if git["dirty"] else "")
        + f", {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable)"
        + (f", {m['ram_gb']:g} GB RAM" if m.get("ram_gb") else "")
        + f", {m['platform']}, load average at the start {m['load_average']}.",
        f"- Methods (those the shipped defaults serve): {methods}.",
        "- `NERVE_*` set: "
        + (", ".join(f"`{k}={v}`" for k, v in record["environment"].items()) or "none")
        + ".",
        f"- Source: `{source}` (the whole output, each run's levels and each row's settings).",
        f"- Command: `{record['command']}`",
    ]
    return "\n\n".join(
        [
            provenance(record),
            load_table(record),
            quality_table(record),
            "\n".join(details),
        ]
    )


def between(text: str, start: str, end: str, block: str, where: str) -> str:
    """``text`` with ``block`` between the markers ``start`` and ``end`` (each exactly once)."""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise MissingMarkers(
            f"{where} needs exactly one {start!r} followed by one {end!r} (around the tables "
            "`python -m tools.bench_release write` fills); found "
            f"{text.count(start)} start and {text.count(end)} end markers"
        )
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


def written(path: Path, record: dict[str, Any], source: str, kind: str) -> str:
    """The file at ``path`` with the tables of ``record`` (``kind``: readme or results)."""
    text = path.read_text(encoding="utf-8")
    if kind == "readme":
        return between(text, README_START, README_END, readme_block(record, source), str(path))
    return between(text, RESULTS_START, RESULTS_END, results_block(record, source), str(path))


def load_record(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a bench-release output ({SCHEMA}): {record.get('schema')}")
    return record


def source_name(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def write_tables(path: Path, readme: Path = README, results: Path = RESULTS) -> list[Path]:
    """Write ``path``'s tables into ``readme`` and ``results``; the files that changed."""
    record = load_record(path)
    source = source_name(path)
    new = {
        readme: written(readme, record, source, "readme"),
        results: written(results, record, source, "results"),
    }  # both checked before either is written
    changed = []
    for target, text in new.items():
        if target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    return changed


# --- the command -----------------------------------------------------------------------------
def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _levels(value: str) -> list[int]:
    return [int(v) for v in _csv(value)]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m tools.bench_release", description=__doc__.split("\n")[0]
    )
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure the shipped defaults and save one JSON file")
    run.add_argument("--data", type=Path, default=CROSSNER_DIR)
    run.add_argument("--output-dir", type=Path, default=REPO_ROOT / "runs")
    run.add_argument("--output", type=Path, default=None, help="instead of the dated name")
    run.add_argument("--runs", type=int, default=3, help="load runs (median and spread)")
    run.add_argument("--load-domain", default="music")
    run.add_argument("--concurrency", type=_levels, default=[1, 4, 8, 16])
    run.add_argument("--requests", type=int, default=100, help="a level's requests, at most")
    run.add_argument("--seconds", type=float, default=20.0, help="a level's time, at most")
    run.add_argument("--methods", type=_csv, default=None, help="default: every served one")
    run.add_argument("--domains", type=_csv, default=list(DOMAINS))
    run.add_argument("--limit", type=int, default=100, help="quality: sentences a domain")
    run.add_argument(
        "--llm-limit", type=int, default=50, help="quality: sentences a domain for wraner/auto"
    )
    run.add_argument("--variants", type=_csv, default=list(VARIANTS), help="curated,bare")
    run.add_argument("--fold-b-domains", type=_csv, default=["politics", "science"])
    run.add_argument("--skip-load", action="store_true")
    run.add_argument("--skip-quality", action="store_true")
    run.add_argument("--allow-dirty", action="store_true", help="measure a dirty tree anyway")
    run.add_argument("--write", action="store_true", help="then write README.md and results.md")
    write = sub.add_parser("write", help="write README.md's and docs/results.md's tables")
    write.add_argument("output", type=Path)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.command == "write":
        try:
            changed = write_tables(args.output)
        except (MissingMarkers, ValueError, OSError) as error:
            log(f"error: {error}")
            return 2
        log("written: " + (", ".join(str(p) for p in changed) or "nothing changed"))
        return 0
    bad = set(args.variants) - set(VARIANTS)
    if bad:
        log(f"error: --variants takes {','.join(VARIANTS)}; got {sorted(bad)}")
        return 2
    try:
        record = measure(argv, args, log)
    except DirtyTree as error:
        log(f"error: {error}")
        return 2
    path = args.output or output_path(
        datetime.fromisoformat(record["date"]), record["git"], args.output_dir
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"saved {path} ({record['duration_s'] / 60:.1f} min)")
    print(path)
    if args.write:
        try:
            changed = write_tables(path)
        except MissingMarkers as error:
            log(f"error: {error} (the measurement is saved: write it with `write {path}`)")
            return 2
        log("written: " + (", ".join(str(p) for p in changed) or "nothing changed"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``nerve`` command: serve, index, eval, triton, train."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from nerve.settings import load_settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr (unwrapped, so it can be grepped) and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def describe_cli_error(error: Exception) -> str:
    from pydantic import ValidationError

    from nerve.errors import NerveError, describe_validation

    if isinstance(error, ValidationError):
        return describe_validation(error.errors())
    if isinstance(error, NerveError):
        return f"{error.code}: {error.message}"
    return str(error)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default NERVE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default NERVE_PORT).")] = None,
    demo: Annotated[bool, typer.Option(help="Load the customer-care demo domain.")] = False,
) -> None:
    """Serve the API (state under NERVE_DATA_DIR) in one process: scale out with replicas
    behind a load balancer, and move the encoders' CPU to Triton (NERVE_ENCODER_BACKEND)."""
    import uvicorn

    from app.logging import configure_logging
    from app.main import build_app

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if demo:
        overrides["load_demo_domain"] = True
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=30,  # drain in-flight requests on SIGTERM
    )


@cli.command()
def prepare() -> None:
    """Assemble the embedded default's GGUF model into NERVE_DATA_DIR/models (with the LoRA
    merged in when NERVE_LLM_MERGE_ADAPTER asks for it), and export the
    ONNX encoders that NERVE_EMBEDDER_RUNTIME / NERVE_ENCODER_RUNTIME ask for (idempotent)."""
    from app.components import build_embedder
    from nerve.generation.weights import model_files
    from nerve.methods.encoders.factory import EncoderBackendsConfig, build_encoder_backends

    settings = load_settings()
    path, _ = model_files(settings)
    console.print(f"model ready: {path}")
    if settings.embedder.runtime != "torch":
        build_embedder(settings)
        console.print(f"embedder ({settings.embedder.runtime}) ready in {settings.onnx.dir}")
    inprocess = settings.encoder.methods and settings.encoder.backend == "inprocess"
    if inprocess and settings.encoder.runtime != "torch":
        build_encoder_backends(EncoderBackendsConfig.from_settings(settings))
        console.print(f"BANER encoder ({settings.encoder.runtime}) ready in {settings.onnx.dir}")


@cli.command()
def index(
    domain: Annotated[str, typer.Option(help="Domain to create or extend.")],
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CoNLL/BIO file.")],
    types: Annotated[
        str | None, typer.Option(help="Comma-separated types (default: those in the file).")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant owning the domain.")] = "default",
) -> None:
    """Index a CoNLL/BIO file into a domain's pool, in process (stop `nerve serve` first when
    it uses the same Milvus Lite directory: that directory is locked by one process)."""
    from pydantic import ValidationError

    from app.components import build_components
    from app.domains.protocol import DomainIn, EntityTypeIn
    from nerve.data.crossner_types import entity_types_for
    from nerve.data.readers import BioFormatError, entity_types_of, read_bio_file
    from nerve.errors import NerveError

    async def run() -> None:
        examples = read_bio_file(file)
        components = build_components(load_settings())
        try:
            if not await components.domains.store_has(tenant, domain):
                names = types.split(",") if types else entity_types_of(examples)
                await components.domains.create(
                    tenant,
                    DomainIn(
                        name=domain,
                        entity_types=[
                            EntityTypeIn(name=t.name, description=t.description)
                            for t in entity_types_for(n.strip() for n in names)
                        ],
                    ),
                )
            updated, ids = await components.domains.add_examples(
                tenant, domain, examples, source="cli"
            )
            console.print(
                f"indexed {len(ids)} examples into {domain!r} (version {updated.version})"
            )
        finally:
            await components.close()

    try:
        asyncio.run(run())
    except (BioFormatError, ValidationError, NerveError) as error:
        # Bad input is the caller's to fix: one line naming it, no traceback.
        fail(describe_cli_error(error))


@cli.command("eval")
def eval_command(
    data: Annotated[Path, typer.Option(help="Dataset root: <data>/<domain>/<split>.txt.")] = Path(
        "../shared/data/crossner"
    ),
    domain: Annotated[str, typer.Option(help="Domain folder, e.g. music.")] = "music",
    split: Annotated[str, typer.Option(help="Split to score.")] = "test",
    pool_split: Annotated[str, typer.Option(help="Split used as the retrieval pool.")] = "train",
    limit: Annotated[int | None, typer.Option(help="Score only the first N sentences.")] = None,
    pool_limit: Annotated[
        int | None, typer.Option(help="Pool: only the first N sentences of --pool-split.")
    ] = None,
    offset: Annotated[
        int, typer.Option(min=0, help="Skip the first N sentences (before --limit).")
    ] = 0,
    top_k: Annotated[int | None, typer.Option(help="Examples per prompt.")] = None,
    retrieval: Annotated[str | None, typer.Option(help="word or sentence.")] = None,
    word_embedding: Annotated[str | None, typer.Option(help="context or alone.")] = None,
    adapter: Annotated[str | None, typer.Option(help="none, wraner or a LoRA GGUF.")] = None,
    method: Annotated[
        str, typer.Option(help="A method this deployment serves (GET /v1/methods lists them).")
    ] = "wraner",
    bare_types: Annotated[
        bool, typer.Option(help="Describe each entity type by its bare name (stress variant).")
    ] = False,
    lowercase: Annotated[
        bool, typer.Option(help="Lowercase the scored sentences, same gold (stress variant).")
    ] = False,
    adapt: Annotated[
        bool,
        typer.Option(
            help="Adapt the domain to its pool (a run of the real job) before scoring; pool "
            "sentences equal to a scored one are left out."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON result here.")] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Write per-sentence predictions (JSONL) here.")
    ] = None,
) -> None:
    """Score a split through the API's own pipeline (fresh store; pool = --pool-split)."""
    from pydantic import ValidationError

    from app.logging import configure_logging
    from nerve.data.readers import BioFormatError
    from nerve.errors import InvalidRequest
    from tools.evaluation import LowercaseShiftsOffsets, evaluate

    overrides: dict[str, Any] = {}
    for group, field, value in (
        ("retrieval", "mode", retrieval),
        ("embedder", "word_mode", word_embedding),
        ("llm", "adapter", adapter),
    ):
        if value is not None:
            overrides[group] = {field: value}
    configure_logging("WARNING", as_json=False)
    logging.getLogger("tools.evaluation").setLevel(logging.INFO)
    try:
        settings = load_settings(**overrides)
        result = asyncio.run(
            evaluate(
                settings,
                data,
                domain,
                split,
                pool_split=pool_split,
                pool_limit=pool_limit,
                limit=limit,
                top_k=top_k,
                method=method,
                progress=sys.stderr.isatty() or not as_json,
                offset=offset,
                bare_types=bare_types,
                lowercase=lowercase,
                adapt=adapt,
            )
        )
    except (
        FileNotFoundError,
        BioFormatError,
        ValidationError,
        InvalidRequest,
        LowercaseShiftsOffsets,
    ) as error:
        fail(describe_cli_error(error))
    payload = result.to_dict()
    if output:
        output.write_text(json.dumps(payload, indent=2))
    if predictions:
        with predictions.open("w") as handle:
            for row in result.predictions:
                handle.write(json.dumps(row) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    _print_report(payload)


def _print_report(payload: dict[str, Any]) -> None:
    report = payload["report"]
    table = Table(
        title=f"{payload['domain']}/{payload['split']}: {payload['sentences']} sentences, "
        f"pool {payload['pool_size']}, {payload['settings']}"
    )
    for column in (
        "type",
        "precision",
        "recall",
        "f1",
        "support",
        "wrong type",
        "boundary",
        "missed",
    ):
        table.add_column(column, justify="right" if column != "type" else "left")
    for name, row in report["per_type"].items():
        errors = report["errors"].get(name, {})
        table.add_row(
            name,
            f"{row['precision'] * 100:.1f}",
            f"{row['recall'] * 100:.1f}",
            f"{row['f1'] * 100:.1f}",
            str(row["support"]),
            str(errors.get("wrong_type", 0)),
            str(errors.get("wrong_boundary", 0) + errors.get("wrong_both", 0)),
            str(errors.get("missed", 0)),
        )
    micro = payload["micro"]
    table.add_row(
        "[bold]micro",
        f"{micro['precision'] * 100:.1f}",
        f"{micro['recall'] * 100:.1f}",
        f"[bold]{micro['f1'] * 100:.1f}",
        str(report["gold"]),
    )
    Console().print(table)
    Console().print(
        f"median latency {payload['median_latency_ms']:.0f} ms, "
        f"p95 {payload['p95_latency_ms']:.0f} ms, escalated {payload['escalated']}"
    )


bench_cli = typer.Typer(help="Benchmarks of a running service (offline tools).")
cli.add_typer(bench_cli, name="bench")


@bench_cli.command("serve")
def bench_serve(
    url: Annotated[
        str | None,
        typer.Option(help="A running gateway (loopback only); default: start one here."),
    ] = None,
    data: Annotated[Path, typer.Option(help="Dataset root: <data>/<domain>/<split>.txt.")] = Path(
        "../shared/data/crossner"
    ),
    domain: Annotated[str, typer.Option(help="Domain: train = pool, test = queries.")] = "music",
    method: Annotated[
        list[str] | None, typer.Option(help="Method to load (repeat for several).")
    ] = None,
    concurrency: Annotated[
        str, typer.Option(help="Comma-separated numbers of concurrent clients.")
    ] = "1,4,8,16",
    requests: Annotated[int, typer.Option(min=1, help="Requests per level, at most.")] = 40,
    seconds: Annotated[float, typer.Option(min=0.1, help="Seconds per level, at most.")] = 60.0,
    warmup: Annotated[int, typer.Option(min=0, help="Uncounted requests per method.")] = 2,
    pool_limit: Annotated[
        int | None, typer.Option(min=1, help="Index only the first N train sentences.")
    ] = None,
    top_k: Annotated[int | None, typer.Option(help="top_k sent with each request.")] = None,
    server_env: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE for the started gateway (repeat), e.g. NERVE_LLM_THREADS=2."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the JSON result here.")] = None,
    triton_stats: Annotated[
        str | None,
        typer.Option(
            help="Triton's HTTP URL (loopback): per level, the requests and execute calls of "
            "the Triton model named like the method (NERVE_ENCODER_BACKEND=triton)."
        ),
    ] = None,
    adapted: Annotated[
        bool,
        typer.Option(
            help="Also load each method on a copy of the domain adapted to its pool "
            "(reported as <method>+adapted)."
        ),
    ] = False,
) -> None:
    """Load /v1/ner of a real `nerve serve` at several concurrency levels with unseen CrossNER
    test sentences: requests/s, latency percentiles, errors and each stage's share."""
    # Loaded here, not at the top: the gateway never imports the offline packages.
    from tools.bench_serve import BenchConfig, render_table, run, write

    try:
        levels = tuple(int(n) for n in concurrency.split(","))
    except ValueError:
        fail(f"--concurrency must be comma-separated integers; got {concurrency!r}")
    if not levels or min(levels) < 1:
        fail(f"--concurrency levels must be at least 1; got {concurrency!r}")
    env: dict[str, str] = {}
    for item in server_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("NERVE_"):
            fail(f"--server-env takes NERVE_KEY=VALUE; got {item!r}")
        env[key] = value
    config = BenchConfig(
        url=url,
        data=data,
        domain=domain,
        methods=tuple(method or ["baner"]),
        levels=levels,
        requests=requests,
        seconds=seconds,
        warmup=warmup,
        pool_limit=pool_limit,
        top_k=top_k,
        server_env=env,
        triton_stats=triton_stats,
        adapted=adapted,
    )
    try:
        result = run(config, log=lambda line: console.print(line, highlight=False))
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        fail(str(error))
    write(result, output)
    # A wide table even when piped (a log file, CI), where rich would assume 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(render_table(result))


keys_cli = typer.Typer(help="API keys (stored hashed) for NERVE_AUTH_ENABLED=true.")
cli.add_typer(keys_cli, name="keys")


@keys_cli.command("add")
def keys_add(
    file: Annotated[Path, typer.Option(help="The keys file (NERVE_AUTH_API_KEYS_FILE).")],
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for.")],
    admin: Annotated[bool, typer.Option(help="May act for any tenant and read /metrics.")] = False,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
) -> None:
    """Create a key; it is printed once and only its sha256 is stored."""
    from app.auth import add_key

    key = add_key(file, tenant, admin=admin, name=name)
    sys.stdout.write(key + "\n")


@cli.command()
def triton(
    http_port: Annotated[int, typer.Option(help="Triton HTTP port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="Triton gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Triton metrics port.")] = 8002,
) -> None:
    """Run the real tritonserver (from nvidia-pytriton) on model_repository/, in the foreground."""
    from app.logging import configure_logging
    from cli.triton_server import run_triton

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_json)
    raise typer.Exit(run_triton(settings, http_port, grpc_port, metrics_port))


@cli.command(
    # Every option after the trainer's name, --help included, belongs to the trainer.
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def train(
    ctx: typer.Context,
    method: Annotated[
        str | None,
        typer.Argument(metavar="METHOD", help="The trainer (listed by `nerve train --help`)."),
    ] = None,
) -> None:
    """Run a trainer: `nerve train wraner --config trainers/configs/...yaml` (see trainers/).

    Every option after METHOD is the trainer's own: `nerve train METHOD --help` shows them.
    """
    try:
        # Loaded here, not at the top: the gateway never imports the offline packages.
        from trainers.registry import TRAINERS
    except ModuleNotFoundError as error:
        if error.name not in ("trainers", "trainers.registry"):
            raise
        fail("the trainers are not installed here: run `nerve train` from a repository checkout")
    if method in ("--help", "-h"):
        width = max(map(len, TRAINERS))
        listing = "\n".join(f"  {n:<{width}}  {t.summary}" for n, t in TRAINERS.items())
        help_text = ctx.get_help()  # typer's rich help prints itself and returns ""
        typer.echo(f"{help_text}\nTrainers:\n{listing}" if help_text else f"Trainers:\n{listing}")
        return
    if method not in TRAINERS:
        given = "no trainer given" if method is None else f"unknown trainer {method!r}"
        fail(f"{given}; choose from {', '.join(sorted(TRAINERS))}")
    TRAINERS[method].entry_point()(list(ctx.args))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()

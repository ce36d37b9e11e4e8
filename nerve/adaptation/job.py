"""One adaptation run in its own process: ``python -m nerve.adaptation.job INPUT OUTPUT``.

The gateway writes INPUT (``request.json``: tenant, domain, entity types, fit options; and
``examples.jsonl``: the domain's pool, one :class:`Example` per line) and starts this process at
a lower CPU priority, so training never takes a core from serving. It writes OUTPUT/``model/``
(the head and its manifest) and, last, OUTPUT/``report.json`` (the fit report and the manifest's
sha256): a run without ``report.json`` failed. The exit code is 0 on success.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerve.adaptation.store import MODEL_DIR, REPORT_FILE
from nerve.vocab.types import EntityType, Example

if TYPE_CHECKING:  # torch loads in the job only, not in the gateway that writes its input
    from nerve.adaptation.fit import FitOptions

REQUEST_FILE = "request.json"
EXAMPLES_FILE = "examples.jsonl"


def write_input(
    directory: Path,
    *,
    tenant: str,
    domain: str,
    entity_types: list[EntityType],
    examples: list[Example],
    options: FitOptions,
    nice: int = 10,
) -> None:
    """What the gateway hands a run (the counterpart of :func:`read_input`)."""
    from dataclasses import asdict

    directory.mkdir(parents=True, exist_ok=True)
    request = {
        "tenant": tenant,
        "domain": domain,
        "entity_types": [t.model_dump() for t in entity_types],
        "options": asdict(options),
        "nice": nice,
    }
    (directory / REQUEST_FILE).write_text(json.dumps(request))
    with (directory / EXAMPLES_FILE).open("w") as handle:
        for example in examples:
            handle.write(example.model_dump_json() + "\n")


def read_input(directory: Path) -> tuple[dict[str, Any], list[EntityType], list[Example]]:
    request = json.loads((directory / REQUEST_FILE).read_text())
    types = [EntityType.model_validate(t) for t in request["entity_types"]]
    with (directory / EXAMPLES_FILE).open() as handle:
        examples = [Example.model_validate_json(line) for line in handle if line.strip()]
    return request, types, examples


def run(input_dir: Path, output_dir: Path) -> dict[str, Any]:
    request, entity_types, examples = read_input(input_dir)
    os.nice(int(request.get("nice", 10)))  # serving keeps the CPU when both want it
    import torch

    torch.set_num_threads(1)
    from nerve.adaptation.fit import FitOptions, fit_domain
    from nerve.adaptation.model import save_model
    from nerve.methods.encoders.factory import EncoderBackendsConfig, load_extractor
    from nerve.settings import load_settings

    extractor = load_extractor(EncoderBackendsConfig.from_settings(load_settings()))
    options = FitOptions(**request["options"])
    model, report = fit_domain(extractor, examples, entity_types, options)
    model.info = {
        "tenant": request["tenant"],
        "domain": request["domain"],
        "examples": len(examples),
        "report": report.to_dict(),
    }
    digest = save_model(model, output_dir / MODEL_DIR)
    result = {"report": report.to_dict(), "manifest_sha256": digest, "bytes": model.nbytes}
    temporary = output_dir / (REPORT_FILE + ".tmp")
    temporary.write_text(json.dumps(result))
    os.replace(temporary, output_dir / REPORT_FILE)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m nerve.adaptation.job INPUT_DIR OUTPUT_DIR", file=sys.stderr)
        return 2
    result = run(Path(args[0]), Path(args[1]))
    print(json.dumps(result["report"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

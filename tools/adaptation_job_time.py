"""CPU time of one adaptation run, as the gateway runs it: ``python -m nerve.adaptation.job`` on
the first ``--pool`` train sentences of a CrossNER domain with bare type names and the shipped
:class:`~nerve.adaptation.fit.FitOptions` (issue 31's bound: 5 minutes of one core for 200).

    python -m tools.adaptation_job_time --data ../shared/data/crossner --domain science --pool 200

Prints one JSON line: the job's report (``seconds``: the fit's CPU time) and the whole job
process's user and system CPU seconds. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from app.adaptation.runner import JOB_COMMAND
from nerve.adaptation.fit import FitOptions
from nerve.adaptation.job import write_input
from nerve.adaptation.store import REPORT_FILE
from nerve.data.readers import entity_types_of, read_split
from nerve.settings import CROSSNER_DIR
from nerve.vocab.types import EntityType


def measure(data: Path, domain: str, pool: int) -> dict[str, Any]:
    examples = read_split(data, domain, "train")[:pool]
    types = [EntityType(name=t) for t in entity_types_of(examples)]
    with tempfile.TemporaryDirectory(prefix="nerve-job-time-") as scratch:
        request, output = Path(scratch) / "in", Path(scratch) / "out"
        write_input(
            request,
            tenant="default",
            domain=domain,
            entity_types=types,
            examples=examples,
            options=FitOptions(),
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.monotonic()
        subprocess.run(
            [*JOB_COMMAND, str(request), str(output)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = json.loads((output / REPORT_FILE).read_text())["report"]
    return {
        "domain": domain,
        "examples": len(examples),
        "wall_s": round(time.monotonic() - began, 1),
        "process_user_s": round(after.ru_utime - before.ru_utime, 1),
        "process_system_s": round(after.ru_stime - before.ru_stime, 1),
        "report": report,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.adaptation_job_time")
    parser.add_argument("--data", type=Path, default=CROSSNER_DIR)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--pool", type=int, default=200)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.data, args.domain, args.pool)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

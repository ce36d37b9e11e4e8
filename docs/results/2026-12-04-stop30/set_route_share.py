"""Move the shipped calibrations' default route threshold to the threshold their router's fit
put at SHARE of its dev sentences (``meta.router.threshold_by_share``), without refitting (the
dev runs it was fitted on are gone with stop 29's machine).

    python docs/results/2026-12-04-stop30/set_route_share.py 0.5 model_repository/cascade/calibration-fold-{a,b}.json

Stop 30 moved it from 0.85 to 0.5: the largest tabulated share under half, so the median
request is answered without the LLM (the issue's p50 bound), chosen before the test tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(share: str, paths: list[Path]) -> None:
    for path in paths:
        calibration = json.loads(path.read_text())
        router = calibration["meta"]["router"]
        calibration["route_threshold"] = router["threshold_by_share"][share]
        router["routed_share"] = float(share)
        path.write_text(json.dumps(calibration, indent=2) + "\n")
        print(path, calibration["route_threshold"])


if __name__ == "__main__":
    main(sys.argv[1], [Path(p) for p in sys.argv[2:]])

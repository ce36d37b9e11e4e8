#!/bin/bash
# auto offline on the first 100 test sentences a domain: bare type names (the bare wraner runs) and curated (stop 25's
# full runs), same BANER runs (BANER does not read descriptions), each domain with its fold's calibration.
cd /work/main; C=model_repository/cascade; D=docs/results/2026-12-03-stop26
for spec in "bare /work/res/bare-cascade" "curated /work/res/full/cascade"; do
  set -- $spec
  PYTHONPATH=/work/main .venv/bin/python -m tools.cascade_eval --data /work/shared/data/crossner --runs $2 --pattern '{method}-{domain}' \
    --domain music=$C/calibration-fold-a.json --domain literature=$C/calibration-fold-a.json --domain ai=$C/calibration-fold-a.json \
    --domain politics=$C/calibration-fold-b.json --domain science=$C/calibration-fold-b.json --limit 100 \
    --thresholds 0.2,0.3,0.6,1.01 --rule union --threshold 0.6 --output $D/cascade-first100-$1.json > $D/cascade-first100-$1.md
done

#!/bin/bash
# After the politics runs: tables, per-type errors, the cascade offline on the five full sets.
set -e
T=/work/wt/cllmfs; M=/work/main; D=$M/docs/results/2026-12-03-stop25/full
F=$M/docs/results/2026-12-03-stop24/cllmfs; O=/work/res/full/joined; C=$M/model_repository/cascade
PY="env PYTHONPATH=$T /work/main/.venv/bin/python"
cd $T
$PY $D/full_table.py $F /work/res/full $O 'wraner=wraner-{domain}:wraner-{domain}' 'cllmfs=cllmfs-rms-{domain}:cllmfs-{domain}' > $D/table.md
: > $D/per_type_errors.md
for d in music literature ai politics science; do
  $PY $M/docs/results/2026-12-02-stop23/foldb/error_table.py $d 100000 $O/full-wraner-$d.jsonl $O/full-cllmfs-$d.jsonl >> $D/per_type_errors.md
done
mkdir -p $D/joined $D/rest
cp $O/full-*.jsonl $O/full-*.json $D/joined/
cp /work/res/full/wraner-*.json /work/res/full/cllmfs-*.json $D/rest/
for llm in wraner cllmfs; do
  dir=/work/res/full/cascade; [ $llm = cllmfs ] && dir=/work/res/full/cascade-cllmfs
  $PY -m tools.cascade_eval --data /work/shared/data/crossner --runs $dir --pattern '{method}-{domain}' \
    --domain music=$C/calibration-fold-a.json --domain literature=$C/calibration-fold-a.json --domain ai=$C/calibration-fold-a.json \
    --domain politics=$C/calibration-fold-b.json --domain science=$C/calibration-fold-b.json \
    --thresholds 0,0.15,0.2,0.25,0.3,0.4,0.5,0.6,0.7,0.8,1.01 --rule union --threshold 0.6 \
    --output $D/cascade-$llm.json > $D/cascade-$llm.md
done
echo done

#!/bin/bash
# usage: eval_rest.sh CORE TAG ADAPTER_A ADAPTER_B DOMAIN... : test sentences 51..end of each domain (the first 50 were
# scored by the same tree in stop 24; decoding is deterministic, checked), one core, frozen worktree 09c3811.
# ADAPTER_A serves music/literature/ai (fold A), ADAPTER_B politics/science (fold B).
core=$1; tag=$2; a=$3; b=$4; shift 4
cd /work/wt/cllmfs
for d in "$@"; do
  case $d in politics|science) adapter=$b;; *) adapter=$a;; esac
  PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
  taskset -c $core /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $d --split test \
    --offset 50 --method wraner --adapter $adapter --json --output /work/res/full/$tag-$d.json \
    --predictions /work/res/full/$tag-$d.jsonl > /work/res/full/$tag-$d.log 2>&1
  echo "$tag $d exit $? $(date +%T)" >> /work/res/full/progress.txt
done

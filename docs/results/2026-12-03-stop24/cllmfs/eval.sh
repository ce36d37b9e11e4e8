#!/bin/bash
# usage: eval.sh CORE TAG ADAPTER DOMAIN... : first 50 test sentences of each domain, one core, from the frozen worktree.
core=$1; tag=$2; adapter=$3; shift 3
cd /work/wt/cllmfs
for d in "$@"; do
  PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
  taskset -c $core /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $d --split test \
    --limit 50 --method wraner --adapter $adapter --json --output /work/res/cllmfs/$tag-$d.json \
    --predictions /work/res/cllmfs/$tag-$d.jsonl > /work/res/cllmfs/$tag-$d.log 2>&1
  echo "$tag $d exit $? $(date +%T)" >> /work/res/cllmfs/progress.txt
done

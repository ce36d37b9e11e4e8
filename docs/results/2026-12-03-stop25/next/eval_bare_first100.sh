#!/bin/bash
# Bare type names, first 100 test sentences a domain, wraner then cllmfs (same adapters as the full runs), core 1, frozen tree 09c3811.
A=/work/res/full/adapters
cd /work/wt/cllmfs
for spec in "wraner wraner $A/wraner-fold-b.gguf" "cllmfs $A/cllmfs-fold-a.gguf $A/cllmfs-fold-b.gguf"; do
  set -- $spec; tag=$1; a=$2; b=$3
  for d in music literature ai politics science; do
    case $d in politics|science) adapter=$b;; *) adapter=$a;; esac
    PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
    taskset -c 1 /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $d --split test \
      --limit 100 --bare-types --method wraner --adapter $adapter --json --output /work/res/bare/$tag-$d.json \
      --predictions /work/res/bare/$tag-$d.jsonl > /work/res/bare/$tag-$d.log 2>&1
    echo "$tag $d exit $? $(date +%T)" >> /work/res/bare/progress.txt
  done
done

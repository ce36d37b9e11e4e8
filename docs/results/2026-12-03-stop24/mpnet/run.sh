#!/bin/bash
# BANER on the full test sets: MiniLM-L6 (default) vs all-mpnet-base-v2 as the retrieval embedder. Core 1, one thread.
cd /work/wt/cllmfs
MP=/root/.cache/nerve/models/all-mpnet-base-v2
export PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
echo "$(date -u +%T) export start" >> /work/res/mpnet/progress.txt
NERVE_EMBEDDER_MODEL=$MP NERVE_DATA_DIR=/work/res/mpnet/data taskset -c 1 /work/main/.venv/bin/python -m app.cli prepare > /work/res/mpnet/prepare.log 2>&1
echo "$(date -u +%T) export end rc=$?" >> /work/res/mpnet/progress.txt
for D in "$@"; do
  for E in minilm mpnet; do
    if [ $E = mpnet ]; then export NERVE_EMBEDDER_MODEL=$MP; else unset NERVE_EMBEDDER_MODEL; fi
    uptime >> /work/res/mpnet/progress.txt
    taskset -c 1 /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $D --split test --method baner --json \
      --output /work/res/mpnet/baner-$D-$E.json --predictions /work/res/mpnet/baner-$D-$E.jsonl > /work/res/mpnet/baner-$D-$E.log 2>&1
    echo "$(date -u +%T) end $D $E rc=$?" >> /work/res/mpnet/progress.txt
  done
done

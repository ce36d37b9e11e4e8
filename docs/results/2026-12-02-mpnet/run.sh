#!/bin/bash
# One evaluation at a time, pinned to core 1, one thread; MiniLM then mpnet per domain.
cd /work/wt/mpnet
MP=/work/scratch-mpnet/models/all-mpnet-base-v2
for D in "$@"; do
  for E in minilm mpnet; do
    uptime > runs/mpnet/uptime-$D-$E-before.txt
    if [ $E = mpnet ]; then export NERVE_EMBEDDER_MODEL=$MP; else unset NERVE_EMBEDDER_MODEL; fi
    echo "$(date -u +%T) start $D $E"
    PYTHONPATH=$PWD OMP_NUM_THREADS=1 NERVE_ONNX_THREADS=1 taskset -c 1 nice -n 5 \
      /work/main/.venv/bin/python -m app.cli eval --domain $D --split test --method baner --json \
      --output runs/mpnet/baner-$D-$E.json --predictions runs/mpnet/baner-$D-$E.jsonl \
      > runs/mpnet/baner-$D-$E.stdout 2> runs/mpnet/baner-$D-$E.log
    echo "$(date -u +%T) end $D $E rc=$?"
    uptime > runs/mpnet/uptime-$D-$E-after.txt
  done
done

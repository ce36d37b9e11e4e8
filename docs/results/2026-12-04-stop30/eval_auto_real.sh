#!/bin/bash
# method=auto through the gateway's own pipeline with today's defaults (mpnet BANER, rule best, the
# shipped calibration and router, gazetteer and boundaries on): the first 150 music test sentences.
# usage: eval_auto_real.sh CORE TREE OUT [WAIT_FOR_FILE WAIT_FOR_TEXT]
core=$1; tree=$2; out=$3
if [ -n "$4" ]; then until grep -q "$5" "$4" 2>/dev/null; do sleep 20; done; fi
mkdir -p "$out"; cd "$tree"
PYTHONPATH=$tree OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
taskset -c "$core" /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain music \
  --split test --limit 150 --method auto --json --output "$out/auto-music.json" --predictions "$out/auto-music.jsonl" \
  > "$out/auto-music.log" 2>&1
echo "auto music exit $? $(date -u +%T)" >> "$out/progress.txt"

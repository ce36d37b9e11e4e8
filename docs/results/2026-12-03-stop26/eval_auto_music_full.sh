#!/bin/bash
# After the bare-type evals: a real `method=auto` run on the full music test set (465 sentences; fold-A adapter and
# calibration, the defaults), one core, frozen tree 09c3811, to check the offline cascade numbers of stop 25.
while [ "$(wc -l < /work/res/bare/progress.txt 2>/dev/null || echo 0)" -lt 10 ]; do sleep 60; done
O=/work/res/autofull
mkdir -p $O
cd /work/wt/cllmfs
PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
taskset -c 1 /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain music --split test \
  --method auto --adapter wraner --json --output $O/auto-music.json --predictions $O/auto-music.jsonl > $O/auto-music.log 2>&1
echo "auto music exit $? $(date +%T)" >> $O/progress.txt

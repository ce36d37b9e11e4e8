#!/bin/bash
# Bare type names beyond the first 100 test sentences, wraner, in 50-sentence chunks (a chunk's files survive a cut
# session), one core, frozen tree 09c3811, after WAIT_PID ends: eval_bare_rest.sh CORE WAIT_PID DOMAIN...
core=$1; wait_pid=$2; shift 2
while kill -0 $wait_pid 2>/dev/null; do sleep 20; done
A=/work/res/full/adapters; O=/work/res/bare-rest; mkdir -p $O
cd /work/wt/cllmfs
for d in "$@"; do
  case $d in politics|science) adapter=$A/wraner-fold-b.gguf;; *) adapter=wraner;; esac
  n=$(grep -c '^$' /work/shared/data/crossner/$d/test.txt)
  for ((off=100; off<n; off+=50)); do
    [ -s $O/wraner-$d-$off.jsonl ] && continue
    PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
    taskset -c $core /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $d --split test \
      --offset $off --limit 50 --bare-types --method wraner --adapter $adapter --json --output $O/wraner-$d-$off.json \
      --predictions $O/wraner-$d-$off.jsonl > $O/wraner-$d-$off.log 2>&1
    echo "wraner $d $off exit $? $(date +%T)" >> $O/progress.txt
  done
done

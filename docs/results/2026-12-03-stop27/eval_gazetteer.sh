#!/bin/bash
# The gazetteer through the gateway's own pipeline (`nerve eval`, NERVE_GAZETTEER on by default at 875f74d):
# BANER on the five full test sets, curated descriptions, one core, after WAIT_PID ends.
#   eval_gazetteer.sh CORE WAIT_PID
core=$1; wait_pid=$2
while kill -0 $wait_pid 2>/dev/null; do sleep 20; done
O=/work/res/gaz; mkdir -p $O
cd /work/wt/gaz
for d in music literature ai politics science; do
  [ -s $O/baner-$d.jsonl ] && continue
  PYTHONPATH=/work/wt/gaz OMP_NUM_THREADS=1 NERVE_ONNX_THREADS=1 HF_HUB_OFFLINE=1 taskset -c $core \
    /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $d --split test \
    --method baner --json --output $O/baner-$d.json --predictions $O/baner-$d.jsonl > $O/baner-$d.log 2>&1
  echo "baner $d exit $? $(date +%T)" >> $O/progress.txt
done

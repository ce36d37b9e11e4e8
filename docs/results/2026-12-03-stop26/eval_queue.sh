#!/bin/bash
# A queue of first-N `nerve eval` runs on one core after another job ends, frozen tree 09c3811:
#   eval_queue.sh CORE WAIT_PID "TAG|METHOD|ADAPTER|FLAGS|DOMAIN,DOMAIN" ...
core=$1; wait_pid=$2; shift 2
while kill -0 $wait_pid 2>/dev/null; do sleep 20; done
O=/work/res/lowereval
cd /work/wt/cllmfs
for spec in "$@"; do
  IFS='|' read -r tag method adapter flags domains <<< "$spec"
  for d in ${domains//,/ }; do
    PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
    taskset -c $core /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $d --split test \
      $flags --method $method --adapter $adapter --json --output $O/$tag-$d.json \
      --predictions $O/$tag-$d.jsonl > $O/$tag-$d.log 2>&1
    echo "$tag $d exit $? $(date +%T)" >> $O/progress.txt
  done
done

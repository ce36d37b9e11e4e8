#!/bin/bash
# eval_lowercase_adapter.sh split over both cores once the full auto run freed core 1:
#   eval_lowercase_adapter_2.sh CORE WAIT_PID SPEC...   (SPEC = "tag adapter [--lowercase]:domain,domain")
core=$1; wait_pid=$2; shift 2
while kill -0 $wait_pid 2>/dev/null; do sleep 20; done
O=/work/res/lowereval
cd /work/wt/cllmfs
for spec in "$@"; do
  run=${spec%%:*}; domains=${spec#*:}
  set -- $run; tag=$1; adapter=$2; flag=${3:-}
  for d in ${domains//,/ }; do
    PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
    taskset -c $core /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $d --split test \
      --limit 50 $flag --method wraner --adapter $adapter --json --output $O/$tag-$d.json \
      --predictions $O/$tag-$d.jsonl > $O/$tag-$d.log 2>&1
    echo "$tag $d exit $? $(date +%T)" >> $O/progress.txt
  done
done

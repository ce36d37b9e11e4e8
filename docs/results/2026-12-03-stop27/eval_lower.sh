#!/bin/bash
# Lowercased test sentences (same gold spans), full test sets, frozen tree 09c3811, one core per copy of this script:
# BANER whole domains, then IF-WRANER in 50-sentence chunks. Two copies share the queue: a chunk is claimed by mkdir,
# so each core takes the next unclaimed one, and a chunk's files survive a cut session (finished chunks are skipped).
#   eval_lower.sh CORE WAIT_PID
core=$1; wait_pid=$2
while kill -0 $wait_pid 2>/dev/null; do sleep 20; done
A=/work/res/full/adapters; O=/work/res/lower-full; mkdir -p $O/claims
cd /work/wt/cllmfs
run() {  # name, then nerve eval arguments
  local name=$1; shift
  [ -s $O/$name.jsonl ] && return
  mkdir $O/claims/$name 2>/dev/null || return
  PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_ONNX_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 \
  HF_HUB_OFFLINE=1 taskset -c $core /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner \
    --split test --lowercase --json --output $O/$name.json --predictions $O/$name.jsonl "$@" > $O/$name.log 2>&1
  echo "$name exit $? core $core $(date +%T)" >> $O/progress.txt
}
domains="music literature ai politics science"
for d in $domains; do run baner-$d --domain $d --method baner; done
for d in $domains; do
  case $d in politics|science) adapter=$A/wraner-fold-b.gguf;; *) adapter=wraner;; esac
  n=$(grep -c '^$' /work/shared/data/crossner/$d/test.txt)
  for ((off=0; off<n; off+=50)); do
    run wraner-$d-$off --domain $d --offset $off --limit 50 --method wraner --adapter $adapter
  done
done

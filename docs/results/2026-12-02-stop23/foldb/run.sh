#!/bin/bash
# Issue 14, fold B: calibration on fold-B held-out dev, then auto / wraner / baner on the first
# 50 test sentences of politics and science. One core (taskset -c 1), one thread.
set -x
T=/work/wt/foldb-cal/tree           # frozen worktree of main
R=/work/wt/foldb-cal/runs
H=/work/wt/foldb-cal/heldout
A=/work/main/model_repository/llm_cpu/1/adapters/fold-b/wraner-lora.gguf
export PYTHONPATH=$T OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 \
  NERVE_ONNX_DIR=/work/main/.cache/onnx HF_HUB_OFFLINE=1
PY="taskset -c 1 /work/main/.venv/bin/python -m app.cli"
cd $T
for spec in music:heldout:30 literature:heldout:50 conll2003:heldout:60 ai:trainpool:60; do
  IFS=: read d s n <<< "$spec"
  for m in baner wraner; do
    $PY eval --data $H --domain $d --split $s --pool-split train --limit $n --method $m \
      --adapter $A --json --output $R/cal-b-$m-$d.json --predictions $R/cal-b-$m-$d.jsonl
  done
done
$PY train cascade --fold b --data $H \
  --set music:heldout:$R/cal-b-baner-music.jsonl:$R/cal-b-wraner-music.jsonl \
  --set literature:heldout:$R/cal-b-baner-literature.jsonl:$R/cal-b-wraner-literature.jsonl \
  --set conll2003:heldout:$R/cal-b-baner-conll2003.jsonl:$R/cal-b-wraner-conll2003.jsonl \
  --set ai:trainpool:$R/cal-b-baner-ai.jsonl:$R/cal-b-wraner-ai.jsonl \
  --out $R/calibration-fold-b.json
export NERVE_CASCADE_CALIBRATION=$R/calibration-fold-b.json
for d in politics science; do
  for m in auto wraner baner; do
    $PY eval --data /work/shared/data/crossner --domain $d --split test --limit 50 --method $m \
      --adapter $A --json --output $R/test50-$m-$d.json --predictions $R/test50-$m-$d.jsonl
  done
done
echo DONE

#!/bin/bash
# BANER (MiniLM-L6 shipped, and the mpnet backbone) on the cascade calibration's held-out sets, the
# sentences the committed wraner calibration runs answered (docs/results/2026-12-02-cascade/runs,
# docs/results/2026-12-02-stop23/foldb), gazetteer off as they were: refits auto's calibration
# for an mpnet encoder without touching a test split.
# usage: eval_baner_heldout.sh CORE TREE MPNET_ARTEFACT HELDOUT_A HELDOUT_B OUT
core=$1; tree=$2; mpnet=$3; heldout_a=$4; heldout_b=$5; out=$6
cd "$tree"
export PYTHONPATH=$tree OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 NERVE_GAZETTEER=false
# fold:domain:split:limit, as the committed runs
for set in a:politics:heldout:60 a:science:heldout:60 a:conll2003:heldout:60 \
           b:music:heldout:30 b:literature:heldout:50 b:conll2003:heldout:60 b:ai:trainpool:60; do
  IFS=: read -r fold domain split limit <<< "$set"
  data=$heldout_a; [ "$fold" = b ] && data=$heldout_b
  for backbone in minilm mpnet; do
    if [ $backbone = mpnet ]; then export NERVE_BANER_ARTEFACT_DIR=$mpnet; else unset NERVE_BANER_ARTEFACT_DIR; fi
    name=$out/$backbone/cal-$fold-baner-$domain; mkdir -p "$out/$backbone"
    [ -f "$name.json" ] && continue
    taskset -c "$core" /work/main/.venv/bin/python -m app.cli eval --data "$data" --domain $domain --split $split \
      --pool-split train --limit $limit --method baner --json --output "$name.json" --predictions "$name.jsonl" > "$name.log" 2>&1
    echo "$fold $domain $backbone exit $? $(date -u +%T)" >> "$out/progress.txt"
  done
done
touch "$out/done"

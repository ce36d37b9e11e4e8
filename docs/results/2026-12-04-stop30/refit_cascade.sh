#!/bin/bash
# auto's calibration and router refitted for a BANER backbone (issue 14), on the calibration's own
# held-out sets: BANER runs of eval_baner_heldout.sh + the committed wraner calibration runs.
# usage: refit_cascade.sh BACKBONE RUNS HELDOUT_A HELDOUT_B OUT ROUTED_SHARE
b=$1; runs=$2/$b; ha=$3; hb=$4; out=$5; share=$6
wa=docs/results/2026-12-02-cascade/runs; wb=docs/results/2026-12-02-stop23/foldb
mkdir -p "$out"
nerve() { /work/main/.venv/bin/python -m app.cli "$@"; }
seta=(--set politics:heldout:$runs/cal-a-baner-politics.jsonl:$wa/cal-a-wraner-politics.jsonl
      --set science:heldout:$runs/cal-a-baner-science.jsonl:$wa/cal-a-wraner-science.jsonl
      --set conll2003:heldout:$runs/cal-a-baner-conll2003.jsonl:$wa/cal-a-wraner-conll2003.jsonl)
setb=(--set music:heldout:$runs/cal-b-baner-music.jsonl:$wb/cal-b-wraner-music.jsonl
      --set literature:heldout:$runs/cal-b-baner-literature.jsonl:$wb/cal-b-wraner-literature.jsonl
      --set conll2003:heldout:$runs/cal-b-baner-conll2003.jsonl:$wb/cal-b-wraner-conll2003.jsonl
      --set ai:trainpool:$runs/cal-b-baner-ai.jsonl:$wb/cal-b-wraner-ai.jsonl)
nerve train cascade --fold a --data "$ha" "${seta[@]}" --out "$out/calibration-fold-a.json" || exit 1
nerve train cascade --fold b --data "$hb" "${setb[@]}" --out "$out/calibration-fold-b.json" || exit 1
nerve train cascade-router --fold a --data "$ha" --calibration "$out/calibration-fold-a.json" "${seta[@]}" \
  --routed-share "$share" --out "$out/calibration-fold-a.json" || exit 1
nerve train cascade-router --fold b --data "$hb" --calibration "$out/calibration-fold-b.json" "${setb[@]}" \
  --routed-share "$share" --out "$out/calibration-fold-b.json" || exit 1

#!/bin/bash
# After the lowercase-share training (train_lowercase.sh) exports: first 50 test sentences of the fold-A domains,
# lowercased and cased, new adapter vs the shipped one (fold A), one core, frozen tree 09c3811 (the full runs' tree).
while ! grep -q "^EXIT" /work/res/lower/train.log; do sleep 60; done
NEW=/work/wt/lower/runs/wraner-fold-a-lowercase/export/wraner-lora.gguf
O=/work/res/lowereval
cd /work/wt/cllmfs
for spec in "lowshare-lower $NEW --lowercase" "shipped-lower wraner --lowercase" "lowshare-cased $NEW"; do
  set -- $spec; tag=$1; adapter=$2; flag=${3:-}
  for d in music literature ai; do
    PYTHONPATH=/work/wt/cllmfs OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
    taskset -c 0 /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner --domain $d --split test \
      --limit 50 $flag --method wraner --adapter $adapter --json --output $O/$tag-$d.json \
      --predictions $O/$tag-$d.jsonl > $O/$tag-$d.log 2>&1
    echo "$tag $d exit $? $(date +%T)" >> $O/progress.txt
  done
done

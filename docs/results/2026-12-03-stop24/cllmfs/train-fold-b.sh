#!/bin/bash
# CLLMFS fold B, 1,000 steps, contrastive view rmsnorm. Resumes from checkpoints (rerun this script).
cd /work/wt/cllmfs-b
OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 taskset -c 1 /work/main/.venv/bin/python -m trainers.cllmfs \
  --config trainers/configs/gemma3-270m-cpu-cllmfs-fold-b.yaml --data-dir /work/shared/data/crossner \
  --run-dir runs/cllmfs-rmsnorm-fold-b --steps 1000 --no-progress >> /work/wt/cllmfs-b/train.log 2>&1
echo EXIT $? >> /work/wt/cllmfs-b/train.log

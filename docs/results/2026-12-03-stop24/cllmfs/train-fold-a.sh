#!/bin/bash
# CLLMFS fold A, 1,000 steps, contrastive view rmsnorm (the config's default). Resumes from checkpoints.
cd /work/wt/cllmfs
OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 taskset -c 0 /work/main/.venv/bin/python -m trainers.cllmfs \
  --config trainers/configs/gemma3-270m-cpu-cllmfs-fold-a.yaml --data-dir /work/shared/data/crossner \
  --run-dir runs/cllmfs-rmsnorm-1000 --steps 1000 --no-progress >> /work/wt/cllmfs/train.log 2>&1
echo EXIT $? >> /work/wt/cllmfs/train.log

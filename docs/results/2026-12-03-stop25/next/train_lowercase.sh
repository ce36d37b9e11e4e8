#!/bin/bash
# Fold-A IF-WRANER with 25% lowercased training sentences, one core; resumes from its checkpoints.
cd /work/wt/lower
PYTHONPATH=/work/wt/lower OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 taskset -c 0 /work/main/.venv/bin/python -m trainers.wraner \
  --config trainers/configs/gemma3-270m-cpu-fold-a-lowercase.yaml --data-dir /work/shared/data/crossner \
  --run-dir /work/wt/lower/runs/wraner-fold-a-lowercase --no-progress > /work/res/lower/train.log 2>&1
echo "EXIT $?" >> /work/res/lower/train.log

#!/bin/bash
# BANER on the all-mpnet-base-v2 backbone, the shipped recipe (issue 14 item 4).
set -x
cd /work/wt/s30
export HF_HUB_OFFLINE=1 PYTHONPATH=/work/wt/s30
MPNET=$(/work/main/.venv/bin/python -m tools.assemble_mpnet)
echo "mpnet at $MPNET"
date -u
OMP_NUM_THREADS=${THREADS:-2} taskset -c ${CORES:-0,1} /work/main/.venv/bin/python -m trainers.baner \
  --data-dir /work/shared/data/crossner --out /work/res/s30/baner-mpnet --encoder "$MPNET" \
  --domain conll2003 --steps 400 --batch-size 32 --lr 0.001 --lora-rank 16 \
  --contrastive-weight 0.5 --seed 13 --threads ${THREADS:-2}
echo "exit $?"
date -u
cp /work/main/model_repository/baner/1/model.py /work/res/s30/baner-mpnet/ 2>/dev/null
touch /work/res/s30/train_baner_mpnet.done

#!/bin/bash
# BANER behind the real tritonserver (dynamic batcher), through the HTTP API. Training paused during the load.
cd /work/main
export HF_HUB_OFFLINE=1 NERVE_DATA_DIR=/work/res/triton-data
mkdir -p $NERVE_DATA_DIR
setsid .venv/bin/nerve triton --http-port 18000 --grpc-port 18001 --metrics-port 18002 > /work/res/triton.log 2>&1 < /dev/null &
for i in $(seq 1 120); do
  curl -sf localhost:18000/v2/models/baner/ready > /dev/null && break; sleep 5
done
echo "triton ready after ~$((i*5)) s $(date +%T)" >> /work/res/triton-progress.txt
TPG=$(pgrep -f 'tritonserver' | head -1); TPG=$(ps -o pgid= -p $TPG | tr -d ' ')
echo "triton pgid $TPG" >> /work/res/triton-progress.txt
kill -STOP -$(cat /work/res/train.pgid); sleep 2
before=$(.venv/bin/python -c "from tools.bench_serve import group_cpu_seconds; print(group_cpu_seconds($TPG))")
.venv/bin/nerve bench serve --data /work/shared/data/crossner --domain music --method baner \
  --concurrency 1,4,8,16 --requests 100 --seconds 20 \
  --server-env NERVE_ENCODER_BACKEND=triton --server-env NERVE_TRITON_URL=127.0.0.1:18001 \
  --triton-stats http://127.0.0.1:18000 --output /work/res/triton-baner.json > /work/res/triton-bench.log 2>&1
after=$(.venv/bin/python -c "from tools.bench_serve import group_cpu_seconds; print(group_cpu_seconds($TPG))")
kill -CONT -$(cat /work/res/train.pgid)
echo "triton cpu s over the bench: $before -> $after $(date +%T)" >> /work/res/triton-progress.txt
kill -TERM -$TPG

#!/bin/bash
# The LLM (fold A adapter, gazetteer off) with MiniLM-L6 vs mpnet retrieval, first 100 of each fold-A
# test domain, one core, one thread, frozen tree (issue 14 item 4: mpnet as the retrieval embedder).
core=${1:-0}
cd /work/wt/s30b
out=/work/res/s30/wraner-embedder; mkdir -p $out
MPNET=/root/.cache/nerve/models/all-mpnet-base-v2
# The base GGUF and both embedders' ONNX exports, once, before any timed run.
echo "prepared $(date -u +%T)" >> $out/progress.txt
for d in music literature ai; do
  for e in minilm mpnet; do
    [ -f $out/wraner-$d-$e.json ] && continue
    if [ $e = mpnet ]; then export NERVE_EMBEDDER_MODEL=$MPNET; else unset NERVE_EMBEDDER_MODEL; fi
    PYTHONPATH=/work/wt/s30b OMP_NUM_THREADS=1 NERVE_LLM_THREADS=1 NERVE_GENERATION_TIMEOUT_S=900 HF_HUB_OFFLINE=1 \
    NERVE_GAZETTEER=false taskset -c $core /work/main/.venv/bin/python -m app.cli eval --data /work/shared/data/crossner \
      --domain $d --split test --limit 100 --method wraner \
      --adapter /work/wt/s30b/model_repository/llm_cpu/1/adapters/wraner-lora.gguf \
      --json --output $out/wraner-$d-$e.json --predictions $out/wraner-$d-$e.jsonl > $out/wraner-$d-$e.log 2>&1
    echo "$d $e exit $? $(date -u +%T)" >> $out/progress.txt
  done
done
touch $out/done

#!/bin/bash
# BANER with its shipped MiniLM-L6 backbone vs the all-mpnet-base-v2 backbone trained by
# train_baner_mpnet.sh (issue 14, item 4): the five full test sets, the retrieval embedder
# MiniLM-L6 for both, one core, one thread, a frozen worktree. Variants: curated descriptions
# with the gazetteer off (raw) and on (the gateway's default), bare type names, lowercased text
# (bare-raw, lower-raw: gazetteer off, for the offline auto of variant_table.py).
# usage: eval_baner_backbones.sh CORE TREE MPNET_ARTEFACT OUT [VARIANT...]  (default: all four;
# two copies on two cores take disjoint variants)
core=$1; tree=$2; mpnet=$3; out=$4; shift 4
variants=("$@"); [ ${#variants[@]} -eq 0 ] && variants=(curated-raw curated bare lower)
cd "$tree"
export PYTHONPATH=$tree OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
for variant in "${variants[@]}"; do
  case $variant in
    curated-raw) flags=(); gazetteer=false;;
    curated) flags=(); gazetteer=true;;
    bare) flags=(--bare-types); gazetteer=true;;
    lower) flags=(--lowercase); gazetteer=true;;
    bare-raw) flags=(--bare-types); gazetteer=false;;
    lower-raw) flags=(--lowercase); gazetteer=false;;
  esac
  for backbone in minilm mpnet; do
    if [ $backbone = mpnet ]; then export NERVE_BANER_ARTEFACT_DIR=$mpnet; else unset NERVE_BANER_ARTEFACT_DIR; fi
    dir=$out/$variant/$backbone; mkdir -p "$dir"
    for domain in music literature ai politics science; do
      [ -f "$dir/baner-$domain.json" ] && continue   # a cut run resumes
      NERVE_GAZETTEER=$gazetteer taskset -c "$core" /work/main/.venv/bin/python -m app.cli eval \
        --data /work/shared/data/crossner --domain $domain --split test --method baner "${flags[@]}" \
        --json --output "$dir/baner-$domain.json" --predictions "$dir/baner-$domain.jsonl" > "$dir/baner-$domain.log" 2>&1
      echo "$variant $backbone $domain exit $? $(date -u +%T)" >> "$out/progress.txt"
    done
  done
done
touch "$out/done-${variants[*]// /-}"

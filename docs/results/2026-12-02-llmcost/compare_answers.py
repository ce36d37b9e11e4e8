# usage: exp4.py TREE MODE(out json) [adapter] ; MODE: whole|split
import sys, time, random, json
from pathlib import Path
tree = sys.argv[1]; mode = sys.argv[2]; lora = sys.argv[3] if len(sys.argv) > 3 else "none"
sys.path.insert(0, tree)
from app.core.readers import read_split, entity_types_of
from app.core.crossner_types import entity_types_for
from app.core.prompt import fit_prompt, STOP_SEQUENCES
from app.core.answer_grammar import answer_grammar
from app.generation.llama_cpp import LlamaCppEngine
data = Path("/work/shared/data/crossner")
n = int(sys.argv[4]) if len(sys.argv) > 4 else 4
pool = read_split(data, "music", "train"); test = read_split(data, "music", "test")[:n]
types = entity_types_for(entity_types_of([*pool, *test]))
rnd = random.Random(0)
import os
eng = LlamaCppEngine(Path(os.environ.get("MODEL", "/work/wt/llmcost/.cache/models/gemma-3-270m-q4_k_m.gguf")), lora_path=None if lora == "none" else Path(lora), n_threads=1)
out = []
for ex in test:
    p, _ = fit_prompt(types, rnd.sample(pool, 5), ex.text, lambda t: len(t) <= 5000)
    g = answer_grammar([t.name for t in types], ex.text)
    kw = {} if "llmcost" not in tree else {"prefix": "" if mode == "whole" else None}
    t = time.perf_counter()
    gen = eng.complete(p.text, max_tokens=64, stop=STOP_SEQUENCES, grammar=g, **kw)
    dt = time.perf_counter() - t
    out.append({"text": gen.text, "s": round(dt, 3), "cached": getattr(gen, "cached_tokens", None), "lp": [round(x.logprob, 4) for x in gen.tokens][:5]})
    print(json.dumps(out[-1]), flush=True)

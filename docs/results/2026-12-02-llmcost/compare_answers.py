"""Session script (issue 16 item 6): greedy grammar answers of the first N music test sentences.

usage: MODEL=<gguf> python compare_answers.py TREE whole|split [ADAPTER|none] [N]
"""

import json
import os
import random
import sys
import time
from pathlib import Path

tree, mode = sys.argv[1], sys.argv[2]
lora = sys.argv[3] if len(sys.argv) > 3 else "none"
n = int(sys.argv[4]) if len(sys.argv) > 4 else 4
sys.path.insert(0, tree)

from app.core.answer_grammar import answer_grammar  # noqa: E402
from app.core.crossner_types import entity_types_for  # noqa: E402
from app.core.prompt import STOP_SEQUENCES, fit_prompt  # noqa: E402
from app.core.readers import entity_types_of, read_split  # noqa: E402
from app.generation.llama_cpp import LlamaCppEngine  # noqa: E402

data = Path("/work/shared/data/crossner")
pool = read_split(data, "music", "train")
test = read_split(data, "music", "test")[:n]
types = entity_types_for(entity_types_of([*pool, *test]))
rnd = random.Random(0)
model = Path(os.environ.get("MODEL", "/work/wt/llmcost/.cache/models/gemma-3-270m-q4_k_m.gguf"))
eng = LlamaCppEngine(model, lora_path=None if lora == "none" else Path(lora), n_threads=1)
for ex in test:
    p, _ = fit_prompt(types, rnd.sample(pool, 5), ex.text, lambda t: len(t) <= 5000)
    g = answer_grammar([t.name for t in types], ex.text)
    kw = {} if "llmcost" not in tree else {"prefix": "" if mode == "whole" else None}
    t = time.perf_counter()
    gen = eng.complete(p.text, max_tokens=64, stop=STOP_SEQUENCES, grammar=g, **kw)
    row = {
        "text": gen.text,
        "s": round(time.perf_counter() - t, 3),
        "cached": getattr(gen, "cached_tokens", None),
        "lp": [round(x.logprob, 4) for x in gen.tokens][:5],
    }
    print(json.dumps(row), flush=True)

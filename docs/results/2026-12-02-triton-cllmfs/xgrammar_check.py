"""Run by hand (xgrammar is not a project dependency):
pip install --no-deps --target /tmp/xg xgrammar==0.2.8 apache-tvm-ffi
PYTHONPATH=$PWD:/tmp/xg python docs/results/2026-12-02-triton-cllmfs/xgrammar_check.py

Does XGrammar (TensorRT-LLM's guided-decoding backend) read nerve's answer grammar, and does
it accept exactly what llama.cpp's GBNF accepts on a few strings?"""

import xgrammar as xgr

from app.core.answer_grammar import answer_grammar

cases = [
    (["person", "location"], 'Anna  Meyer, "Oslo".'),
    (["person", 'odd "type"'], "Microsoft hired Satya Nadella in Seattle ."),
    (["location"], None),
    (["person", "location"], "| | | none none ### Entities ### ```json [ Oslo"),
]
for types, text in cases:
    g = xgr.Grammar.from_ebnf(answer_grammar(types, text))
    print("parsed:", types, repr(text)[:40], "rules ok")
# Acceptance on strings, through a byte-level matcher with a tiny vocabulary of single bytes.
vocab = [chr(i) for i in range(32, 127)] + ["\n"]
info = xgr.TokenizerInfo(vocab)
compiler = xgr.GrammarCompiler(info)
gbnf = answer_grammar(["person", "location"], "Anna Meyer lives in Oslo .")
compiled = compiler.compile_grammar(gbnf)

for s, want in [
    ("Anna Meyer | person\nOslo | location\n\n", True),
    ("none\n\n", True),
    ("Anna Meyer | organisation\n\n", False),
    ("Berlin | location\n\n", False),
    ("Anna | person\n", None),
]:
    m = xgr.GrammarMatcher(compiled)
    ok = all(m.accept_token(vocab.index(ch)) for ch in s)
    more = ok and m.accept_token(vocab.index("x"))  # anything after the blank line?
    print(repr(s), "accepted:", ok, "more accepted after it:", more, "expected:", want)

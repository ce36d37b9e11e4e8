"""Rules a domain's pool teaches, applied to every answer in that domain (pure functions of the
stored examples; the gateway applies them as one pipeline step, :mod:`app.ner.pool_step`).

- :mod:`.gazetteer`: the names the pool labelled, retyped and added where a method missed them;
- :mod:`.boundaries`: where the pool's names of each type begin and end;
- :mod:`.truecase`: the pool's casing, given back to a query typed in lowercase.

A new pool-based rule is a module here, built in :class:`.gazetteer.Gazetteer.from_examples`
(or beside it) and applied by the step.
"""

"""The methods of /v1/ner, one package each (``nerve/methods/<name>/``): its handler (the
:class:`nerve.methods.handler.MethodHandler` protocol), its ``builder.build(deps)`` and, where it
has settings, its settings group (``settings.py``), all listed in :mod:`nerve.methods.registry`.

``wraner`` prompts the LLM (:mod:`nerve.methods.wraner.handler`) and ``cllmfs`` does the same over
its own LoRA; ``baner`` and ``lar`` are :class:`nerve.methods.encoders.handler.EncoderHandler`
over an encoder backend (:class:`nerve.methods.encoders.backend.EncoderBackend`: in process or on
Triton, built by :func:`nerve.methods.encoders.factory.build_encoder_backends`); ``auto`` is the
cascade of baner and wraner.
"""

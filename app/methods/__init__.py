"""The methods of /v1/ner: one handler each (:mod:`app.methods.handler`), registered in
:mod:`app.methods.registry`. ``wraner`` prompts the LLM (:mod:`app.methods.wraner`); ``baner``
and ``lar`` (:mod:`app.methods.encoder`) are encoder methods served in process or by Triton,
built by :func:`app.methods.factory.build_encoder_methods`.
"""

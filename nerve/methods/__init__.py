"""The methods of /v1/ner: one handler each (:mod:`nerve.methods.handler`), registered in
:mod:`nerve.methods.registry`. ``wraner`` prompts the LLM (:mod:`nerve.methods.wraner.handler`); ``baner``
and ``lar`` (:mod:`nerve.methods.encoders.handler`) are encoder methods served in process or by Triton,
built by :func:`nerve.methods.encoders.factory.build_encoder_backends`.
"""

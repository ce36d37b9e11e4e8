"""The encoder methods: BANER (``baner/``) and LAR (``lar/``), served in process or by Triton.

The NER service dispatches ``method=baner|lar`` to an :class:`app.methods.base.EncoderMethod`
built by :func:`app.methods.factory.build_encoder_methods`.
"""

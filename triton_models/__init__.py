"""Code that runs only inside tritonserver's Python backend, beside ``model_repository/``.

Every ``model_repository/*/1/model.py`` (and the GPU templates' pre/postprocessing) is a few
lines over :mod:`triton_models.adapter`, which moves tensors and maps errors the same way for
every model; the handlers here hold the logic and are tested without Triton. The contracts
shared with the gateway (:mod:`nerve.wire.llm`, :mod:`nerve.wire.encoder`) stay in
``app``: both ends import them.
"""

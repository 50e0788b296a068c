# reco-engine — `make help` lists the targets.
SHELL := bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= .reco-data
PORT ?= 8080

.PHONY: help venv run run-stack test test-unit test-repeat test-deps bench lint fmt crd clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "reco-engine needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP) ## Create .venv with the engine and its dev tools

run: $(STAMP) ## Run the embedded engine with demo data on http://127.0.0.1:$(PORT)
	$(BIN)/reco dev --demo --data-dir $(DATA_DIR) --port $(PORT)

run-stack: $(STAMP) test-deps ## The production shape locally: Kafka, Redis, PostgreSQL and the four services
	$(BIN)/python tools/run-stack.py

test: lint test-deps ## Lint, type-check, check the import contracts, run every test tier
	$(BIN)/python -m pytest

N ?= 5
LOAD ?= 2
REPEAT ?= -m integration
test-repeat: $(STAMP) test-deps ## Run the integration tier N times (N=5) under LOAD busy processes (REPEAT= other tests)
	$(BIN)/python tools/repeat.py --runs $(N) --load $(LOAD) -- $(REPEAT)

test-deps: ## Fetch or build every server the tests start: Kafka jars, Redis, PostgreSQL, podman, the Kubernetes binaries, KEDA (its CRDs, operator and metrics apiserver) (cached, idempotent)
	bash tools/install-kafka.sh
	bash tools/install-services.sh redis postgres
	bash tools/install-podman.sh
	bash tools/install-k8s.sh >/dev/null
	bash tools/install-keda-crds.sh >/dev/null
	bash tools/install-keda.sh >/dev/null

bench: $(STAMP) ## Benchmarks: throughput, latency, freshness as JSON in benchmarks/results/
	bash tools/install-bench.sh
	$(BIN)/python -m benchmarks.bench

test-unit: $(STAMP) ## Only the tests that start no server
	$(BIN)/python -m pytest -m "not integration and not embedded and not operator and not chart and not images and not e2e"

lint: $(STAMP) ## ruff, mypy (strict) and the import-linter contracts
	$(BIN)/ruff check services operator tests benchmarks tools images
	$(BIN)/ruff format --check services operator tests benchmarks tools images
	$(BIN)/mypy
	$(BIN)/mypy --strict --explicit-package-bases tools/*.py
	$(BIN)/lint-imports
	$(BIN)/hadolint images/engine/Dockerfile images/operator/Dockerfile

crd: $(STAMP) ## Regenerate the RecoEngine CRD from the operator's spec model and the engine's settings
	$(BIN)/python -m reco_operator.crd --write manifests/crd/recoengines.recoengine.io.yaml

fmt: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format services operator tests benchmarks tools images
	$(BIN)/ruff check --fix services operator tests benchmarks tools images

clean: ## Remove the virtualenv, caches and the demo data directory
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache

.PHONY: manifests e2e-kind

manifests: $(STAMP) ## Regenerate manifests/operator/ from the Helm chart (helm template, default values)
	$(BIN)/python tools/render_manifests.py --write

e2e-kind: ## kind cluster, both images, helm install, a RecoEngine, events in, recommendations out (needs Docker and kind; KEEP=1 keeps the cluster)
	bash tools/e2e-kind.sh

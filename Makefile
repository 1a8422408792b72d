# vllm-deploy: every target delegates to one command. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PROFILE ?= tiny-cpu
PYTHON ?= python3
VENV := .venv
ENGINE_VENV := .venv-engine
PY := $(VENV)/bin/python
TEST_ARGS ?=

# Python writes its bytecode caches in every venv here (some environments, CI's among them, set
# PYTHONDONTWRITEBYTECODE=1: then every vllm-deploy process and every host vLLM process compiled its imports anew,
# ~0.8 s per CLI call, tens of seconds per engine start).
unexport PYTHONDONTWRITEBYTECODE

COMPOSE_BINARY = $(shell $(PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')

.PHONY: help venv test-venv engine docker podman registry prometheus status up down rollout push logs smoke bench load render golden validate-rendered ruff format-check mypy check test test-times test-fast vllm-options vllm-envs vllm-architectures vllm-router-routes vllm-official-image

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-19s %s\n", $$1, $$2}'

# uv (PyPI, pinned) installs into the venvs: the tool venv in ~10 s where pip took ~90 s (BENCHMARKS.md).
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv

$(UV):
	$(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install -q 'uv==$(UV_VERSION)'

$(VENV)/.installed: pyproject.toml | $(UV)
	$(UV) pip install -q --python $(PY) -e '.[smoke,compose]' && touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(UV) pip install -q --python $(PY) -e '.[test,bench]' && touch $@

venv: $(VENV)/.installed ## the tool's venv (.venv): vllm-deploy, the smoke suite and Compose v2; no torch

test-venv: $(VENV)/.test-installed ## the tool's venv plus the test tools and validators

$(ENGINE_VENV)/.installed: deploy/assets/engine-venv.sh
	UV_VERSION=$(UV_VERSION) deploy/assets/engine-venv.sh $(ENGINE_VENV) && touch $@

engine: $(ENGINE_VENV)/.installed ## the vLLM CPU engine venv (.venv-engine) for host-process tests

docker: venv ## install Docker and Compose v2 if missing; start dockerd if no daemon answers
	scripts/docker-up.sh $(COMPOSE_BINARY)

registry: ## unpack Debian's docker-registry into .work/ (the push test runs it on loopback)
	scripts/deb-unpack.sh docker-registry docker-registry .work/registry

prometheus: ## unpack Debian's prometheus (promtool) into .work/ for the rules and config checks
	scripts/deb-unpack.sh prometheus promtool .work/prometheus

podman: ## install podman for `podman kube play` tests and write its configuration
	scripts/podman-up.sh .work/containers.conf

up: venv docker ## bring PROFILE (default tiny-cpu) up with Docker Compose and wait until healthy
	$(PY) -m deploy up $(PROFILE)

status: venv ## one screen from PROFILE's live metrics (its Prometheus); WATCH=1 refreshes
	$(PY) -m deploy status $(PROFILE) $(if $(WATCH),--watch)

rollout: venv docker ## replace PROFILE's running replicas one at a time (new image or settings), no request lost
	$(PY) -m deploy rollout $(PROFILE)

push: venv docker ## build PROFILE's image and push it to the profile's image.registry (docker login first)
	$(PY) -m deploy push $(PROFILE)

down: venv ## stop PROFILE's containers; model and cache volumes are kept
	$(PY) -m deploy down $(PROFILE)

logs: venv ## follow PROFILE's vLLM logs
	$(PY) -m deploy logs --follow $(PROFILE)

smoke: venv ## run the smoke suite against PROFILE's running stack
	$(PY) -m deploy smoke $(PROFILE)

bench: test-venv engine docker ## measure start time, rebuilds, latency, throughput; writes BENCHMARKS.md
	$(PY) -m deploy bench --engine-python $(ENGINE_VENV)/bin/python

render: venv ## render compose/ and k8s/ for every built-in profile
	$(PY) -m deploy render --all

golden: test-venv ## regenerate every golden file: compose/, k8s/, tests/golden/ and schema/
	scripts/golden.sh $(PY)

validate-rendered: test-venv prometheus ## the real validators over every rendered file (hadolint, kubernetes-validate, compose v2, kustomize, checkov, promtool)
	$(PY) -m pytest -m static -q

ruff: test-venv ## ruff check: the lint rules of pyproject.toml over deploy/, tests/, smoke_tests/, scripts/
	$(VENV)/bin/ruff check .

format-check: test-venv ## ruff format --check: the files the formatter would change (changes nothing)
	$(VENV)/bin/ruff format --check --output-format concise .

mypy: test-venv ## mypy with the pydantic plugin over deploy/, tests/, smoke_tests/, scripts/ (pyproject.toml)
	$(VENV)/bin/mypy

check: ruff format-check mypy test-fast ## before a commit: ruff, the format check, mypy, then the fast suite

# NB: scripts/make-test.sh orders and overlaps the setup and the two halves of the suite (see its header).
test: ## set up and run every test, slow ones included (what CI runs); prints where the time went
	MAKE="$(MAKE)" PYTHON="$(PYTHON)" scripts/make-test.sh $(TEST_ARGS)

test-times: ## where the last `make test`'s time went: each stage and the slowest test modules
	@$(PY) scripts/test_times.py .work/test-times

test-fast: test-venv prometheus ## unit tests and the quick validators: no Docker, no vLLM engine
	$(PY) -m pytest -m "not engine and not docker and not podman and not slow" -q -n auto

vllm-options: engine ## regenerate vLLM's option table (deploy/data/vllm-serve-options.json) from the engine venv
	$(ENGINE_VENV)/bin/python scripts/vllm_serve_options.py > deploy/data/vllm-serve-options.json.tmp && mv deploy/data/vllm-serve-options.json.tmp deploy/data/vllm-serve-options.json

vllm-envs: engine ## regenerate the variables vLLM reads (deploy/data/vllm-envs.json) from the engine venv
	$(ENGINE_VENV)/bin/python scripts/vllm_envs.py > deploy/data/vllm-envs.json.tmp && mv deploy/data/vllm-envs.json.tmp deploy/data/vllm-envs.json

vllm-architectures: engine ## regenerate vLLM's architecture table (deploy/data/vllm-architectures.json) from the engine venv
	$(ENGINE_VENV)/bin/python scripts/vllm_architectures.py > deploy/data/vllm-architectures.json.tmp && mv deploy/data/vllm-architectures.json.tmp deploy/data/vllm-architectures.json

vllm-router-routes: venv ## regenerate vLLM's router's route table (deploy/data/vllm-router-routes.json) from its pinned sdist
	$(PY) scripts/vllm_router_routes.py > deploy/data/vllm-router-routes.json.tmp && mv deploy/data/vllm-router-routes.json.tmp deploy/data/vllm-router-routes.json

vllm-official-image: venv ## regenerate what vLLM's official image is (deploy/data/vllm-official-image.json) from the pinned sdist's Dockerfile
	$(PY) scripts/vllm_official_image.py > deploy/data/vllm-official-image.json.tmp && mv deploy/data/vllm-official-image.json.tmp deploy/data/vllm-official-image.json

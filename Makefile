# image-clone: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: help bootstrap binaries test-binaries lab-up lab-down lab-status demo lint test test-unit test-integration bench

help:
	@echo "make demo        bring the local lab up and run image-clone's main job on it"
	@echo "make test        install everything, then run the linters and every test suite"
	@echo "make bench       benchmarks against skopeo sync and a naive loop (docs/benchmarks.md)"
	@echo "make lab-up | lab-down | lab-status"

bootstrap:
	@hack/bootstrap.sh

binaries: bootstrap
	@$(PYTHON) -c 'from lab.binaries import ensure_binaries; print("lab binaries:", ensure_binaries())'

# cosign and the distribution v3 registry, for the signature tests (first time: 30 and 9 minutes measured on a busy 2-core machine).
test-binaries: bootstrap
	@$(PYTHON) -c 'from lab.binaries import ensure_cosign as c, ensure_distribution_registry as d; print(c(), d())'

lab-up: binaries
	@$(PYTHON) -m lab up

lab-down:
	@$(PYTHON) -m lab down

lab-status:
	@$(PYTHON) -m lab status

demo: lab-up
	@$(PYTHON) hack/demo.py

# ruff (ruff.toml) over the tree, mypy (mypy.ini) over the engine and the controller.
lint: bootstrap
	@$(PYTHON) -c 'from lab.collection import collections_root; collections_root()'
	@.venv/bin/ruff check
	@.venv/bin/mypy -p ansible_collections.imageclone.backup.plugins.module_utils -p imageclone_controller

# pytest-ansible links the collection under collections/ once; refresh it so new
# top-level folders are visible to the tests.
test: binaries test-binaries lint
	@rm -rf collections
	@$(PYTHON) -m pytest

test-unit: bootstrap
	@rm -rf collections
	@$(PYTHON) -m pytest tests/unit

test-integration: binaries test-binaries
	@rm -rf collections
	@$(PYTHON) -m pytest tests/integration

bench: binaries
	@$(PYTHON) -m bench

# image-clone: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: help bootstrap binaries test-binaries helm image image-build deploy lab-up lab-down lab-status demo lint test test-unit test-integration bench

help:
	@echo "make demo        bring the local lab up and run image-clone's main job on it"
	@echo "make test        install everything, then run the linters and every test suite"
	@echo "make bench       benchmarks against skopeo sync and a naive loop, on loopback and over a WAN (docs/benchmarks.md)"
	@echo "make image       build the controller's image offline (buildah, mmdebstrap) and push it to the lab"
	@echo "make deploy      render deploy/ from the Helm chart (charts/image-clone)"
	@echo "make lab-up | lab-down | lab-status"

bootstrap:
	@hack/bootstrap.sh

binaries: bootstrap
	@$(PYTHON) -c 'from lab.binaries import ensure_binaries; print("lab binaries:", ensure_binaries())'

# helm, built from the pinned Go module like the lab's binaries (lab/helm.py).
helm: bootstrap
	@$(PYTHON) -m lab.helm build

# The controller's image from deploy/Containerfile, built offline from a mmdebstrap base and a
# wheelhouse, everything cached under ~/.cache/image-clone (lab/image_build.py).
image-build: bootstrap
	@$(PYTHON) -m lab.image_build

image: lab-up
	@$(PYTHON) -m lab.image_build --push

# deploy/ is the chart rendered with its defaults; a test fails when they drift.
deploy: helm
	@$(PYTHON) -m lab.helm render-deploy

# cosign, distribution v3, toxiproxy and the registry with the referrers API, for the signature, copier and fault
# tests (first time: cosign took 30 minutes on a busy 2-core machine).
test-binaries: bootstrap
	@$(PYTHON) -c 'from lab.binaries import ensure_cosign, ensure_referrers_registry, ensure_tools; \
		print(ensure_cosign(), ensure_tools(), ensure_referrers_registry())'

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
test: binaries test-binaries helm image-build lint
	@rm -rf collections
	@$(PYTHON) -m pytest

test-unit: bootstrap
	@rm -rf collections
	@$(PYTHON) -m pytest tests/unit

test-integration: binaries test-binaries helm image-build
	@rm -rf collections
	@$(PYTHON) -m pytest tests/integration

bench: binaries
	@$(PYTHON) -m bench
	@$(PYTHON) -m bench --profile wan

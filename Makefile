# d2lhub: `make up` runs the classroom on this machine, `make test` runs every test.
# Both set up what is missing (Python env, Docker engine, proxy, base image, images).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
D2LHUB := $(VENV)/bin/d2lhub
CONFIG ?= classroom.yaml
PYTEST_ARGS ?=
CHROMIUM := /usr/bin/chromium

.PHONY: help up down status images proxy screenshots course check data test unit hub-starts bench lock docs cluster cluster-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@python3 -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv $(VENV); }
	$(VENV)/bin/pip install -q --no-deps -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	@touch $@

up: $(VENV)/.installed ## set up what is missing and start the hub on http://127.0.0.1:8000
	$(D2LHUB) up --config $(CONFIG)

down: $(VENV)/.installed ## stop the hub and student servers (student files stay)
	$(D2LHUB) down --config $(CONFIG)

status: $(VENV)/.installed ## who is running where
	$(D2LHUB) status --config $(CONFIG)

images: $(VENV)/.installed ## build the base and student images (cached by a hash of their inputs)
	$(D2LHUB) images build --config $(CONFIG)

course: $(VENV)/.installed ## import the chapters into the notebooks students get
	$(D2LHUB) course build --config $(CONFIG)

check: course images ## run every chapter top to bottom in a student-like container
	$(D2LHUB) course check --config $(CONFIG)

data: course images ## fetch the data sets the chapters use into the class's read-only volume
	$(D2LHUB) course data --config $(CONFIG)

test: images proxy $(CHROMIUM) ## the whole suite: unit, integration (real engine, hub), browser
	$(PY) -m pytest -v -rs $(PYTEST_ARGS)

unit: $(VENV)/.installed ## only the tests that need no Docker engine
	$(PY) -m pytest -v -m "not integration" tests/unit

screenshots: images proxy $(CHROMIUM) ## rewrite docs/img from the browser tests (what a person sees)
	D2LHUB_SCREENSHOTS=docs/img $(PY) -m pytest -q tests/browser

hub-starts: images proxy ## start one test hub 50 times in a row, half after servers stopped while it was down
	D2LHUB_HUB_STARTS=50 $(PY) -m pytest -v -s tests/integration/test_hub_starts.py

bench: images ## measure spawn, class start, memory, images; writes docs/benchmarks.md
	$(PY) bench/run.py $(BENCH_ARGS)

cluster: images ## a Swarm of three engines on this machine (two in containers) to try scale-out
	$(PY) -m d2lhub.ops.testbed up --config $(CONFIG) $(CLUSTER_ARGS)

cluster-down: $(VENV)/.installed ## remove the engines `make cluster` started (and a Swarm it made)
	$(PY) -m d2lhub.ops.testbed down $(CLUSTER_ARGS)

proxy: $(VENV)/.installed ## install configurable-http-proxy (npm) and squid (Debian) when missing
	$(PY) -c 'from d2lhub.ops.bootstrap import ensure_proxy, ensure_egress_proxy; ensure_proxy(); ensure_egress_proxy()'

docs: $(VENV)/.installed ## regenerate the classroom.yaml and CLI references in docs/
	$(PY) -m d2lhub.cli.reference --write

# The browser tests drive Debian's Chromium: Playwright's own browser downloads are never used.
$(CHROMIUM): | $(VENV)/.installed
	$(PY) -c 'from d2lhub.ops.bootstrap import apt_install; apt_install("chromium")'

lock: $(VENV)/.installed ## re-resolve the host lock file from pyproject.toml
	$(VENV)/bin/pip freeze --exclude-editable | grep -v '^-e' | grep -vE "$$(cat images/lock-exclude.txt)" > requirements.lock

# Two commands for a fresh machine: `make run` and `make test`. Everything else builds on them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A plain .pth path entry instead of setuptools' import hook, which type checkers (mypy,
# pyright) cannot follow: with it an application type-checked against this checkout sees Any.
EDITABLE := --config-settings editable_mode=compat
DATA ?= .encspaces-relay
HOST ?= 127.0.0.1
PORT ?= 8765
# `make edit`: this checkout's own device (identity, list of spaces, local stores) and demo space.
EDIT_HOME ?= .encspaces-home
SPACE ?= demo
# `make run` starts a witness of the relay's spaces beside it (docs/operations.md); WITNESS=0: the relay alone.
WITNESS ?= 1
WITNESS_PORT ?= 8766

.PHONY: setup run demo edit screenshot test lint docs dist bench bench-setup clean

# The extras `make setup` installs; the stamp records them (bench-setup reads it).
EXTRAS ?= dev,docs,examples,editor,postgres,cluster

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]' $(EDITABLE)
	echo '$(EXTRAS)' > $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	@echo "Starting the encspaces relay on ws://$(HOST):$(PORT) (data in $(DATA)/). Ctrl+C stops it."
ifeq ($(WITNESS),0)
	$(BIN)/encspaces-relay --host $(HOST) --port $(PORT) --data-dir $(DATA)
else
	$(BIN)/python scripts/run_local.py --host $(HOST) --port $(PORT) --data-dir $(DATA) --witness-port $(WITNESS_PORT)
endif

demo: $(STAMP)
	$(BIN)/python -m encspaces_clients.demo

# The editor on a local demo space, against the relay `make run` started (identity and space
# are created on first use, in $(EDIT_HOME)/).
edit: $(STAMP)
	@$(BIN)/encspaces --home $(EDIT_HOME) init --exist-ok >/dev/null
	@$(BIN)/encspaces --home $(EDIT_HOME) create $(SPACE) --relay ws://$(HOST):$(PORT) --exist-ok >/dev/null
	$(BIN)/encspaces --home $(EDIT_HOME) edit $(SPACE)

# The README's picture of the editor.
screenshot: $(STAMP)
	$(BIN)/python -m encspaces_clients.editor.screenshot docs/editor.svg

lint: $(STAMP)
	$(BIN)/ruff check encspaces encspaces_relay encspaces_witness encspaces_clients tests bench scripts examples
	$(BIN)/mypy

# The API reference and guides (mkdocs.yml, docs/) into site/. --strict: a broken link or a
# docstring that does not render fails the build, so `make test` checks it too. Works offline.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet
	@# autorefs leaves a cross-reference it cannot resolve as plain text, without a warning.
	@! grep -oh '\[encspaces\.[A-Za-z_.]*\]' site/*.html site/*/*.html || (echo "unresolved cross-references above"; exit 1)

# The wheel and sdist as they would be published (dist/), checked: metadata and README render
# (twine check --strict), and the wheel carries the LICENSE and the py.typed markers.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --quiet --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python scripts/check_dist.py dist

# Every test, the benchmark harness's smoke test included (so its contenders are set up too),
# the docs build and the package build. bench-setup comes first (on a fresh clone it makes the
# venv with one pip install); lint, docs and dist, which only read the venv, then run side by
# side; then the suite in pytest-xdist workers (TEST_WORKERS=0: in one process), tests that must
# share one worker marked xdist_group (--dist loadgroup). One worker per core: on 2 cores one
# more (3) took 118 s where 2 took 173 s, but the suite's tests were written for one process and
# wait on deadlines, so the default does not oversubscribe the CPU (`make test TEST_WORKERS=3`
# is there for the impatient). Python may write its bytecode caches even where
# PYTHONDONTWRITEBYTECODE is set: the CLI and bench tests start hundreds of Python processes,
# each would compile this checkout anew.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(os.cpu_count() or 1)')
test: bench-setup
	$(MAKE) --no-print-directory -j3 --output-sync=target lint docs dist
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup

BENCH_STAMP := $(VENV)/.bench-installed

# A venv made (or remade) here gets the bench extra in the same pip install; one `make setup`
# made gets it by a second one.
$(BENCH_STAMP): pyproject.toml
	@$(MAKE) --no-print-directory --question $(STAMP) || $(MAKE) --no-print-directory $(STAMP) EXTRAS='$(EXTRAS),bench'
	@grep -q ',bench$$' $(STAMP) || $(BIN)/python -m pip install --quiet -e '.[$(EXTRAS),bench]' $(EDITABLE)
	touch $(BENCH_STAMP)

# The Node y-websocket contender, pinned by bench/package-lock.json.
bench/node_modules/.package-lock.json: bench/package.json bench/package-lock.json
	cd bench && npm ci --ignore-scripts --no-audit --no-fund

bench-setup: $(BENCH_STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory bench/node_modules/.package-lock.json; \
	else echo "npm not found: the Node y-websocket contender will be skipped"; fi

bench: bench-setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site dist build *.egg-info

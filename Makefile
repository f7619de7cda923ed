# Two commands for a fresh machine: `make run` and `make test`. Everything else builds on them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= .encspaces-relay
HOST ?= 127.0.0.1
PORT ?= 8765

.PHONY: setup run demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	@echo "Starting the encspaces relay on ws://$(HOST):$(PORT) (data in $(DATA)/). Ctrl+C stops it."
	$(BIN)/encspaces-relay --host $(HOST) --port $(PORT) --data-dir $(DATA)

demo: $(STAMP)
	$(BIN)/python -m clients.demo

lint: $(STAMP)
	$(BIN)/ruff check encspaces relay tests bench clients
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Two commands on a fresh machine (Python 3.11+ and make):
#   make run    install, then serve gateway.yaml (echo provider by default) on 127.0.0.1:8000
#   make test   install, then everything CI runs: lint, format check, strict types, tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The hot path compiled with mypyc (src/gateway/native.py), rebuilt when its list or one of its
# sources changes.
NATIVE := src/gateway/native.json
NATIVE_SOURCES := $(shell $(PYTHON) scripts/compile_native.py --sources)

.PHONY: install run test lint format format-check type-check pytest pre-commit services bench docker-build docker-up clean

install: $(STAMP) $(NATIVE)

$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(NATIVE): $(STAMP) scripts/compile_native.py src/gateway/native.py $(NATIVE_SOURCES)
	$(BIN)/python scripts/compile_native.py

run: install
	$(BIN)/gateway serve --host 127.0.0.1 --port 8000

test: install services lint format-check type-check pytest

lint: install
	$(BIN)/ruff check src tests bench scripts examples

format: install
	$(BIN)/ruff format src tests bench scripts examples
	$(BIN)/ruff check --fix src tests bench scripts examples

format-check: install
	$(BIN)/ruff format --check src tests bench scripts examples

type-check: install
	$(BIN)/mypy src

pytest: install
	$(BIN)/pytest

# redis-server (agent channel and shared-limit tests), wrk and valgrind (benchmark smoke tests).
services:
	@scripts/ensure-tools.sh

pre-commit: install
	$(BIN)/pre-commit run --all-files

bench: install services
	$(BIN)/python -m bench

docker-build:
	docker build -t gateway:latest .

docker-up:
	docker compose up --build

clean:
	$(PYTHON) scripts/compile_native.py --clean
	rm -rf $(VENV) .mypy_cache .ruff_cache

# feast-redis-rs: `make test` and `make demo` work on a fresh machine; everything they
# need is installed on the way. Override VENV or CARGO_TARGET_DIR to reuse caches.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON := $(VENV)/bin/python
BIN := $(VENV)/bin
export CARGO_TARGET_DIR ?= $(CURDIR)/target
# pyo3's build script and clippy must see the interpreter the extension is built for.
export PYO3_PYTHON := $(abspath $(PYTHON))

DEPS_STAMP := $(VENV)/.deps-installed

.PHONY: help
help:
	@echo "make test        lint, cargo test and pytest (installs what it needs)"
	@echo "make build-dev   build the extension in place (debug) into $(VENV)"
	@echo "make build-prod  build a release abi3 wheel into $(CARGO_TARGET_DIR)/wheels"
	@echo "make lint        ruff, cargo fmt --check, cargo clippy -D warnings"
	@echo "make format      ruff format and cargo fmt"
	@echo "make bench       stock Feast vs feast-redis-rs in one run (release build)"

$(PYTHON):
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The first `maturin develop` installs the project's dependencies with the test and lint
# extras (pyproject.toml is their one source) and an editable install of the package.
$(DEPS_STAMP): pyproject.toml | $(PYTHON)
	$(BIN)/pip install --quiet "maturin>=1.9,<2"
	$(BIN)/maturin develop --extras test,lint
	touch $@

.PHONY: install
install: $(DEPS_STAMP)

.PHONY: build-dev
build-dev: $(DEPS_STAMP)
	$(BIN)/maturin develop --skip-install

.PHONY: build-prod
build-prod: $(DEPS_STAMP)
	$(BIN)/maturin build --release --out $(CARGO_TARGET_DIR)/wheels

.PHONY: format
format: $(DEPS_STAMP)
	$(BIN)/ruff format python tests bench
	$(BIN)/ruff check --fix python tests bench
	cargo fmt

.PHONY: lint
lint: $(DEPS_STAMP)
	$(BIN)/ruff format --check python tests bench
	$(BIN)/ruff check python tests bench
	cargo fmt --check
	cargo clippy --all-targets --no-default-features -- -D warnings
	cargo clippy --all-targets -- -D warnings

.PHONY: test-rust
test-rust:
	cargo test --no-default-features

# The tests start their own servers on free ports; they only need the binary.
.PHONY: redis-server
redis-server:
	@if [ -z "$$REDIS_SERVER" ] && ! command -v redis-server >/dev/null; then \
		echo "redis-server not found: installing Debian's package"; \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends redis-server; \
	fi

.PHONY: test-python
test-python: build-dev redis-server
	$(BIN)/pytest

.PHONY: test
test: lint test-rust test-python

# Release build with the bench extra (matplotlib); `make test` rebuilds in debug after.
.PHONY: bench
bench: $(DEPS_STAMP) redis-server
	$(BIN)/maturin develop --release --extras bench
	$(BIN)/python bench/bench.py

.PHONY: clean
clean:
	rm -rf $(VENV) $(CARGO_TARGET_DIR) python/feast_redis_rs/*.so

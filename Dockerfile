# feast-redis-rs serve: Feast's feature server answered in Rust, as a container image.
#   make image        (podman, on a base made from Debian's packages: no registry needed)
#   podman run -v ./feature_repo:/feature_repo:ro -p 6566:6566 feast-redis-rs
# With a registry, BASE_IMAGE=docker.io/library/debian:trixie-slim (the default below).
# The feature repository (feature_store.yaml, and the registry if it is a file) is mounted
# at /feature_repo; Feast expands the `${VAR}`s of feature_store.yaml from the environment.
# A builder behind a proxy that re-signs TLS passes its CA bundle as a secret (make image
# passes the host's): --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=docker.io/library/debian:trixie-slim
# Feast's extras the image carries: the S3 registry and Redshift's config (aws), Feast's
# Kubernetes auth (k8s); add yours (postgres for a SQL registry...).
ARG FEAST_EXTRAS=redis,aws,k8s

# Feast and every wheel it needs (and gRPC's, for Feast's servicer behind `listen`), from
# pyproject.toml alone (a change of the code does not fetch them again), so that the
# runtime installs offline.
FROM ${BASE_IMAGE} AS dependencies
ARG FEAST_EXTRAS
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./
RUN --mount=type=secret,id=ca-certificates --mount=type=cache,id=feast-redis-rs-pip,target=/root/.cache/pip \
    if [ -f /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && python3 -m venv /opt/build \
    && /opt/build/bin/python -c 'import tomllib; project = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(project["dependencies"] + project["optional-dependencies"]["grpc"]))' > requirements.txt \
    && echo "feast[${FEAST_EXTRAS}]" >> requirements.txt \
    && /opt/build/bin/pip wheel --only-binary=:all: --wheel-dir /wheelhouse --requirement requirements.txt

# The wheel built by maturin with Debian's Rust (the crate's rust-version is trixie's).
FROM dependencies AS wheel
RUN apt-get update \
    && apt-get install -y --no-install-recommends cargo rustc gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=secret,id=ca-certificates --mount=type=cache,id=feast-redis-rs-pip,target=/root/.cache/pip \
    if [ -f /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && /opt/build/bin/pip install "maturin>=1.9,<2"
COPY Cargo.toml Cargo.lock build.rs README.md LICENSE ./
COPY proto proto
COPY src src
COPY python python
# The cache mounts keep crates.io's downloads and the compiled dependencies between builds.
RUN --mount=type=secret,id=ca-certificates \
    --mount=type=cache,id=feast-redis-rs-cargo,target=/root/.cargo/registry \
    --mount=type=cache,id=feast-redis-rs-target,target=/src/target \
    if [ -f /run/secrets/ca-certificates ]; then export CARGO_HTTP_CAINFO=/run/secrets/ca-certificates; fi \
    && /opt/build/bin/maturin build --release --locked --out /wheelhouse

# The runtime: Debian's Python and a virtualenv of the wheels; no compiler, no pip.
FROM ${BASE_IMAGE}
ARG FEAST_EXTRAS
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=wheel,source=/wheelhouse,target=/wheelhouse \
    python3 -m venv /opt/feast-redis-rs \
    && /opt/feast-redis-rs/bin/pip install --no-cache-dir --no-index --find-links /wheelhouse "feast-redis-rs[grpc]" "feast[${FEAST_EXTRAS}]" \
    && /opt/feast-redis-rs/bin/pip uninstall --yes pip
# No home and no login: nothing is written outside /tmp (a tmpfs, or an emptyDir under
# Kubernetes), so the root filesystem can be read-only.
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --no-create-home \
    --shell /usr/sbin/nologin feast
ENV PATH=/opt/feast-redis-rs/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /feature_repo
USER 10001:10001
EXPOSE 6566
# The server drains on SIGTERM for --shutdown-timeout (25 s), within Kubernetes' 30 s.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6566/health', timeout=2)"]
ENTRYPOINT ["feast-redis-rs"]
CMD ["serve", "--host", "0.0.0.0", "--port", "6566"]

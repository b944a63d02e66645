"""The ``feast-redis-rs`` command: ``feast-redis-rs [-c REPO] serve [...]``, with the
flags of ``feast [-c REPO] serve`` where they apply."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from feast import FeatureStore
from feast.repo_config import FeastConfigError

from feast_redis_rs import BUILD_PROFILE, __version__
from feast_redis_rs.cores import cores_available
from feast_redis_rs.server import STOCK_METRICS_PORT, ServerOptions, serve


@click.group()
@click.version_option(
    __version__, prog_name="feast-redis-rs", message=f"%(prog)s %(version)s ({BUILD_PROFILE} build)"
)
@click.option(
    "--chdir",
    "-c",
    help="The feature repository directory (default: the current one), as feast -c takes it.",
)
@click.option(
    "--feature-store-yaml",
    "-f",
    help="The feature_store.yaml to use (default: the repository's).",
)
@click.pass_context
def cli(ctx: click.Context, chdir: str | None, feature_store_yaml: str | None) -> None:
    """feast-redis-rs: Feast's Redis path, in Rust."""
    ctx.obj = {"repo": Path(chdir or ".").resolve(), "yaml": feature_store_yaml}


_DEFAULTS = ServerOptions()

# Limits and clocks: (flag, ServerOptions field, type, help). Each is documented in the
# README's "Running it in production", with what the server does when it is hit.
_LIMITS = [
    ("--worker-connections", "worker_connections", int,
     "Open client connections; past it the oldest idle one is closed to make room, "
     "else new clients wait in the kernel's backlog (feast serve's flag)."),
    ("--keep-alive-timeout", "keep_alive_timeout", float,
     "Seconds an idle keep-alive connection is kept (feast serve's flag)."),
    ("--header-timeout", "header_timeout", float,
     "Seconds for a request's headers, from its first byte (or the connection's accept)."),
    ("--body-timeout", "body_timeout", float, "Seconds for a request's whole body; then 408."),
    ("--write-timeout", "write_timeout", float,
     "Seconds an answer may wait for a client that does not read it; then the connection "
     "is closed."),
    ("--tls-handshake-timeout", "tls_handshake_timeout", float,
     "Seconds for a TLS handshake."),
    ("--stream-timeout", "stream_timeout", float,
     "Seconds a streaming gRPC call (health Watch, reflection) may last; then it ends "
     "with UNAVAILABLE, and the client calls again."),
    ("--max-body-bytes", "max_body_bytes", int,
     "Larger request bodies are refused with 413, before they are read."),
    ("--max-entity-rows", "max_entity_rows", int,
     "Online requests with more entity rows are refused with 413."),
    ("--max-values-per-request", "max_values_per_request", int,
     "Online requests for more entity rows x features are refused with 413."),
    ("--max-buffered-mb", "max_buffered_mb", int,
     "MiB of request bodies and answers all requests in flight may hold; past it, 503."),
    ("--max-concurrent-reads", "max_concurrent_reads", int,
     "Online requests read natively at once at most (fewer while reads queue on the "
     "CPU or Redis: the number adapts), and waiting for a place at most; one more "
     "is refused with 503 and Retry-After, and begins overload."),
    ("--read-queue-timeout", "read_queue_timeout", float,
     "Under overload, seconds an online request may wait for a place (the newest "
     "waiting is served first); then 503 with Retry-After. Otherwise it waits its "
     "turn for up to a second."),
    ("--transform-queue-timeout", "transform_queue_timeout", float,
     "Seconds an online request with on-demand views may wait for one of the 4 "
     "transformations Feast's code runs at once to end; then 503 with Retry-After."),
    ("--fallback-concurrency", "fallback_concurrency", int,
     "Requests Feast's app works on at once."),
    ("--fallback-queue", "fallback_queue", int,
     "Requests that may wait for Feast's app; past it, 503 with Retry-After."),
    ("--fallback-queue-timeout", "fallback_queue_timeout", float,
     "Seconds a request may wait for Feast's app; then 503 with Retry-After."),
    ("--shutdown-timeout", "shutdown_timeout", float,
     "Seconds from SIGTERM to exit, all of it; a second SIGTERM or SIGINT exits at once."),
    ("--auth-cache-seconds", "auth_cache_seconds", float,
     "In a repo with auth: seconds Feast's decision for a token and the features it asks "
     "for (or the views it writes) is reused at most (never past the token's expiry; "
     "decided again after each registry refresh); 0: Feast decides every request."),
]  # fmt: skip


def _limit_options(command):
    for flag, field, kind, help_text in reversed(_LIMITS):
        command = click.option(
            flag, field, type=kind, default=getattr(_DEFAULTS, field), show_default=True,
            help=help_text,
        )(command)  # fmt: skip
    return command


_CONNECTION_OPTIONS = [
    click.option("--no-access-log", is_flag=True, help="Do not log every request."),
    click.option("--key", "-k", "tls_key_path", default="", help="TLS private key (with --cert)."),
    click.option("--cert", "-c", "tls_cert_path", default="", help="TLS certificate (with --key)."),
    click.option("--metrics", "-m", is_flag=True, help="Serve Prometheus metrics at /metrics."),
    click.option(
        "--metrics-host",
        default=_DEFAULTS.metrics_host,
        show_default=True,
        help="Host the metrics' own port binds (with --metrics-port).",
    ),
    click.option(
        "--metrics-port",
        type=int,
        default=None,
        help="Serve /metrics on a port of its own (default: the server's port; "
        f"{STOCK_METRICS_PORT} for a repo with auth:, as feast serve).",
    ),
]


def _connection_options(command):
    """The options `serve` and `listen` share: TLS, the access log and the metrics."""
    for option in reversed(_CONNECTION_OPTIONS):
        command = option(command)
    return command


def _connection(options: dict[str, Any]) -> dict[str, Any]:
    """The `ServerOptions` fields of `_connection_options`, taken out of `options`."""
    tls_key_path, tls_cert_path = options.pop("tls_key_path"), options.pop("tls_cert_path")
    if bool(tls_key_path) != bool(tls_cert_path):
        raise click.BadParameter("pass both --cert and --key to serve HTTPS")
    return {
        "tls_cert_path": tls_cert_path or None,
        "tls_key_path": tls_key_path or None,
        "access_log": not options.pop("no_access_log"),
        "metrics": options.pop("metrics"),
        "metrics_host": options.pop("metrics_host"),
        "metrics_port": options.pop("metrics_port"),
    }


@cli.command("serve")
@click.option("--host", "-h", default="127.0.0.1", show_default=True, help="Host to bind.")
@click.option("--port", "-p", type=int, default=6566, show_default=True, help="Port to bind.")
@click.option(
    "--type",
    "-t",
    "type_",
    default="http",
    show_default=True,
    help="Server type: http or grpc. Either way the port answers both: HTTP/1.1 (Feast's "
    "HTTP API) and HTTP/2 (its gRPC services).",
)
@click.option(
    "--registry_ttl_sec",
    "-r",
    type=int,
    default=60,
    show_default=True,
    help="Seconds between registry refreshes (0: never).",
)
@_connection_options
@click.option(
    "--workers",
    "-w",
    type=int,
    default=-1,
    show_default=True,
    help="Threads answering requests (threads of one process; -1: one per core it may use, "
    "as its CPU affinity and its cgroup's CPU quota allow).",
)
@click.option(
    "--max-requests",
    type=int,
    default=1000,
    show_default=True,
    help="Accepted for feast serve's command line; no effect (one process, never restarted).",
)
@click.option(
    "--max-requests-jitter",
    type=int,
    default=50,
    show_default=True,
    help="Accepted for feast serve's command line; no effect.",
)
@_limit_options
@click.pass_context
def serve_command(
    ctx: click.Context,
    host: str,
    port: int,
    type_: str,
    registry_ttl_sec: int,
    workers: int,
    max_requests: int,
    max_requests_jitter: int,
    **options: Any,
) -> None:
    """Serve Feast's HTTP feature server API (and its gRPC services), answered in Rust."""
    if type_ not in ("http", "grpc"):
        raise click.BadParameter(
            f"--type is http or grpc, not {type_!r} (both are served on the port either way)",
            param_hint="--type",
        )
    if workers == -1:
        workers = cores_available()
    if workers < 1:
        raise click.BadParameter("--workers must be 1 or more (or -1: one per core it may use)")
    connection = _connection(options)
    _run(
        ctx,
        ServerOptions(host=host, port=port, workers=workers, **connection, **options),
        registry_ttl_sec,
    )


@cli.command("listen")
@click.option(
    "--address",
    "-a",
    default="localhost:50051",
    show_default=True,
    help="host:port the gRPC server binds (it answers Feast's HTTP API there too).",
)
@click.option(
    "--max_workers",
    "-w",
    type=int,
    default=10,
    show_default=True,
    help="Accepted for feast listen's command line: threads are one per core it may use.",
)
@click.option(
    "--registry_ttl_sec",
    "-r",
    type=int,
    default=5,
    show_default=True,
    help="Seconds between registry refreshes (0: never).",
)
@_connection_options
@_limit_options
@click.pass_context
def listen_command(
    ctx: click.Context, address: str, max_workers: int, registry_ttl_sec: int, **options: Any
) -> None:
    """Serve Feast's gRPC feature server (feast listen's GrpcFeatureServer, and the Go and
    Java servers' ServingService), answered in Rust."""
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise click.BadParameter(
            f"{address!r} is not host:port (for example localhost:50051)", param_hint="--address"
        )
    if max_workers < 1:
        raise click.BadParameter("--max_workers must be 1 or more", param_hint="--max_workers")
    connection = _connection(options)
    _run(
        ctx,
        ServerOptions(host=host.strip("[]"), port=int(port), **connection, **options),
        registry_ttl_sec,
    )


def _run(ctx: click.Context, options: ServerOptions, registry_ttl_sec: int) -> None:
    logging.basicConfig(level=logging.INFO)
    repo, yaml = ctx.obj["repo"], ctx.obj["yaml"]
    try:
        store = FeatureStore(repo_path=str(repo), fs_yaml_file=Path(yaml) if yaml else None)
    except (FeastConfigError, ValueError, OSError) as error:
        raise click.ClickException(f"cannot load the feature repo {repo}: {error}") from error
    try:
        left = serve(store, options, registry_ttl_sec)
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from error
    # The grace is all the time from SIGTERM to exit: the interpreter's teardown (a
    # second of finalizing Feast's, pandas' and pyarrow's modules, and waiting for any
    # thread of Feast's app still running) is skipped once the logs are written.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if left is not None else 1)

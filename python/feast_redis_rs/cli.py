"""The ``feast-redis-rs`` command: ``feast-redis-rs [-c REPO] serve [...]``, with the
flags of ``feast [-c REPO] serve`` where they apply."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from feast import FeatureStore
from feast.repo_config import FeastConfigError

from feast_redis_rs import BUILD_PROFILE, __version__
from feast_redis_rs.server import ServerOptions, serve


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


@cli.command("serve")
@click.option("--host", "-h", default="127.0.0.1", show_default=True, help="Host to bind.")
@click.option("--port", "-p", type=int, default=6566, show_default=True, help="Port to bind.")
@click.option("--no-access-log", is_flag=True, help="Do not log every request.")
@click.option(
    "--registry_ttl_sec",
    "-r",
    type=int,
    default=60,
    show_default=True,
    help="Seconds between registry refreshes (0: never).",
)
@click.option("--key", "-k", "tls_key_path", default="", help="TLS private key (with --cert).")
@click.option("--cert", "-c", "tls_cert_path", default="", help="TLS certificate (with --key).")
@click.option("--metrics", "-m", is_flag=True, help="Serve Prometheus metrics at /metrics.")
@click.option(
    "--workers",
    "-w",
    type=int,
    default=2,
    show_default=True,
    help="Threads answering requests (threads, not processes).",
)
@click.option(
    "--max-body-bytes",
    type=int,
    default=ServerOptions.max_body_bytes,
    show_default=True,
    help="Requests with a larger body are refused with 413.",
)
@click.option(
    "--shutdown-timeout",
    type=float,
    default=ServerOptions.shutdown_timeout_seconds,
    show_default=True,
    help="Seconds in-flight requests may take to finish after SIGTERM.",
)
@click.pass_context
def serve_command(
    ctx: click.Context,
    host: str,
    port: int,
    no_access_log: bool,
    registry_ttl_sec: int,
    tls_key_path: str,
    tls_cert_path: str,
    metrics: bool,
    workers: int,
    max_body_bytes: int,
    shutdown_timeout: float,
) -> None:
    """Serve Feast's HTTP feature server API, answered in Rust."""
    if bool(tls_key_path) != bool(tls_cert_path):
        raise click.BadParameter("pass both --cert and --key to serve HTTPS")
    if workers < 1:
        raise click.BadParameter("--workers must be 1 or more")
    logging.basicConfig(level=logging.INFO)
    repo, yaml = ctx.obj["repo"], ctx.obj["yaml"]
    try:
        store = FeatureStore(repo_path=str(repo), fs_yaml_file=Path(yaml) if yaml else None)
    except (FeastConfigError, ValueError, OSError) as error:
        raise click.ClickException(f"cannot load the feature repo {repo}: {error}") from error
    options = ServerOptions(
        host=host,
        port=port,
        tls_cert_path=tls_cert_path or None,
        tls_key_path=tls_key_path or None,
        access_log=not no_access_log,
        metrics=metrics,
        max_body_bytes=max_body_bytes,
        workers=workers,
        shutdown_timeout_seconds=shutdown_timeout,
    )
    try:
        serve(store, options, registry_ttl_sec)
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from error

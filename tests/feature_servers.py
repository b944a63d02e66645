"""Feature servers for the tests: ``feast-redis-rs serve`` and stock ``feast serve`` on
one repo (two ``feature_store.yaml`` files, one registry, one Redis), each a process of
its own on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import loan_repo
from .redis_servers import free_port, stop_process

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
# Set by `make test-near-cache`: the stock-equality suites run with a near cache.
NEAR_CACHE_ON = os.environ.get("FEAST_REDIS_RS_TEST_NEAR_CACHE") == "1"
START_TIMEOUT_SECONDS = 60


def write_repo_yaml(path: Path, name: str, online_store: dict, **extra) -> Path:
    """A feature_store.yaml for the loan repo under `path`, with `online_store`."""
    if NEAR_CACHE_ON and online_store.get("type") == "feast_redis_rs.RedisOnlineStore":
        online_store = {"near_cache": {}, **online_store}
    config = {
        "project": loan_repo.PROJECT,
        "provider": "local",
        "registry": str(path / "registry.db"),
        "online_store": online_store,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
        **extra,
    }
    target = path / name
    target.write_text(yaml.safe_dump(config))
    return target


def ours_and_stock_yamls(repo: Path, redis_address: str, suffix: str = "") -> tuple[Path, Path]:
    """feature_store.yaml files for `repo` with this store and with stock Feast's, on one
    Redis."""
    ours = write_repo_yaml(
        repo,
        f"ours{suffix}.yaml",
        {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_address},
    )
    stock = write_repo_yaml(
        repo, f"stock{suffix}.yaml", {"type": "redis", "connection_string": redis_address}
    )
    return ours, stock


@dataclass
class FeatureServer:
    url: str
    process: subprocess.Popen
    log: Path
    ssl_context: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        raw: bytes | None = None,
        timeout: float = 30,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(
                request, timeout=timeout, context=self.ssl_context
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post(self, path: str, body: object) -> tuple[int, object]:
        status, content = self.request("POST", path, body)
        return status, json.loads(content) if content else None

    def stop(self) -> None:
        stop_process(self.process, timeout=30)


def start_server(
    command: str,
    repo: Path,
    yaml_file: Path,
    *args: str,
    ssl_context: ssl.SSLContext | None = None,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    stderr: int | None = subprocess.STDOUT,
) -> FeatureServer:
    """`feast` or `feast-redis-rs` serving `repo` with `yaml_file`, once /health is 200;
    `prefix` runs it under another command (`prlimit ...`), `stderr` goes to the log
    unless given."""
    port = free_port()
    log = repo / f"{yaml_file.stem}-{port}.log"
    command_line = [
        *prefix, BIN / command, "-c", repo, "-f", yaml_file, "serve", "-p", str(port), *args
    ]  # fmt: skip
    process = subprocess.Popen(
        [str(part) for part in command_line],
        stdout=log.open("wb"),
        stderr=stderr,
        # The project's root on the path (before what `env` puts there): on-demand views
        # of the tests are pickled by reference to their test module, which the servers
        # then import.
        env={
            **(env or os.environ),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), (env or {}).get("PYTHONPATH")])),
        },
    )
    scheme = "https" if ssl_context else "http"
    server = FeatureServer(f"{scheme}://127.0.0.1:{port}", process, log, ssl_context)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} serve exited: {log.read_text()[-3000:]}")
        try:
            if server.request("GET", "/health", timeout=2)[0] == 200:
                return server
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{command} serve did not become healthy: {log.read_text()[-3000:]}")


@dataclass
class StockListen:
    """Stock ``feast listen`` (Feast's gRPC server) and a channel to it."""

    process: subprocess.Popen
    channel: object  # grpc.Channel

    def stop(self) -> None:
        self.channel.close()
        stop_process(self.process, timeout=30)


def start_stock_listen(
    repo: Path, yaml_file: Path, env: dict[str, str] | None = None
) -> StockListen:
    """Stock ``feast listen`` serving `repo` with `yaml_file`, once its channel is ready."""
    import grpc

    port = free_port()
    log = repo / f"stock-listen-{port}.log"
    process = subprocess.Popen(
        [str(BIN / "feast"), "-c", str(repo), "-f", str(yaml_file), "listen",
         "-a", f"127.0.0.1:{port}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**(env or os.environ), "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_SECONDS)
    except grpc.FutureTimeoutError:
        stop_process(process)
        raise RuntimeError(f"feast listen did not start: {log.read_text()[-3000:]}") from None
    return StockListen(process, channel)


def columns(answer: dict) -> dict[str, dict]:
    """A get-online-features answer by column name. Stock Feast orders the features of
    a view as a Python set iterates them, so answers are compared by name."""
    names = answer["metadata"]["feature_names"]
    assert len(names) == len(answer["results"])
    return dict(zip(names, answer["results"], strict=True))


def feast_error(content: bytes) -> str:
    """The message of an error answered in Feast's shape (a ``FeastError``'s
    ``to_error_detail()`` as a JSON string), checked to rebuild as Feast's clients do."""
    from feast.errors import FeastError

    detail = json.loads(content)
    error = FeastError.from_error_detail(detail)
    assert isinstance(error, FeastError), detail
    return str(error)


@contextlib.contextmanager
def ours_and_stock_servers(
    repo: Path, redis_address: str, *ours_args: str
) -> Iterator[tuple[FeatureServer, FeatureServer]]:
    """``feast-redis-rs serve`` (with /metrics and ``ours_args``) and stock ``feast
    serve`` of ``repo`` on the Redis at ``redis_address``, stopped at the end."""
    ours_yaml, stock_yaml = ours_and_stock_yamls(repo, redis_address)
    ours = start_server("feast-redis-rs", repo, ours_yaml, "--metrics", *ours_args)
    try:
        stock = start_server("feast", repo, stock_yaml, "--no-access-log")
        try:
            yield ours, stock
        finally:
            stock.stop()
    finally:
        ours.stop()


def assert_native_and_as_stock(servers, request: dict, fallbacks) -> dict:
    """Posts ``request`` to ours and stock's (``servers``): both 200, ours answered
    natively (``fallbacks(ours)`` unchanged) with stock's columns; returns them."""
    ours, stock = servers
    before = fallbacks(ours)
    status, answer = ours.post("/get-online-features", request)
    stock_status, expected = stock.post("/get-online-features", request)
    assert (status, stock_status) == (200, 200), (answer, expected)
    assert fallbacks(ours) == before, "the request must be answered natively"
    assert columns(answer) == columns(expected)
    return columns(answer)


@contextlib.contextmanager
def ours_and_stock_channels(
    repo: Path, redis_address: str
) -> Iterator[tuple[FeatureServer, Any, Any]]:
    """``feast-redis-rs serve --type grpc`` (/metrics beside it), a channel to it and
    one to stock ``feast listen``, of ``repo`` on the Redis at ``redis_address``."""
    import grpc

    ours_yaml, stock_yaml = ours_and_stock_yamls(repo, redis_address, "-grpc")
    ours = start_server("feast-redis-rs", repo, ours_yaml, "--type", "grpc", "--metrics")
    try:
        stock = start_stock_listen(repo, stock_yaml)
        try:
            with grpc.insecure_channel(ours.url.removeprefix("http://")) as channel:
                yield ours, channel, stock.channel
        finally:
            stock.stop()
    finally:
        ours.stop()

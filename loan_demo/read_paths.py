"""The ways the demo reads an applicant's online features, and their timing.

- In-process through feast-redis-rs: the demo's `feature_store.yaml`.
- In-process through stock Feast's `type: redis` store on the same registry and Redis:
  feast-redis-rs stores Feast's own bytes, so both read the very same keys.
- Over HTTP from a feature server: `feast-redis-rs serve` (`make serve`) or stock
  `feast serve` (`make serve-stock`), over one keep-alive connection.

The loan form and the notebook time them side by side with `time_reads`.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Callable

import numpy as np
import pandas as pd
from feast import FeatureStore, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig as StockRedisConfig

OURS = "feast-redis-rs"
STOCK = "stock Feast (type: redis)"
OURS_HTTP = "feast-redis-rs serve (HTTP)"
STOCK_HTTP = "feast serve (HTTP)"
# What each path is compared with: stock Feast, in-process or over HTTP.
STOCK_OF = {OURS: STOCK, STOCK: STOCK, OURS_HTTP: STOCK_HTTP, STOCK_HTTP: STOCK_HTTP}
# Where `make serve` and `make serve-stock` listen, unless these variables say otherwise.
SERVER_URL_VARIABLES = {
    OURS_HTTP: ("FEAST_REDIS_RS_SERVE_URL", "http://127.0.0.1:6566"),
    STOCK_HTTP: ("FEAST_SERVE_URL", "http://127.0.0.1:6567"),
}

Read = Callable[[], dict[str, list]]


def server_urls() -> dict[str, str]:
    """The feature servers' URLs by path: `FEAST_REDIS_RS_SERVE_URL` and
    `FEAST_SERVE_URL`, else the ports of `make serve` and `make serve-stock`."""
    return {
        name: os.environ.get(variable) or default
        for name, (variable, default) in SERVER_URL_VARIABLES.items()
    }


def stock_feature_store(store: FeatureStore) -> FeatureStore:
    """A FeatureStore on `store`'s repo, registry and Redis that reads through Feast's
    own Redis store instead of feast-redis-rs."""
    config = store.config
    ours = config.online_store
    stock = StockRedisConfig(
        redis_type=ours.redis_type.value,
        connection_string=ours.connection_string,
        sentinel_master=ours.sentinel_master,
        key_ttl_seconds=ours.key_ttl_seconds,
        full_scan_for_deletion=ours.full_scan_for_deletion,
    )
    stock_config = RepoConfig(
        project=config.project,
        provider=config.provider,
        registry=config.registry_config,
        online_store=stock,
        offline_store=config.offline_config,
        entity_key_serialization_version=config.entity_key_serialization_version,
        repo_path=config.repo_path,
    )
    return FeatureStore(config=stock_config, repo_path=str(config.repo_path))


def in_process(store: FeatureStore, features: list[str], entity_rows: list[dict]) -> Read:
    """A read of `features` of `entity_rows` through `store`, as the model reads them."""

    def read() -> dict[str, list]:
        return store.get_online_features(features=features, entity_rows=entity_rows).to_dict()

    return read


class FeatureServerError(RuntimeError):
    """A feature server that cannot be reached or answers with an error."""


class FeatureServerClient:
    """Feast's HTTP contract (`POST /get-online-features`) over one keep-alive
    connection, so that a timed read is the server's answer and not a TCP handshake."""

    def __init__(self, url: str, timeout: float = 10.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise FeatureServerError(f"feature server URL {url!r}: expected http(s)://host:port")
        self.url = url.rstrip("/")
        connection = (
            http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        )
        self.connection = connection(parsed.hostname, parsed.port, timeout=timeout)

    def __enter__(self) -> FeatureServerClient:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            raise FeatureServerError(f"feature server {self.url}: {error}") from error

    def healthy(self) -> bool:
        """Whether the server answers `GET /health` with 200."""
        try:
            return self._request("GET", "/health")[0] == 200
        except FeatureServerError:
            return False

    def online_features(self, features: list[str], entity_rows: list[dict]) -> dict[str, list]:
        """The values of `features` (and of the entity keys) for `entity_rows`, by name."""
        join_keys = list(entity_rows[0]) if entity_rows else []
        body = {
            "features": features,
            "entities": {name: [row[name] for row in entity_rows] for name in join_keys},
        }
        status, content = self._request("POST", "/get-online-features", json.dumps(body).encode())
        if status != 200:
            detail = content[:300].decode(errors="replace")
            raise FeatureServerError(f"feature server {self.url} answered {status}: {detail}")
        answer = json.loads(content)
        names = answer["metadata"]["feature_names"]
        return {
            name: column["values"] for name, column in zip(names, answer["results"], strict=True)
        }


def reachable_servers(urls: dict[str, str], timeout: float = 0.5) -> dict[str, str]:
    """The feature servers of `urls` (name to URL) that answer `/health` now."""
    running = {}
    for name, url in urls.items():
        try:
            with FeatureServerClient(url, timeout=timeout) as server:
                if server.healthy():
                    running[name] = url
        except FeatureServerError:
            continue
    return running


def time_reads(reads: dict[str, Read], repeats: int, block: int = 10) -> dict[str, list[float]]:
    """Seconds of each of `repeats` calls of every read, in alternating blocks of
    `block` calls (so a slower moment of the machine falls on all reads alike), each
    block after one untimed call. The untimed call matters in one process: Feast keeps
    one process-wide cache of resolved feature requests, which a read through another
    FeatureStore's registry clears, and no single-store deployment pays that."""
    seconds: dict[str, list[float]] = {name: [] for name in reads}
    while any(len(values) < repeats for values in seconds.values()):
        for name, read in reads.items():
            read()
            for _ in range(min(block, repeats - len(seconds[name]))):
                started = time.perf_counter()
                read()
                seconds[name].append(time.perf_counter() - started)
    return seconds


def latency_table(seconds: dict[str, list[float]]) -> pd.DataFrame:
    """p50 and p99 in milliseconds per read path, and how many times faster than stock
    Feast the path is at the median (in-process against in-process, HTTP against
    `feast serve`) when both were timed."""
    rows = []
    for name, values in seconds.items():
        p50, p99 = np.percentile(np.array(values) * 1000, [50, 99])
        rows.append({"read path": name, "reads": len(values), "p50 ms": p50, "p99 ms": p99})
    table = pd.DataFrame(rows).set_index("read path")
    table["vs stock p50"] = [
        table.loc[STOCK_OF[name], "p50 ms"] / table.loc[name, "p50 ms"]
        if STOCK_OF.get(name) in table.index else np.nan
        for name in table.index
    ]  # fmt: skip
    return table

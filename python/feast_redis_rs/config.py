"""``RedisOnlineStoreConfig``: the ``online_store`` section of ``feature_store.yaml`` for
``type: feast_redis_rs.RedisOnlineStore``."""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from feast.infra.online_stores.redis import RedisType
from feast.repo_config import FeastConfigBaseModel
from pydantic import (
    ConfigDict,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from feast_redis_rs import _feast, _native

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PASSWORD = re.compile(r"(password\s*=)[^,]*")


_DEFAULT_STALENESS_SECONDS = 60.0


class NearCacheConfig(FeastConfigBaseModel):
    """``near_cache:`` in the online store config: entity hashes kept in the process,
    evicted by Redis when any client writes, deletes or expires their key."""

    model_config = ConfigDict(hide_input_in_errors=True)

    max_entries: PositiveInt | None = None
    """(Optional) entity keys kept at most; the least recently used go first"""

    max_bytes: PositiveInt = 64 * 1024 * 1024
    """(Optional) bytes kept at most (keys, fields, values and each entry's overhead)"""

    max_staleness_seconds: PositiveFloat | None = None
    """(Optional with ``invalidation: tracking``, default 60; required with ``ttl_only``)
    no entry is served longer than this after it was read from Redis"""

    feature_views: list[StrictStr] | None = None
    """(Optional) the feature views read through the cache; default all"""

    invalidation: Literal["tracking", "ttl_only"] = "tracking"
    """``tracking``: Redis' invalidations (``CLIENT TRACKING``, Redis 6+ or Valkey)
    evict an entry as soon as its key changes; a server that refuses them is an error
    when the store starts. ``ttl_only``: no invalidation at all, entries are served up
    to ``max_staleness_seconds`` old (for servers without ``CLIENT TRACKING``)"""

    @model_validator(mode="after")
    def _staleness_stated_for_ttl_only(self) -> NearCacheConfig:
        if self.max_staleness_seconds is None:
            if self.invalidation == "ttl_only":
                raise ValueError(
                    "near_cache.invalidation: ttl_only serves entries until they are "
                    "max_staleness_seconds old: set near_cache.max_staleness_seconds"
                )
            self.max_staleness_seconds = _DEFAULT_STALENESS_SECONDS
        return self

    def caches(self, feature_view: str) -> bool:
        """Whether reads of ``feature_view`` go through the cache."""
        return self.feature_views is None or feature_view in self.feature_views


class RedisOnlineStoreConfig(FeastConfigBaseModel):
    """Online store config for ``feast_redis_rs.RedisOnlineStore``.

    Every field of Feast's ``RedisOnlineStoreConfig`` keeps its meaning; the fields after
    ``skip_dedup`` are this store's own, all optional."""

    # Validation errors must not echo the input: connection_string may hold a password.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["feast_redis_rs.RedisOnlineStore"] = "feast_redis_rs.RedisOnlineStore"
    """Online store type selector"""

    redis_type: RedisType = RedisType.redis
    """``redis`` (one server), ``redis_cluster`` or ``redis_sentinel``"""

    client: _feast.RedisClient = _feast.RedisClient.redis
    """Accepted for compatibility with Feast's config; every command goes through this
    store's Rust client whatever it says."""

    sentinel_master: StrictStr = "mymaster"
    """Sentinel's master name"""

    connection_string: StrictStr = "localhost:6379"
    """``host:port[,host2:port2...][,key=value...]`` as for Feast's Redis store: the
    nodes (cluster seeds or sentinels when several), then ``ssl=true``, ``password=``,
    ``username=``, ``db=``, ``ssl_cert_reqs=none``, ``ssl_check_hostname=``,
    ``ssl_ca_certs=``, ``ssl_certfile=``, ``ssl_keyfile=``, ``client_name=``,
    ``socket_timeout=``, ``socket_connect_timeout=``, ``skip_full_coverage_check=``"""

    key_ttl_seconds: NonNegativeInt | None = None
    """(Optional) EXPIRE set on every key written; unset or 0 for none"""

    full_scan_for_deletion: bool | None = True
    """(Optional) whether ``feast apply`` deletes the data of removed feature views"""

    skip_dedup: bool = False
    """(Optional) write without first reading the stored event times: faster, but an
    older row can then overwrite a newer one"""

    connect_timeout_seconds: PositiveFloat | None = None
    """(Optional) time to open and authenticate a connection; default
    ``socket_connect_timeout`` of the connection string, else 5"""

    command_timeout_seconds: PositiveFloat | None = None
    """(Optional) time to wait for Redis to answer one pipeline; default
    ``socket_timeout`` of the connection string, else 10"""

    retries: NonNegativeInt = 3
    """(Optional) retries after a refused or lost connection (never after a timeout)"""

    retry_backoff_seconds: PositiveFloat = 0.05
    """(Optional) pause before the first retry, doubled for each next one (at most 1 s)"""

    tls_ca_file: StrictStr | None = None
    """(Optional) PEM file of the CA that signed the servers' certificates; default
    ``ssl_ca_certs``, else the system's roots. Needs ``ssl=true``."""

    tls_cert_file: StrictStr | None = None
    """(Optional) PEM client certificate for mutual TLS (with ``tls_key_file``)"""

    tls_key_file: StrictStr | None = None
    """(Optional) PEM key of ``tls_cert_file``"""

    tls_check_hostname: bool | None = None
    """(Optional) check that the server's certificate names the host; default
    ``ssl_check_hostname``, else true"""

    write_batch_size: PositiveInt = 10_000
    """(Optional) rows per pipeline when writing: bounds memory on large batches"""

    spin_wait: bool = True
    """(Optional) a thread calling the store waits for Redis' replies by spinning (up to
    200 µs a wait) rather than sleeping, while no other thread waits on Redis: lower
    latency to a Redis on this host or nearby, for a core kept busy meanwhile. Set
    false where cores are scarce or shared"""

    near_cache: NearCacheConfig | None = None
    """(Optional) keep read entity hashes in the process, kept correct by Redis'
    invalidations (see ``NearCacheConfig``); off by default"""

    auto_pipelining: bool = False
    """(Optional) requests of this process' threads (and async tasks) in flight together
    to one Redis node share a connection and its writes, read by a background I/O
    thread; a request alone keeps its thread's own connection. Fewer writes and reads
    for Redis; on a host where the GIL and Redis share few cores it costs a few percent
    of throughput (README). `feast-redis-rs serve` always shares"""

    @model_validator(mode="wrap")
    @classmethod
    def _validate_hiding_secrets(cls, data: Any, handler: Any) -> RedisOnlineStoreConfig:
        # Feast's RepoConfig re-raises these errors with the input of each (its own errors
        # do not hide input), and `feast apply` prints them: so no error carries the
        # connection string or an unknown key's value (a `password:` key of its own).
        try:
            config = handler(data)
        except ValidationError as error:
            raise _without_secrets(cls.__name__, error.errors()) from None
        try:
            _check_variables_set(config.connection_string)
            # Read as the client will read it, so a config that loads is one it accepts.
            _native.check_config(config)
        except ValueError as error:
            problem = {"type": "redis_config", "loc": (), "msg": str(error)}
            # The whole string hidden: a misspelt `pasword=` is not redacted by name.
            shown = {**dict(config), "connection_string": "<hidden str>"}
            raise _without_secrets(cls.__name__, [problem], shown) from None
        return config

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            if name == "connection_string":
                value = _PASSWORD.sub(r"\1<redacted>", value)
            yield name, value


def _check_variables_set(connection_string: str) -> None:
    """Feast substitutes ``${NAME}`` in ``feature_store.yaml`` and leaves the text as it
    is when NAME is not set: say so, rather than send ``${NAME}`` to Redis as a password."""
    for name in _VARIABLE.findall(connection_string):
        if name not in os.environ:
            raise ValueError(
                f"connection_string refers to ${{{name}}}, but the environment variable "
                f"{name} is not set: export it before running Feast"
            )


def _without_secrets(
    title: str, errors: list[Any], model_input: Any = "<hidden dict>"
) -> ValidationError:
    """`errors` as a ValidationError whose inputs are shown only for the fields that
    cannot hold a secret."""

    def shown_input(error: Any) -> Any:
        field = error["loc"][0] if error["loc"] else None
        if field is None:
            return model_input
        if field == "connection_string" or field not in RedisOnlineStoreConfig.model_fields:
            return f"<hidden {type(error['input']).__name__}>"
        return error["input"]

    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError(error["type"], error["msg"]),
                loc=error["loc"],
                input=shown_input(error),
            )
            for error in errors
        ],
        hide_input=True,
    )


def __getattr__(name: str) -> Any:
    # Feast finds an online store's class in the module of its config
    # (`feast.infra.online_stores.helpers.get_online_store_from_config`).
    if name == "RedisOnlineStore":
        from feast_redis_rs.online_store import RedisOnlineStore

        return RedisOnlineStore
    raise AttributeError(f"module 'feast_redis_rs.config' has no attribute '{name}'")

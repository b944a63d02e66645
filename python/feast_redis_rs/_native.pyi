"""Type stub of the Rust extension module. Entity keys are passed as serialized
``feast.types.EntityKey`` protos; ``feast_redis_rs.encoding`` takes the proto objects."""

from collections.abc import Callable
from typing import Any, final

from feast_redis_rs.config import RedisOnlineStoreConfig
from feast_redis_rs.plans import ViewSpec
from feast_redis_rs.server import (
    ServedOnDemandView,
    ServedPrecomputed,
    ServedProjection,
    ServedView,
    ServerOptions,
    WritableView,
)

__all__ = [
    "BUILD_PROFILE",
    "ColumnarAnswer",
    "FeatureServer",
    "RedisStoreClient",
    "Reply",
    "ViewPlan",
    "__version__",
    "canonical_value",
    "check_config",
    "decode_timestamp",
    "deserialize_entity_key",
    "encode_timestamp",
    "entity_key_prefix",
    "mmh3_field",
    "pipelined_hmget",
    "redis_key",
    "serialize_entity_key",
    "timestamp_field",
    "value_kind",
]

__version__: str
BUILD_PROFILE: str

def serialize_entity_key(
    entity_key_proto: bytes, entity_key_serialization_version: int = 3
) -> bytes: ...
def redis_key(
    project: str, entity_key_proto: bytes, entity_key_serialization_version: int = 3
) -> bytes: ...
def entity_key_prefix(join_keys: list[str], entity_key_serialization_version: int = 3) -> bytes: ...
def deserialize_entity_key(
    serialized_entity_key: bytes, entity_key_serialization_version: int = 3
) -> bytes: ...
def mmh3_field(name: str) -> bytes: ...
def timestamp_field(feature_view: str) -> bytes: ...
def value_kind(value_bytes: bytes) -> str | None: ...
def canonical_value(value_bytes: bytes) -> bytes: ...
def decode_timestamp(timestamp_bytes: bytes) -> tuple[int, int]: ...
def encode_timestamp(seconds: int, nanos: int) -> bytes: ...
def check_config(config: RedisOnlineStoreConfig) -> None: ...
def pipelined_hmget(
    client: RedisStoreClient, reads: list[tuple[list[bytes], list[bytes]]]
) -> int: ...

@final
class ViewPlan:
    """A feature view as the store reads and writes it, built once from its spec."""

    def __new__(cls, spec: ViewSpec) -> ViewPlan: ...

@final
class RedisStoreClient:
    """Connects lazily; every method releases the GIL while Redis answers. Raises
    ``ConnectionError`` / ``TimeoutError`` naming the Redis address, ``ValueError`` for bad
    input or stored bytes that are not Feast's format."""

    def __new__(cls, config: RedisOnlineStoreConfig) -> RedisStoreClient: ...
    def start_near_cache(self) -> None: ...
    def near_cache_stats(self) -> dict[str, int] | None: ...
    def pipelining_stats(self) -> dict[str, int]: ...
    def write(
        self, plan: ViewPlan, rows: list[tuple[bytes, list[str], list[bytes], int]]
    ) -> tuple[int, int]: ...
    def write_arrow(self, plan: ViewPlan, batch: object) -> tuple[int, int] | None: ...
    def read(
        self, plan: ViewPlan, entity_keys: list[bytes]
    ) -> list[tuple[tuple[int, int] | None, list[bytes | None]]]: ...
    def read_response(self, plans: list[ViewPlan], columns: list[list[bytes]]) -> bytes: ...
    def read_columnar(
        self, plans: list[ViewPlan], entity_columns: list[list[list[Any]]]
    ) -> ColumnarAnswer | None: ...
    def delete(self, plan: ViewPlan) -> int: ...
    def delete_entities(self, plan: ViewPlan) -> int: ...
    def scan_iter(self, match: bytes) -> list[bytes]: ...

@final
class ColumnarAnswer:
    """The Arrow columns of a ``get_online_features`` answer: every view's features,
    then each view's event seconds."""

    @property
    def num_rows(self) -> int: ...
    def columns(self, with_event_seconds: bool) -> list[list[object]]: ...
    def record_batch(self) -> object: ...
    def feature_vectors(self) -> bytes: ...

@final
class Reply:
    """Hands Feast's app's answer back to the native server (called once)."""

    def __call__(self, status: int, headers: list[tuple[str, bytes]], body: bytes) -> None: ...

@final
class FeatureServer:
    """``feast-redis-rs serve``'s HTTP and gRPC server; requests it does not answer itself go to
    ``dispatch(id, method, path, headers, body, client, scheme, reply)``, and
    ``cancel(id)`` is told when that request's client went away."""

    def __new__(
        cls,
        options: ServerOptions,
        client: RedisStoreClient,
        dispatch: Callable[
            [int, str, str, list[tuple[str, bytes]], bytes, tuple[str, int], str, Reply], None
        ],
        cancel: Callable[[int], None],
        routes: list[str],
        version_metadata: bool,
        null_status: bool,
        feast_version: str,
        decide: Callable[[str, str | None, list[str], list[str]], float | None] | None,
        transform: Callable[
            [
                list[str],
                str | None,
                bool,
                list[tuple[str, str]],
                bytes,
                list[tuple[str, list[Any]]] | None,
            ],
            list[tuple[str, bytes]] | None,
        ]
        | None,
    ) -> FeatureServer: ...
    def update(
        self,
        views: list[ServedView],
        on_demand: list[ServedOnDemandView],
        services: list[tuple[str, list[ServedProjection]]],
        precomputed: list[ServedPrecomputed],
        writes: tuple[list[WritableView], list[tuple[str, list[str]]]],
    ) -> None: ...
    def keep_catalog(self) -> None: ...
    def set_stale(self, reason: str) -> None: ...
    def log(self, line: str) -> None: ...
    def run(self, ready: Callable[[str, int], None]) -> float | None: ...
    def stop(self) -> None: ...

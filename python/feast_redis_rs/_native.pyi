"""Type stub of the Rust extension module. Entity keys are passed as serialized
``feast.types.EntityKey`` protos; ``feast_redis_rs.encoding`` takes the proto objects."""

__version__: str

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
def check_connection_string(
    connection_string: str, redis_type: str = "redis", sentinel_master: str = "mymaster"
) -> None: ...

class RedisStoreClient:
    """Connects lazily; every method releases the GIL while Redis answers. Raises
    ``ConnectionError`` / ``TimeoutError`` naming the Redis address, ``ValueError`` for bad
    input or stored bytes that are not Feast's format."""

    def __init__(
        self,
        connection_string: str,
        redis_type: str = "redis",
        sentinel_master: str = "mymaster",
        *,
        connect_timeout: float | None = None,
        command_timeout: float | None = None,
        retries: int = 3,
        retry_backoff: float = 0.05,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        tls_check_hostname: bool | None = None,
    ) -> None: ...
    def write(
        self,
        project: str,
        view: str,
        entity_key_serialization_version: int,
        rows: list[tuple[bytes, list[str], list[bytes], int]],
        key_ttl_seconds: int | None,
        skip_dedup: bool,
    ) -> tuple[int, int]: ...
    def write_arrow(
        self,
        project: str,
        view: str,
        entity_key_serialization_version: int,
        batch: object,
        join_keys: list[tuple[str, str]],
        features: list[tuple[str, str]],
        timestamp_field: str,
        key_ttl_seconds: int | None,
        skip_dedup: bool,
    ) -> tuple[int, int] | None: ...
    def read(
        self,
        project: str,
        view: str,
        entity_key_serialization_version: int,
        features: list[str],
        entity_keys: list[bytes],
    ) -> list[tuple[tuple[int, int] | None, list[bytes | None]]]: ...
    def read_response(
        self,
        project: str,
        entity_key_serialization_version: int,
        views: list[tuple[str, list[str], list[str], list[bytes]]],
    ) -> bytes: ...
    def delete_table(
        self,
        project: str,
        entity_key_serialization_version: int,
        join_keys: list[str],
        view: str,
        features: list[str],
    ) -> int: ...
    def delete_entity_values(
        self, project: str, entity_key_serialization_version: int, join_keys: list[str]
    ) -> int: ...
    def scan_iter(self, match: bytes) -> list[bytes]: ...
    def hmget_count(self, reads: list[tuple[list[bytes], list[bytes]]]) -> int: ...
    def read_columns(
        self,
        project: str,
        entity_key_serialization_version: int,
        views: list[tuple[str, list[str], list[str], list[str], list[str], list[list[object]]]],
    ) -> ColumnarAnswer | None: ...

class ColumnarAnswer:
    """The Arrow columns of a ``get_online_features`` answer: every view's features,
    then each view's event seconds."""

    @property
    def num_rows(self) -> int: ...
    def columns(self) -> list[list[object]]: ...
    def record_batch(self) -> object: ...
    def feature_vectors(self) -> bytes: ...

"""``feast_redis_rs.RedisOnlineStore``: Feast's Redis online store with the Redis work,
the key encoding and the response building done in Rust, the GIL released meanwhile.

Keys, hash fields and values are byte-identical to what ``type: redis`` writes, so the
two stores read each other's data.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import pyarrow as pa
from feast import Entity, FeatureService, FeatureView, RepoConfig, utils
from feast.infra.online_stores.helpers import compute_versioned_name
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.online_stores.redis import RedisClient, RedisType
from feast.infra.online_stores.redis import RedisOnlineStore as StockRedisOnlineStore
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from feast.value_type import ValueType
from pydantic import (
    ConfigDict,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StrictStr,
    model_validator,
)

from feast_redis_rs import _native
from feast_redis_rs.encoding import event_time_micros
from feast_redis_rs.response import ArrowOnlineResponse

logger = logging.getLogger(__name__)

_PASSWORD = re.compile(r"(password\s*=)[^,]*")


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

    client: RedisClient = RedisClient.redis
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

    @model_validator(mode="after")
    def _check_connection_string(self) -> RedisOnlineStoreConfig:
        _native.check_connection_string(
            self.connection_string, self.redis_type.value, self.sentinel_master
        )
        return self

    def __repr_args__(self):
        for name, value in super().__repr_args__():
            if name == "connection_string":
                value = _PASSWORD.sub(r"\1<redacted>", value)
            yield name, value


def _versioned_name(table: FeatureView, config: RepoConfig) -> str:
    return compute_versioned_name(table, config.registry.enable_online_feature_view_versioning)


def _feature_names(table: FeatureView, requested_features: Sequence[str] | None) -> list[str]:
    return list(requested_features) if requested_features else [f.name for f in table.features]


def _event_time(seconds_nanos: tuple[int, int] | None) -> datetime:
    # Stock Feast goes through a float, so a timestamp is rounded to microseconds the same way.
    seconds, nanos = seconds_nanos or (0, 0)
    return datetime.fromtimestamp(seconds + nanos / 1_000_000_000.0, tz=timezone.utc)


def _check_join_keys(
    table_entity_values: dict[str, list[ValueProto]],
    entity_name_to_join_key_map: dict[str, str],
    join_key_values: dict[str, list[ValueProto]],
) -> None:
    """The check of ``feast.utils._get_unique_entities``, with its error."""
    expected = set(entity_name_to_join_key_map.values()) - {"__dummy_id"}
    missing = sorted(k for k in expected if k not in table_entity_values)
    empty = sorted(k for k in expected if not table_entity_values.get(k))
    if (missing or empty) and not any(table_entity_values.values()):
        raise KeyError(
            f"Missing join key values for keys: {missing}. "
            f"No values provided for keys: {empty}. "
            f"Provided join_key_values: {list(join_key_values.keys())}"
        )


_MAX_CACHED_PLANS = 256


@dataclass(frozen=True)
class _ViewPlan:
    table: FeatureView
    name: str
    features: list[str]
    dtypes: list[str]


@dataclass(frozen=True)
class _RequestPlan:
    """The registry-derived part of a columnar ``get_online_features``."""

    views: list[_ViewPlan]
    feature_names: list[str]
    seconds_columns: list[int]
    feature_view_metadata: list[tuple[str, int]]
    feature_types: dict[str, ValueType]

    @staticmethod
    def build(
        grouped_refs: list,
        versioning: bool,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> _RequestPlan | None:
        views, names, view_of_feature, metadata = [], [], [], []
        for view_index, (table, requested_features) in enumerate(grouped_refs):
            features = _feature_names(table, requested_features)
            dtypes = {f.name: f.dtype.to_value_type().name for f in table.features}
            if any(f not in dtypes for f in features):
                return None
            views.append(
                _ViewPlan(
                    table,
                    compute_versioned_name(table, versioning),
                    features,
                    [dtypes[f] for f in features],
                )
            )
            table_name = table.projection.name_to_use()
            names += [f"{table_name}__{f}" for f in features] if full_feature_names else features
            view_of_feature += [view_index] * len(features)
            if include_feature_view_version_metadata:
                clean_name = table.projection.name_alias or table.projection.name
                if clean_name not in [name for name, _ in metadata]:
                    metadata.append((clean_name, getattr(table, "current_version_number", 0) or 0))
        return _RequestPlan(
            views=views,
            feature_names=names,
            seconds_columns=[len(names) + v for v in view_of_feature],
            feature_view_metadata=metadata,
            feature_types=OnlineStore._build_feature_types(grouped_refs),
        )


class RedisOnlineStore(StockRedisOnlineStore):
    """Feast's Redis online store, byte-compatible with ``type: redis``, with a Rust core.

    Reads of every feature view of a ``get_online_features`` request go out in one
    pipeline per Redis node; writes are pipelined in chunks of ``write_batch_size``.
    See https://github.com/feast-dev/feast/blob/master/docs/specs/online_store_format.md
    for the data model, which this store shares with Feast's own.

    It subclasses Feast's store so that Feast's checks for a Redis store (versioned
    reads, the entity scan of ``precompute_feature_service``) see one; every method
    that touches Redis is overridden, and ``_get_client`` returns the Rust client, which
    offers the ``scan_iter`` Feast uses."""

    def __init__(self) -> None:
        super().__init__()
        self._client: _native.RedisStoreClient | None = None
        self._client_config: RedisOnlineStoreConfig | None = None
        self._plans: dict[tuple, tuple[tuple, _RequestPlan | None]] = {}

    @property
    def async_supported(self) -> SupportedAsyncMethods:
        return SupportedAsyncMethods(read=True, write=True)

    def _get_client(self, online_store_config: RedisOnlineStoreConfig) -> _native.RedisStoreClient:
        """The client for this config, built on first use (it connects lazily)."""
        if self._client is None or (
            self._client_config is not online_store_config
            and self._client_config != online_store_config
        ):
            if not isinstance(online_store_config, RedisOnlineStoreConfig):
                raise TypeError(
                    "feast_redis_rs.RedisOnlineStore needs online_store: type: "
                    f"feast_redis_rs.RedisOnlineStore, not {type(online_store_config).__name__}"
                )
            c = online_store_config
            self._client = _native.RedisStoreClient(
                c.connection_string,
                c.redis_type.value,
                c.sentinel_master,
                connect_timeout=c.connect_timeout_seconds,
                command_timeout=c.command_timeout_seconds,
                retries=c.retries,
                retry_backoff=c.retry_backoff_seconds,
                tls_ca_file=c.tls_ca_file,
                tls_cert_file=c.tls_cert_file,
                tls_key_file=c.tls_key_file,
                tls_check_hostname=c.tls_check_hostname,
            )
        self._client_config = online_store_config
        return self._client

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Writes a batch of feature rows to Redis.

        A row whose event time is not newer than the stored one (or than an earlier row of
        the batch for the same entity) is skipped unless ``skip_dedup``. ``progress`` is
        called with the number of rows handled after each chunk.

        Args:
            config: The config for the current feature store.
            table: Feature view to which these feature rows correspond.
            data: A list of quadruplets containing feature data. Each quadruplet contains an
                entity key, a dict containing feature values, an event timestamp for the row,
                and the created timestamp for the row if it exists.
            progress: Function to be called once a batch of rows is written to the online
                store, used to show progress.
        """
        online_config = config.online_store
        client = self._get_client(online_config)
        view = _versioned_name(table, config)
        rows_left = iter(data)
        while chunk := list(itertools.islice(rows_left, online_config.write_batch_size)):
            rows = [
                (
                    entity_key.SerializeToString(),
                    list(values),
                    [value.SerializeToString() for value in values.values()],
                    event_time_micros(event_time),
                )
                for entity_key, values, event_time, _ in chunk
            ]
            client.write(
                config.project,
                view,
                config.entity_key_serialization_version,
                rows,
                online_config.key_ttl_seconds or None,
                online_config.skip_dedup,
            )
            if progress:
                progress(len(chunk))

    def write_arrow(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: pa.Table | pa.RecordBatch,
        progress: Callable[[int], Any] | None = None,
    ) -> None:
        """Writes feature rows given as Arrow data, straight from Arrow to Redis in Rust:
        for Spark, Ray or any job that holds a partition of a feature view as Arrow.

        ``data`` has the view's join-key columns, its feature columns (named as the
        features) and its event-timestamp column (``batch_source.timestamp_field``). The
        stored bytes, the timestamp dedup and the TTL are those of ``online_write_batch``
        given the rows Feast's ``_convert_arrow_to_proto`` makes of the same data. A batch
        whose columns are not of the Arrow type this path maps for their dtype (say, an
        int64 feature held as float64) goes through Feast's conversion instead. Rows are
        written in chunks of ``write_batch_size``; ``progress`` is called per chunk.

        Args:
            config: The config for the current feature store.
            table: The feature view the rows belong to (as the registry has it).
            data: The rows.
            progress: Called with the number of rows handled after each chunk.
        """
        online_config = config.online_store
        client = self._get_client(online_config)
        view = _versioned_name(table, config)
        join_keys = {c.name: c.dtype.to_value_type() for c in table.entity_columns}
        features = [(f.name, f.dtype.to_value_type().name) for f in table.features]
        timestamp_field = table.batch_source.timestamp_field
        batches = (
            data.to_batches(online_config.write_batch_size)
            if isinstance(data, pa.Table)
            else [data]
        )
        for batch in batches:
            for start in range(0, batch.num_rows, online_config.write_batch_size):
                chunk = batch.slice(start, online_config.write_batch_size)
                written = client.write_arrow(
                    config.project,
                    view,
                    config.entity_key_serialization_version,
                    chunk,
                    [(name, value_type.name) for name, value_type in join_keys.items()],
                    features,
                    timestamp_field,
                    online_config.key_ttl_seconds or None,
                    online_config.skip_dedup,
                )
                if written is None:
                    logger.info(
                        "write_arrow: a column of %s is not of the Arrow type its dtype maps "
                        "to (e.g. int64 held as float64): converting it as Feast does",
                        view,
                    )
                    rows = utils._convert_arrow_to_proto(chunk, table, join_keys)
                    self.online_write_batch(config, table, rows, None)
                if progress:
                    progress(chunk.num_rows)

    async def online_write_batch_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        """Writes a batch of feature rows to Redis without blocking the event loop (the
        work runs in the default executor with the GIL released while Redis answers)."""
        await _in_executor(self.online_write_batch, config, table, data, progress)

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Reads feature values for the given entity keys.

        As with Feast's Redis store, an entity with no data gets the epoch as its event
        time and an empty ``Value`` for each feature.

        Args:
            config: The config for the current feature store.
            table: The feature view whose feature values should be read.
            entity_keys: The list of entity keys for which feature values should be read.
            requested_features: The list of features that should be read (all when empty).

        Returns:
            A list of the same length as entity_keys. Each item in the list is a tuple where
            the first item is the event timestamp for the row, and the second item is a dict
            mapping feature names to values, which are returned in proto format.
        """
        features = _feature_names(table, requested_features)
        rows = self._get_client(config.online_store).read(
            config.project,
            _versioned_name(table, config),
            config.entity_key_serialization_version,
            features,
            [entity_key.SerializeToString() for entity_key in entity_keys],
        )
        result: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for stored_ts, values in rows:
            feature_values = {
                name: ValueProto.FromString(value) if value else ValueProto()
                for name, value in zip(features, values, strict=False)
            }
            if feature_values:
                result.append((_event_time(stored_ts), feature_values))
            else:
                result.append((None, None))
        return result

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """``online_read`` without blocking the event loop."""
        return await _in_executor(self.online_read, config, table, entity_keys, requested_features)

    def get_online_features(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: list[dict[str, Any]] | Mapping[str, Sequence[Any]],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        """Reads features for entity rows, answered as Arrow columns decoded in Rust
        (``ArrowOnlineResponse``) when every feature has a plain dtype and every entity
        value a plain Python type; otherwise through Feast's own flow (on-demand views,
        request data, pre-computed services, other dtypes), still one Redis batch."""
        response = self._columnar_online_features(
            config,
            features,
            entity_rows,
            registry,
            project,
            full_feature_names,
            include_feature_view_version_metadata,
        )
        if response is not None:
            return response
        return super().get_online_features(
            config,
            features,
            entity_rows,
            registry,
            project,
            full_feature_names,
            include_feature_view_version_metadata,
        )

    async def get_online_features_async(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: list[dict[str, Any]] | Mapping[str, Sequence[Any]],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        """``get_online_features`` without blocking the event loop."""
        return await _in_executor(
            self.get_online_features,
            config,
            features,
            entity_rows,
            registry,
            project,
            full_feature_names,
            include_feature_view_version_metadata,
        )

    def _columnar_online_features(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: list[dict[str, Any]] | Mapping[str, Sequence[Any]],
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> ArrowOnlineResponse | None:
        if isinstance(features, FeatureService) and getattr(features, "precompute_online", False):
            return None
        columns = _entity_columns(entity_rows)
        if columns is None or len({len(v) for v in columns.values()}) > 1:
            return None
        request_context = utils._get_cached_request_context(
            registry, project, features, full_feature_names
        )
        (
            _,
            on_demand_views,
            entity_name_to_join_key_map,
            entity_type_map,
            join_keys_set,
            grouped_refs,
            _,
            needed_request_data,
            entityless_case,
        ) = request_context
        if on_demand_views or needed_request_data or entityless_case:
            return None
        join_key_values: dict[str, list[Any]] = {}
        for name, values in columns.items():
            if name in join_keys_set:
                join_key_values[name] = values
            elif name in entity_name_to_join_key_map:
                return None  # Feast's deprecated entity-name keys: its own flow warns.
        self._check_versioned_read_support(grouped_refs)
        plan = self._request_plan(
            request_context, config, full_feature_names, include_feature_view_version_metadata
        )
        if plan is None:
            return None

        views = []
        counts = []
        for view in plan.views:
            table_entity_values = utils._get_table_entity_values(
                view.table, entity_name_to_join_key_map, join_key_values
            )
            _check_join_keys(table_entity_values, entity_name_to_join_key_map, join_key_values)
            entity_types = [entity_type_map.get(k) for k in table_entity_values]
            if None in entity_types:
                return None
            views.append(
                (
                    view.name,
                    view.features,
                    view.dtypes,
                    list(table_entity_values),
                    [t.name for t in entity_types],
                    list(table_entity_values.values()),
                )
            )
            rows = min((len(v) for v in table_entity_values.values()), default=0)
            counts.append((view.table.name, len(view.features) * rows, rows))

        answer = self._get_client(config.online_store).read_columns(
            config.project, config.entity_key_serialization_version, views
        )
        if answer is None:
            return None
        _track_feature_statuses(counts)
        return ArrowOnlineResponse(
            entity_columns=join_key_values,
            entity_types=entity_type_map,
            feature_names=plan.feature_names,
            seconds_columns=plan.seconds_columns,
            answer=answer,
            feature_view_metadata=plan.feature_view_metadata,
            feature_types=plan.feature_types,
        )

    def _request_plan(
        self,
        request_context: tuple,
        config: RepoConfig,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> _RequestPlan | None:
        """What a request needs from the registry, cached while Feast's resolution of the
        feature list (``request_context``) stays the same object: Feast makes a new one
        when the registry refreshes."""
        versioning = config.registry.enable_online_feature_view_versioning
        key = (id(request_context), versioning, include_feature_view_version_metadata)
        cached = self._plans.get(key)
        if cached is not None and cached[0] is request_context:
            return cached[1]
        plan = _RequestPlan.build(
            request_context[5],
            versioning,
            full_feature_names,
            include_feature_view_version_metadata,
        )
        if len(self._plans) >= _MAX_CACHED_PLANS:
            self._plans.clear()
        self._plans[key] = (request_context, plan)
        return plan

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs,
        join_key_values,
        entity_name_to_join_key_map,
        online_features_response,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Reads every feature view of a request in one batch (one pipeline per Redis
        node) and merges the serialized feature vectors, built in Rust, into the
        response at once."""
        columns: dict[int, bytes] = {}

        def column_bytes(values: list[ValueProto]) -> bytes:
            # One C-level serialization per join-key column, shared by the views using it.
            key = id(values)
            if key not in columns:
                columns[key] = RepeatedValue(val=values).SerializeToString()
            return columns[key]

        metadata = online_features_response.metadata
        views = []
        counts = []
        for table, requested_features in grouped_refs:
            table_entity_values = utils._get_table_entity_values(
                table, entity_name_to_join_key_map, join_key_values
            )
            _check_join_keys(table_entity_values, entity_name_to_join_key_map, join_key_values)
            features = _feature_names(table, requested_features)
            view = _versioned_name(table, config)
            views.append(
                (
                    view,
                    features,
                    list(table_entity_values),
                    [column_bytes(v) for v in table_entity_values.values()],
                )
            )
            rows = min((len(v) for v in table_entity_values.values()), default=0)
            counts.append((table.name, len(features) * rows, rows))

            # The response columns of stock Feast, including its `_ts:{view}` column,
            # which get_online_features drops before answering.
            table_name = table.projection.name_to_use()
            names = [*features, f"_ts:{view}"]
            metadata.feature_names.val.extend(
                [f"{table_name}__{n}" for n in names] if full_feature_names else names
            )
            if include_feature_view_version_metadata:
                clean_name = table.projection.name_alias or table.projection.name
                if clean_name not in [m.name for m in metadata.feature_view_metadata]:
                    entry = metadata.feature_view_metadata.add()
                    entry.name = clean_name
                    entry.version = getattr(table, "current_version_number", 0) or 0

        if not views:
            return
        online_features_response.MergeFromString(
            self._get_client(config.online_store).read_response(
                config.project, config.entity_key_serialization_version, views
            )
        )
        _track_feature_statuses(counts)

    async def _read_features_per_fv_async(
        self,
        config: RepoConfig,
        grouped_refs,
        join_key_values,
        entity_name_to_join_key_map,
        online_features_response,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """``_read_features_per_fv`` without blocking the event loop."""
        await _in_executor(
            self._read_features_per_fv,
            config,
            grouped_refs,
            join_key_values,
            entity_name_to_join_key_map,
            online_features_response,
            full_feature_names,
            include_feature_view_version_metadata,
        )

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ):
        """Deletes the data of feature views that are no longer in use, when
        ``full_scan_for_deletion`` (the default).

        Args:
            config: Feast config
            tables_to_delete: Feature views to delete
            tables_to_keep: Feature views to keep
            entities_to_delete: Entities to delete
            entities_to_keep: Entities to keep
            partial: Whether to do a partial update
        """
        if config.online_store.full_scan_for_deletion:
            for table in tables_to_delete:
                self.delete_table(config, table)

    def teardown(
        self,
        config: RepoConfig,
        tables: Sequence[FeatureView],
        entities: Sequence[Entity],
    ):
        """Deletes every key of the entities of ``tables`` (all their views' data)."""
        for join_keys in {tuple(table.join_keys) for table in tables}:
            self.delete_entity_values(config, list(join_keys))

    def delete_table(self, config: RepoConfig, table: FeatureView) -> int:
        """Deletes a feature view's data from every master: a hash that holds only this
        view is deleted, otherwise the view's fields are removed from it.

        Returns:
            How many entity hashes held the view.
        """
        return self._get_client(config.online_store).delete_table(
            config.project,
            config.entity_key_serialization_version,
            list(table.join_keys),
            _versioned_name(table, config),
            [f.name for f in table.features],
        )

    def delete_entity_values(self, config: RepoConfig, join_keys: list[str]) -> int:
        """Deletes the hashes of every entity with these join keys, on every master.

        Returns:
            How many hashes were deleted.
        """
        return self._get_client(config.online_store).delete_entity_values(
            config.project, config.entity_key_serialization_version, list(join_keys)
        )


def _entity_columns(
    entity_rows: list[dict[str, Any]] | Mapping[str, Sequence[Any]],
) -> dict[str, list[Any]] | None:
    """The request's columns as lists, or None for shapes left to Feast's own flow."""
    if isinstance(entity_rows, list):
        if not entity_rows:
            return None
        names = list(entity_rows[0])
        try:
            columns = {name: [row[name] for row in entity_rows] for name in names}
        except (KeyError, TypeError):
            return None
        if any(len(row) != len(names) for row in entity_rows):
            return None
        return columns
    if isinstance(entity_rows, Mapping) and all(isinstance(v, list) for v in entity_rows.values()):
        return dict(entity_rows)
    return None


def _track_feature_statuses(counts: list[tuple[str, int, int]]) -> None:
    """Feast's feature-status metrics, as its own response building records them."""
    try:
        from feast.metrics import track_feature_statuses

        for name, present, not_found in counts:
            track_feature_statuses(name, present, not_found)
    except Exception:
        pass


async def _in_executor(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(function, *args)
    )

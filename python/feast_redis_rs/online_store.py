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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from feast import Entity, FeatureService, FeatureView, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStore as StockRedisOnlineStore
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_redis_rs import _feast, _native
from feast_redis_rs.config import RedisOnlineStoreConfig
from feast_redis_rs.encoding import event_time_micros
from feast_redis_rs.plans import Plans, feature_counts, feature_names, view_columns
from feast_redis_rs.response import ArrowOnlineResponse

logger = logging.getLogger(__name__)

__all__ = ["RedisOnlineStore", "RedisOnlineStoreConfig"]


def _event_time(seconds_nanos: tuple[int, int] | None) -> datetime:
    # Stock Feast goes through a float, so a timestamp is rounded to microseconds the same way.
    seconds, nanos = seconds_nanos or (0, 0)
    return datetime.fromtimestamp(seconds + nanos / 1_000_000_000.0, tz=timezone.utc)


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
        self._plans = Plans()

    def __getstate__(self) -> dict[str, Any]:
        # Connections and plans are native state and belong to one process: a pickled
        # store (shipped to a Ray, Spark or multiprocessing worker) leaves them behind and
        # reconnects on first use where it is unpickled.
        state = self.__dict__.copy()
        state.update(_client=None, _client_config=None, _plans=Plans())
        return state

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
            client = _native.RedisStoreClient(online_store_config)
            if online_store_config.near_cache is not None:
                client.start_near_cache()
            self._client = client
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
        the batch for the same entity) is skipped unless ``skip_dedup``; the check and the
        write are one atomic step on the server, so racing writers keep the newest row.
        ``progress`` is called with the number of rows handled after each chunk.

        Args:
            config: The config for the current feature store.
            table: Feature view to which these feature rows correspond.
            data: A list of quadruplets containing feature data. Each quadruplet contains an
                entity key, a dict containing feature values, an event timestamp for the row,
                and the created timestamp for the row if it exists.
            progress: Function to be called once a batch of rows is written to the online
                store, used to show progress.
        """
        client = self._get_client(config.online_store)
        plan = self._plans.view(config, table)
        rows = (
            (
                entity_key.SerializeToString(),
                list(values),
                [value.SerializeToString() for value in values.values()],
                event_time_micros(event_time),
            )
            for entity_key, values, event_time, _ in data
        )
        for chunk in _write_chunks(rows, config.online_store.write_batch_size):
            client.write(plan, chunk)
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
        _check_event_times(table, data)
        client = self._get_client(config.online_store)
        plan = self._plans.view(config, table)
        join_keys = {c.name: c.dtype.to_value_type() for c in table.entity_columns}
        size = config.online_store.write_batch_size
        for chunk in _arrow_chunks(data, list(join_keys), size):
            if client.write_arrow(plan, chunk) is None:
                logger.info(
                    "write_arrow: a column of %s is not of the Arrow type its dtype maps "
                    "to (e.g. int64 held as float64): converting it as Feast does",
                    table.name,
                )
                rows = _feast.arrow_to_rows(chunk, table, join_keys)
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
        client = self._get_client(config.online_store)
        features = feature_names(table, requested_features)
        rows = client.read(
            self._plans.view(config, table, features),
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
        return _feast.stock_get_online_features(
            self,
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
        if columns is None:
            return None
        rows = {len(v) for v in columns.values()}
        if len(rows) != 1 or 0 in rows:
            return None
        context = _feast.request_context(registry, project, features, full_feature_names)
        if context.on_demand_views or context.needed_request_data or context.entityless_case:
            return None
        _feast.check_versioned_read_support(self, context.grouped_refs)
        client = self._get_client(config.online_store)
        plan = self._plans.request(
            config, context.grouped_refs, full_feature_names, include_feature_view_version_metadata
        )
        route = plan.route(context.join_keys, context.entity_name_to_join_key_map, tuple(columns))
        if route is None:
            return None
        statuses_on = _feast.feature_status_metrics_on()
        timed = _feast.store_read_metrics_on()
        started = time.monotonic() if timed else 0.0
        answer = client.read_columnar(
            [view.plan for view in plan.views],
            [[columns[name] for name in sources] for sources in route.view_sources],
        )
        if answer is None:
            return None
        if timed:
            _feast.record_store_read(time.monotonic() - started)
        if statuses_on:
            _feast.record_feature_statuses(plan.feature_counts(rows.pop()))
        join_key_values = {name: columns[name] for name in route.join_key_columns}
        return ArrowOnlineResponse(
            entity_columns=join_key_values,
            entity_types=context.entity_type_map,
            feature_names=plan.feature_names,
            seconds_columns=plan.seconds_columns,
            answer=answer,
            feature_view_metadata=plan.feature_view_metadata,
            feature_types=plan.feature_types,
        )

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
        if not grouped_refs:
            return
        client = self._get_client(config.online_store)
        plan = self._plans.request(
            config, grouped_refs, full_feature_names, include_feature_view_version_metadata
        )
        serialized: dict[int, bytes] = {}

        def column_bytes(values: list[ValueProto]) -> bytes:
            # One C-level serialization per join-key column, shared by the views using it.
            key = id(values)
            if key not in serialized:
                serialized[key] = RepeatedValue(val=values).SerializeToString()
            return serialized[key]

        plans, columns = [], []
        view_values = []
        for view in plan.views:
            values = view_columns(view, entity_name_to_join_key_map, join_key_values)
            view_values.append(values)
            if set(values) == set(view.join_keys):
                plans.append(view.plan)
                columns.append([column_bytes(values[k]) for k in view.join_keys])
            else:
                # Read with the keys the request gives, as Feast does.
                plans.append(self._plans.view(config, view.table, view.features, list(values)))
                columns.append([column_bytes(v) for v in values.values()])
        metadata = online_features_response.metadata
        metadata.feature_names.val.extend(plan.proto_feature_names)
        for name, version in plan.feature_view_metadata:
            entry = metadata.feature_view_metadata.add()
            entry.name = name
            entry.version = version
        online_features_response.MergeFromString(client.read_response(plans, columns))
        if _feast.feature_status_metrics_on():
            _feast.record_feature_statuses(feature_counts(plan, view_values))

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
        client = self._get_client(config.online_store)
        return client.delete(self._plans.view(config, table))

    def delete_entity_values(self, config: RepoConfig, join_keys: list[str]) -> int:
        """Deletes the hashes of every entity with these join keys, on every master.

        Returns:
            How many hashes were deleted.
        """
        client = self._get_client(config.online_store)
        return client.delete_entities(self._plans.entities(config, list(join_keys)))


def _chunk_lengths(group_sizes: Iterable[int], size: int) -> Iterator[int]:
    """Chunks of about ``size`` rows that never split a group (a group larger than
    ``size`` is a chunk of its own)."""
    chunk = 0
    for group in group_sizes:
        if chunk and chunk + group > size:
            yield chunk
            chunk = 0
        chunk += group
    if chunk:
        yield chunk


def _write_chunks(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    """``rows`` (serialized entity key first) in chunks of ``size``. Before Feast 0.66
    each row of a batch is checked against what was stored before the whole batch, so
    an entity's rows are written together, in order, in one chunk."""
    if _feast.IN_BATCH_ORDERING:
        rows = iter(rows)
        while chunk := list(itertools.islice(rows, size)):
            yield chunk
        return
    by_entity: dict[bytes, list[tuple]] = {}
    for row in rows:
        by_entity.setdefault(row[0], []).append(row)
    grouped = list(itertools.chain.from_iterable(by_entity.values()))
    start = 0
    for length in _chunk_lengths(map(len, by_entity.values()), size):
        yield grouped[start : start + length]
        start += length


def _arrow_chunks(
    data: pa.Table | pa.RecordBatch, join_keys: list[str], size: int
) -> Iterator[pa.Table | pa.RecordBatch]:
    """``data`` in chunks of ``size`` rows, an entity's rows in one chunk before Feast
    0.66 (as ``_write_chunks``)."""
    by_entity: dict[tuple, list[int]] = {}
    if not _feast.IN_BATCH_ORDERING:
        keys = zip(*(data.column(name).to_pylist() for name in join_keys), strict=True)
        for index, key in enumerate(keys):
            by_entity.setdefault(key, []).append(index)
    if _feast.IN_BATCH_ORDERING or len(by_entity) == data.num_rows:
        # The rows as they come (also when no entity repeats before 0.66).
        batches = data.to_batches(size) if isinstance(data, pa.Table) else [data]
        for batch in batches:
            for start in range(0, batch.num_rows, size):
                yield batch.slice(start, size)
        return
    grouped = data.take(list(itertools.chain.from_iterable(by_entity.values())))
    if isinstance(grouped, pa.Table):
        grouped = grouped.combine_chunks().to_batches()[0] if grouped.num_rows else grouped
    start = 0
    for length in _chunk_lengths(map(len, by_entity.values()), size):
        yield grouped.slice(start, length)
        start += length


def _check_event_times(view: FeatureView, data: pa.Table | pa.RecordBatch) -> None:
    """Refuses event times that neither path can write right: numbers (Feast's
    conversion reads any integer as nanoseconds since the epoch, so epoch seconds would
    be stored as 1970) and nulls (every row needs one)."""
    name = view.batch_source.timestamp_field
    if name not in data.schema.names:
        return  # the write names the missing column, with the view
    column = data.column(name)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        raise ValueError(
            f"write_arrow: the event-time column '{name}' of view '{view.name}' is "
            f"{column.type}; give it an Arrow timestamp type (for epoch seconds, "
            f"pa.array(values, pa.timestamp('s', tz='UTC')) or pyarrow.compute.cast): a "
            "number does not say its unit"
        )
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise ValueError(
            f"write_arrow: the event-time column '{name}' of view '{view.name}' is null "
            f"at row {row}; every row needs an event time (nothing was written)"
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
            # Per-row work in C (map, itemgetter): a Python loop costs ~0.1 ms at 1,000 rows.
            if set(map(len, entity_rows)) != {len(names)}:
                return None
            return {name: list(map(itemgetter(name), entity_rows)) for name in names}
        except (KeyError, TypeError):
            return None
    if isinstance(entity_rows, Mapping) and all(isinstance(v, list) for v in entity_rows.values()):
        return dict(entity_rows)
    return None


async def _in_executor(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(function, *args)
    )

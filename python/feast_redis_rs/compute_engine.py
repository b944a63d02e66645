"""``feast_redis_rs.RedisComputeEngine``: Feast's local compute engine with the online
write going from Arrow straight into Redis in Rust, through ``RedisOnlineStore.write_arrow``.

A plain feature view with a local parquet source is streamed: the latest row per entity
in the window is found from the key and time columns, then record batches of the rows
are read and written one at a time, so memory holds the keys and one batch, not the
table. Other views run Feast's local plan (offline read, latest row per entity,
transformations, validation) with that same Arrow write at the end.

In ``feature_store.yaml``::

    batch_engine:
      type: feast_redis_rs.RedisComputeEngine
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.common.materialization_job import (
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.dag.context import ColumnInfo, ExecutionContext
from feast.infra.compute_engines.feature_builder import FeatureBuilder
from feast.infra.compute_engines.local.arrow_table_value import ArrowTableValue
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.feature_builder import LocalFeatureBuilder
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.compute_engines.local.nodes import LocalOutputNode, LocalSourceReadNode
from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from pyarrow.fs import LocalFileSystem

from feast_redis_rs import _feast
from feast_redis_rs.online_store import RedisOnlineStore

logger = logging.getLogger(__name__)

_SCAN_BATCH_ROWS = 65_536


class RedisComputeEngineConfig(FeastConfigBaseModel):
    """Config of ``feast_redis_rs.RedisComputeEngine``."""

    type: Literal["feast_redis_rs.RedisComputeEngine"] = "feast_redis_rs.RedisComputeEngine"
    """Batch engine type selector"""

    backend: str | None = None
    """DataFrame backend of the local engine (``pandas``, ``polars``); inferred by default"""


def _time_columns(info: ColumnInfo) -> list[str]:
    """The event-time column, then the created-time column when there is one."""
    return [info.ts_col] + ([info.created_ts_col] if info.created_ts_col else [])


class Piece(NamedTuple):
    """A row group of a parquet file: what a worker of a distributed engine reads."""

    file: str
    row_group: int


class ParquetScan:
    """A local parquet ``FileSource`` of the file offline store, read with pyarrow
    instead of dask: the rows Feast's read gives (event time within ``[start, end]``,
    tz-naive times taken as UTC), in scan order, renamed by the field mapping."""

    def __init__(
        self, dataset: ds.Dataset, info: ColumnInfo, start: datetime, end: datetime
    ) -> None:
        self.dataset = dataset
        self.info = info
        self.timestamps = _time_columns(info)
        self.columns = list(dict.fromkeys([*info.join_keys, *info.feature_cols, *self.timestamps]))
        self.event_time_tz = dataset.schema.field(info.ts_col).type.tz is not None
        field = ds.field(info.ts_col)
        self.filter = (field >= self._time_bound(start)) & (field <= self._time_bound(end))

    @classmethod
    def of(
        cls,
        context: ExecutionContext,
        source: DataSource,
        info: ColumnInfo,
        start: datetime | None,
        end: datetime | None,
    ) -> ParquetScan | None:
        """The scan, or None when Feast's own read is needed: another offline store or
        source, remote files, no join keys, every column wanted (transformations)."""
        config = context.repo_config
        if not (
            isinstance(config.offline_store, DaskOfflineStoreConfig)
            and not config.materialization_config.pull_latest_features
            and isinstance(source, FileSource)
            and isinstance(source.file_format, (ParquetFormat, type(None)))
            and not source.file_options.s3_endpoint_override
            and not _feast.file_source_credentials(source)
            and info.join_keys
            and info.feature_cols
            and start
            and end
        ):
            return None
        path = str(FileSource.get_uri_for_file_path(config.repo_path, source.file_options.uri))
        if "://" in path:
            return None
        dataset = ds.dataset(path, format="parquet")
        schema = dataset.schema
        timestamps = _time_columns(info)
        wanted = [*info.join_keys, *info.feature_cols, *timestamps]
        if any(name not in schema.names for name in wanted) or any(
            not pa.types.is_timestamp(schema.field(name).type) for name in timestamps
        ):
            return None
        return cls(dataset, info, start, end)

    def batches(
        self, columns: list[str], batch_size: int, piece: Piece | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The rows of the scan (or of one piece of it), in scan order."""
        source: ds.Dataset | ds.Fragment = self.dataset if piece is None else self.fragment(piece)
        # One thread: both passes of a streamed materialization see rows in one order;
        # no read-ahead: memory holds the batch at hand.
        return source.to_batches(
            columns=columns,
            filter=self.filter,
            batch_size=batch_size,
            batch_readahead=0,
            fragment_readahead=0,
            fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
            use_threads=False,
        )

    def pieces(self) -> list[Piece]:
        """The scan's row groups, in scan order, as (file, row group) pairs."""
        return [
            Piece(fragment.path, group.id)
            for fragment in self.dataset.get_fragments()
            for group in fragment.row_groups
        ]

    def fragment(self, piece: Piece) -> ds.Fragment:
        return ds.ParquetFileFormat().make_fragment(
            piece.file, LocalFileSystem(), row_groups=[piece.row_group]
        )

    def keys_and_times(self, piece: Piece | None = None) -> pa.Table:
        """The key and time columns of the scan (or of a piece of it)."""
        names = list(dict.fromkeys([*self.info.join_keys, *self.timestamps]))
        return pa.Table.from_batches(
            list(self.batches(names, _SCAN_BATCH_ROWS, piece)),
            schema=pa.schema([self.dataset.schema.field(n) for n in names]),
        )

    def take(
        self, batches: Iterable[pa.RecordBatch], positions: np.ndarray
    ) -> Iterator[pa.RecordBatch | pa.Table]:
        """Of consecutive ``batches`` of the scan from its first row, the rows at the sorted
        ``positions``, normalized: a batch at a time. Stops reading after the last one."""
        position, end = 0, positions[-1] + 1 if len(positions) else 0
        for batch in batches:
            if position >= end:
                break
            rows = batch.num_rows
            low, high = np.searchsorted(positions, [position, position + rows])
            chosen = batch.take(pa.array(positions[low:high] - position))
            position += rows
            if chosen.num_rows:
                yield self.normalize(chosen)

    def table(self) -> pa.Table:
        """Every column, sorted by event then created time (as Feast's read sorts)."""
        table = self.dataset.to_table(columns=self.columns, filter=self.filter)
        order = [(name, "ascending") for name in self.timestamps]
        return self.normalize(table).sort_by(order)

    def normalize(self, data: pa.Table | pa.RecordBatch) -> pa.Table | pa.RecordBatch:
        """UTC timestamps, columns renamed by the field mapping."""
        for name in self.timestamps:
            index = data.schema.get_field_index(name)
            if index >= 0 and data.schema.field(index).type.tz is None:
                data = data.set_column(index, name, pc.assume_timezone(data[name], "UTC"))
        mapping = self.info.field_mapping
        if mapping:
            data = data.rename_columns([mapping.get(c, c) for c in data.schema.names])
        return data

    def latest_rows(self) -> np.ndarray:
        """Scan positions of the latest row of each entity (by event time, then created
        time), sorted: the rows Feast's dedup keeps. Only the key and time columns are
        held in memory."""
        return self.latest_positions(self.keys_and_times())

    def since(self, when: datetime) -> None:
        """Leaves out the rows before ``when`` (Feast's Ray engine keeps the last ttl)."""
        self.filter &= ds.field(self.info.ts_col) >= self._time_bound(when)

    def latest_positions(self, rows: pa.Table) -> np.ndarray:
        """Positions in ``rows`` of the latest row of each entity, sorted."""
        rows = rows.append_column("__position", pa.array(np.arange(rows.num_rows)))
        rows = rows.sort_by([(name, "descending") for name in self.timestamps])
        latest = rows.group_by(self.info.join_keys, use_threads=False).aggregate(
            [("__position", "first")]
        )
        return np.sort(latest["__position_first"].to_numpy())

    def _time_bound(self, when: datetime) -> pa.Scalar:
        """``when`` as a scalar comparable with the event-time column (UTC, or tz-naive
        UTC when the column is tz-naive)."""
        bound = pa.scalar(when, pa.timestamp("us", tz="UTC"))
        return bound if self.event_time_tz else bound.cast(pa.timestamp("us"))

    def __getstate__(self) -> dict:
        # Ray's workers get the selection, and open their pieces, not the dataset.
        return {**self.__dict__, "dataset": None}


class _ParquetSourceReadNode(LocalSourceReadNode):
    """The local engine's source read, with pyarrow for a local parquet source (see
    ``ParquetScan``); any other source: Feast's own read."""

    def execute(self, context: ExecutionContext) -> ArrowTableValue:
        scan = ParquetScan.of(
            context, self.source, self.column_info, self.start_time, self.end_time
        )
        if scan is None:
            return super().execute(context)
        table = scan.table()
        logger.debug("read %s with pyarrow: %d rows", self.source.path, table.num_rows)
        return ArrowTableValue(data=table)


def streamable_scan(
    context: ExecutionContext, builder: FeatureBuilder, task: MaterializationTask
) -> ParquetScan | None:
    """The scan of a plain feature view with a local parquet source, whose latest rows per
    entity can be streamed into ``RedisOnlineStore.write_arrow``; None for views that need
    Feast's plan: transformations, aggregations, filters, validation, derived views, offline
    writes, other stores, and tasks that want every row rather than the latest per
    entity."""
    view = task.feature_view
    if (
        not task.only_latest
        or not view.online
        or view.offline
        or not isinstance(context.online_store, RedisOnlineStore)
        or getattr(view, "feature_transformation", None)
        or getattr(view, "aggregations", None)
        or getattr(view, "filter", None)
        or getattr(view, "enable_validation", False)
        or builder.dag_root.inputs
    ):
        return None
    return ParquetScan.of(
        context, view.source, builder.get_column_info(view), task.start_time, task.end_time
    )


def _stream_to_redis(
    context: ExecutionContext, builder: _ArrowFeatureBuilder, task: MaterializationTask
) -> bool:
    """Materializes a plain feature view with a local parquet source by streaming:
    a first pass over the key and time columns finds each entity's latest row, a second
    reads record batches of every column and writes the chosen rows of each batch with
    ``write_arrow``. Memory holds the key columns and one batch, not the table. False
    (nothing done) for views ``streamable_scan`` leaves to Feast's plan."""
    scan = streamable_scan(context, builder, task)
    if scan is None:
        return False
    view, online_store = task.feature_view, context.online_store
    batch_size = context.repo_config.online_store.write_batch_size
    latest = scan.latest_rows()
    for rows in scan.take(scan.batches(scan.columns, batch_size), latest):
        online_store.write_arrow(context.repo_config, view, rows)
    logger.debug("streamed %s from %s: %d rows kept", view.name, view.source.path, len(latest))
    return True


class _ArrowOutputNode(LocalOutputNode):
    """The local engine's output node, writing online rows as Arrow when the online
    store is ``feast_redis_rs.RedisOnlineStore`` (any other store: Feast's own write)."""

    def execute(self, context: ExecutionContext) -> ArrowTableValue:
        online_store = context.online_store
        if not (self.feature_view.online and isinstance(online_store, RedisOnlineStore)):
            return super().execute(context)
        table = self.get_single_table(context).data
        output = ArrowTableValue(data=table)
        context.node_outputs[self.name] = output
        if table.num_rows == 0:
            return output
        online_store.write_arrow(context.repo_config, self.feature_view, table)
        if self.feature_view.offline:
            context.offline_store.offline_write_batch(
                config=context.repo_config,
                feature_view=self.feature_view,
                table=table,
                progress=lambda _: None,
            )
        return output


class _ArrowFeatureBuilder(LocalFeatureBuilder):
    def build_source_node(self, view):
        node = _ParquetSourceReadNode(
            "source",
            view.source,
            self.get_column_info(view),
            self.task.start_time,
            self.task.end_time,
        )
        self.nodes.append(node)
        return node

    def build_output_nodes(self, view, input_node):
        node = _ArrowOutputNode("output", self.dag_root.view, inputs=[input_node])
        self.nodes.append(node)
        return node


class RedisComputeEngine(LocalComputeEngine):
    """Feast's local compute engine, with online writes from Arrow in Rust."""

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs
    ) -> LocalMaterializationJob:
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        context = self.get_execution_context(registry, task)
        try:
            backend = _feast.local_backend(self, context)
            builder = _ArrowFeatureBuilder(registry, task, backend=backend)
            if not _stream_to_redis(context, builder, task):
                builder.build().execute(context)
        except Exception as error:
            return LocalMaterializationJob(
                job_id=job_id, status=MaterializationJobStatus.ERROR, error=error
            )
        return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)

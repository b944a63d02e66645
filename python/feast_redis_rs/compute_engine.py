"""``feast_redis_rs.RedisComputeEngine``: Feast's local compute engine (offline read,
latest row per entity in the window, validation) with the online write going from
Arrow straight into Redis in Rust, through ``RedisOnlineStore.write_arrow``.

In ``feature_store.yaml``::

    batch_engine:
      type: feast_redis_rs.RedisComputeEngine
"""

from __future__ import annotations

import logging
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from feast.data_format import ParquetFormat
from feast.infra.common.materialization_job import (
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.dag.context import ExecutionContext
from feast.infra.compute_engines.local.arrow_table_value import ArrowTableValue
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.feature_builder import LocalFeatureBuilder
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.compute_engines.local.nodes import LocalOutputNode, LocalSourceReadNode
from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel

from feast_redis_rs.online_store import RedisOnlineStore

logger = logging.getLogger(__name__)


class RedisComputeEngineConfig(FeastConfigBaseModel):
    """Config of ``feast_redis_rs.RedisComputeEngine``."""

    type: Literal["feast_redis_rs.RedisComputeEngine"] = "feast_redis_rs.RedisComputeEngine"
    """Batch engine type selector"""

    backend: str | None = None
    """DataFrame backend of the local engine (``pandas``, ``polars``); inferred by default"""


class _ParquetSourceReadNode(LocalSourceReadNode):
    """The local engine's source read for a local parquet ``FileSource`` of the file
    offline store, with pyarrow instead of dask: the same rows (event time within
    ``[start, end]``, tz-naive times taken as UTC) and columns, renamed by the field
    mapping. Any other source, a view without join keys or a transformation that needs
    every column: Feast's own read."""

    def execute(self, context: ExecutionContext) -> ArrowTableValue:
        table = self._read_parquet(context)
        if table is None:
            return super().execute(context)
        if self.column_info.field_mapping:
            mapping = self.column_info.field_mapping
            table = table.rename_columns([mapping.get(c, c) for c in table.column_names])
        return ArrowTableValue(data=table)

    def _read_parquet(self, context: ExecutionContext) -> pa.Table | None:
        source, info = self.source, self.column_info
        if not (
            isinstance(context.repo_config.offline_store, DaskOfflineStoreConfig)
            and not context.repo_config.materialization_config.pull_latest_features
            and isinstance(source, FileSource)
            and isinstance(source.file_format, (ParquetFormat, type(None)))
            and not source.file_options.s3_endpoint_override
            and not source.resolve_credentials()
            and info.join_keys
            and info.feature_cols
            and self.start_time
            and self.end_time
        ):
            return None
        path = FileSource.get_uri_for_file_path(
            repo_path=context.repo_config.repo_path, uri=source.file_options.uri
        )
        if "://" in str(path):
            return None
        timestamps = [info.ts_col] + ([info.created_ts_col] if info.created_ts_col else [])
        columns = list(dict.fromkeys([*info.join_keys, *info.feature_cols, *timestamps]))
        dataset = ds.dataset(str(path), format="parquet")
        if any(
            name not in dataset.schema.names
            or (name in timestamps and not pa.types.is_timestamp(dataset.schema.field(name).type))
            for name in columns
        ):
            return None
        event_time = dataset.schema.field(info.ts_col).type
        window = [
            pa.scalar(t, pa.timestamp("us", tz="UTC")) for t in (self.start_time, self.end_time)
        ]
        if event_time.tz is None:
            window = [w.cast(pa.timestamp("us")) for w in window]
        field = ds.field(info.ts_col)
        table = dataset.to_table(
            columns=columns, filter=(field >= window[0]) & (field <= window[1])
        )
        for name in timestamps:
            kind = table.schema.field(name).type
            if kind.tz is None:
                index = table.schema.get_field_index(name)
                utc = pc.assume_timezone(table.column(name), "UTC")
                table = table.set_column(index, name, utc)
        order = [(info.ts_col, "ascending")] + [(c, "ascending") for c in timestamps[1:]]
        logger.debug("read %s with pyarrow: %d rows", path, table.num_rows)
        return table.sort_by(order)


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
            plan = _ArrowFeatureBuilder(registry, task, backend=self._get_backend(context)).build()
            plan.execute(context)
        except Exception as error:
            return LocalMaterializationJob(
                job_id=job_id, status=MaterializationJobStatus.ERROR, error=error
            )
        return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)

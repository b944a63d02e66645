"""``feast_redis_rs.RedisSparkComputeEngine``: Feast's Spark compute engine (``spark.engine``)
whose write step sends each partition's Arrow batches to Redis in Rust, from the Python
worker of the executor that holds the partition.

Feast's own write step turns every batch into protos row by row and builds a new online
store (a new connection) for every batch. Here ``mapInArrow`` hands each batch, as Spark
cuts it (``spark.sql.execution.arrow.maxRecordsPerBatch``), to
``RedisOnlineStore.write_arrow``: the bytes, dedup (newest event time wins, atomically) and
TTL of ``online_write_batch``. A worker process unpacks the store once and keeps its
connection for every later partition of the job. In cluster mode each worker routes its
keys by slot, so N executors' workers write to M masters in parallel. Nothing is sent back
to the driver but a count. A failed write fails the job. Everything before the write (read,
filter, dedup, aggregation, transformations, validation) is Feast's engine; every option of
``spark.engine`` keeps its meaning, and ``partitions`` (Feast's number of partitions to
write with, 0 = as they come) applies to this write step too.

In ``feature_store.yaml``::

    batch_engine:
      type: feast_redis_rs.RedisSparkComputeEngine
      spark_conf:
        spark.master: spark://head:7077   # or local[*], yarn, k8s://...
      partitions: 16
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, Literal

import pyarrow as pa
from feast.infra.common.materialization_job import (
    MaterializationJob,
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.dag.context import ExecutionContext
from feast.infra.compute_engines.dag.model import DAGFormat
from feast.infra.compute_engines.dag.value import DAGValue
from feast.infra.compute_engines.spark.compute import (
    SparkComputeEngine,
    SparkComputeEngineConfig,
)
from feast.infra.compute_engines.spark.feature_builder import SparkFeatureBuilder
from feast.infra.compute_engines.spark.job import SparkMaterializationJob
from feast.infra.compute_engines.spark.nodes import SparkWriteNode
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.infra.registry.base_registry import BaseRegistry

from feast_redis_rs import _distributed
from feast_redis_rs.online_store import RedisOnlineStore


class RedisSparkComputeEngineConfig(SparkComputeEngineConfig):
    """Feast's ``spark.engine`` options, unchanged."""

    type: Literal["feast_redis_rs.RedisSparkComputeEngine"] = (  # type: ignore[assignment]
        "feast_redis_rs.RedisSparkComputeEngine"
    )
    """Batch engine type selector"""


def _write_partition(
    batches: Iterator[pa.RecordBatch], artifacts: bytes, offline: bool
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow``'s function: one partition's batches written, none returned."""
    for batch in batches:
        _distributed.write_rows(artifacts, pa.Table.from_batches([batch]), offline=offline)
    yield from ()


class _ArrowSparkWriteNode(SparkWriteNode):
    """Feast's Spark write node, writing through ``_write_partition`` when the online store
    is ``feast_redis_rs.RedisOnlineStore`` (any other store: Feast's own)."""

    def execute(self, context: ExecutionContext) -> DAGValue:
        online_store = context.online_store
        view = self.feature_view
        if not isinstance(online_store, RedisOnlineStore):
            return super().execute(context)
        rows = self.get_single_input_value(context).data
        spark_source = isinstance(view.batch_source, SparkSource)
        partitions = context.repo_config.batch_engine.partitions
        if view.online or (view.offline and not spark_source):
            written = rows.repartition(partitions) if partitions else rows
            artifacts = _distributed.pack(context.repo_config, online_store, view)
            # A Spark source's offline rows are appended by Spark itself, below.
            write = partial(_write_partition, artifacts=artifacts, offline=not spark_source)
            written.mapInArrow(write, rows.schema).count()
        if view.offline and spark_source:
            source = view.batch_source
            if not source.path or not source.file_format:
                raise ValueError(
                    f"feature view {view.name!r}: its SparkSource needs a path and a "
                    "file_format for offline writes"
                )
            rows.write.format(source.file_format).mode("append").save(source.path)
        return DAGValue(
            data=rows,
            format=DAGFormat.SPARK,
            metadata={
                "feature_view": view.name,
                "write_to_online": view.online,
                "write_to_offline": view.offline,
            },
        )


class _ArrowSparkFeatureBuilder(SparkFeatureBuilder):
    def build_output_nodes(self, view, input_node):  # type: ignore[no-untyped-def]
        node = super().build_output_nodes(view, input_node)
        node.__class__ = _ArrowSparkWriteNode
        return node


class RedisSparkComputeEngine(SparkComputeEngine):
    """Feast's Spark compute engine, with online writes from Arrow in Rust on the workers."""

    def _materialize_one(
        self,
        registry: BaseRegistry,
        task: MaterializationTask,
        from_offline_store: bool = False,
        **kwargs: Any,
    ) -> MaterializationJob:
        if from_offline_store:
            return super()._materialize_one(registry, task, from_offline_store, **kwargs)
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            context = self.get_execution_context(registry, task)
            session = self._get_feature_view_spark_session(task.feature_view)
            builder = _ArrowSparkFeatureBuilder(registry=registry, spark_session=session, task=task)
            builder.build().execute(context)
        except Exception as error:
            return SparkMaterializationJob(
                job_id=job_id, status=MaterializationJobStatus.ERROR, error=error
            )
        return SparkMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)

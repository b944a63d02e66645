"""``feast_redis_rs.RedisRayComputeEngine``: Feast's Ray compute engine (``ray.engine``) whose
write step sends each Ray block to Redis from Arrow in Rust, from the worker that holds it.

Feast's own write step turns every block into pandas, then into protos row by row, and
builds a new online store (a new connection) for every batch. Here the rows are cut into
blocks of at most ``write_batch_size`` rows, and Ray tasks on its pooled workers (at most
``write_concurrency`` at once, else ``max_workers``, else 1, as for Feast's writes) hand
each block to ``RedisOnlineStore.write_arrow``: the bytes, dedup (newest event time wins,
atomically, whichever task writes first) and TTL of ``online_write_batch``. In cluster mode
each task routes its keys by slot, so N workers write to M masters in parallel. Blocks are
not kept after they are written unless a derived view reads them, so a worker holds a
block, not the view. A failed write fails the job (Feast's Ray write step logs the error on
the worker and carries on). Everything before the write (read, filter, dedup, aggregation,
transformations, validation) is Feast's engine, every option of ``ray.engine`` keeping its
meaning.

In ``feature_store.yaml``::

    batch_engine:
      type: feast_redis_rs.RedisRayComputeEngine
      ray_address: ray://head:10001     # unset: a local Ray
      write_concurrency: 8
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.dag.context import ExecutionContext
from feast.infra.compute_engines.dag.model import DAGFormat
from feast.infra.compute_engines.dag.value import DAGValue
from feast.infra.compute_engines.ray.compute import RayComputeEngine
from feast.infra.compute_engines.ray.config import RayComputeEngineConfig
from feast.infra.compute_engines.ray.feature_builder import RayFeatureBuilder
from feast.infra.compute_engines.ray.job import RayMaterializationJob
from feast.infra.compute_engines.ray.nodes import RayWriteNode
from feast.infra.registry.base_registry import BaseRegistry

from feast_redis_rs import _distributed
from feast_redis_rs.online_store import RedisOnlineStore


class RedisRayComputeEngineConfig(RayComputeEngineConfig):
    """Feast's ``ray.engine`` options, unchanged."""

    type: Literal["feast_redis_rs.RedisRayComputeEngine"] = (  # type: ignore[assignment]
        "feast_redis_rs.RedisRayComputeEngine"
    )
    """Batch engine type selector"""


def _write_block(block: pa.Table, artifacts: bytes, keep_rows: bool) -> pa.Table:
    """A Ray task: one block written from Arrow. Ray's pooled worker processes run these
    (an actor pool would start new processes for every job)."""
    _distributed.write_rows(artifacts, block)
    return block if keep_rows else block.slice(0, 0)


class _ArrowRayWriteNode(RayWriteNode):
    """Feast's Ray write node, writing through ``_write_block`` tasks when the online
    store is ``feast_redis_rs.RedisOnlineStore`` (any other store: Feast's own)."""

    keep_rows = True

    def execute(self, context: ExecutionContext) -> DAGValue:
        online_store = context.online_store
        if not isinstance(online_store, RedisOnlineStore):
            return super().execute(context)
        value = self.get_single_input_value(context)
        value.assert_format(DAGFormat.RAY)
        artifacts = _distributed.pack(context.repo_config, online_store, self.feature_view)
        # Blocks of at most write_batch_size rows: spread over the workers, and a task holds
        # one block whatever the view's size (Feast's read hands over a single block).
        rows_per_block = context.repo_config.online_store.write_batch_size
        blocks = value.data.repartition(target_num_rows_per_block=rows_per_block)
        written = blocks.map_batches(
            _write_block,
            fn_args=(artifacts, self.keep_rows),
            batch_format="pyarrow",
            concurrency=self._write_concurrency(),
        ).materialize()
        return DAGValue(
            data=written,
            format=DAGFormat.RAY,
            metadata={"written": True, "feature_view": self.feature_view.name},
        )

    def _write_concurrency(self) -> int:
        # As Feast's write node resolves it.
        if self.config is not None and self.config.write_concurrency is not None:
            return self.config.write_concurrency
        if self.config is not None and self.config.max_workers is not None:
            return self.config.max_workers
        return 1


class _ArrowRayFeatureBuilder(RayFeatureBuilder):
    def build(self):
        plan = super().build()
        for node in plan.nodes:
            if type(node) is RayWriteNode:
                # Same state, another execute: Feast builds its write nodes inline.
                node.__class__ = _ArrowRayWriteNode
                node.keep_rows = any(node in other.inputs for other in plan.nodes)
        return plan


class RedisRayComputeEngine(RayComputeEngine):
    """Feast's Ray compute engine, with online writes from Arrow in Rust on the workers."""

    def _materialize_one(
        self,
        registry: BaseRegistry,
        task: MaterializationTask,
        from_offline_store: bool = False,
        **kwargs: Any,
    ) -> RayMaterializationJob:
        if from_offline_store:
            return super()._materialize_one(registry, task, from_offline_store, **kwargs)
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            context = self.get_execution_context(registry, task)
            builder = _ArrowRayFeatureBuilder(registry, task.feature_view, task, self.config)
            result = builder.build().execute(context)
        except Exception as error:
            return RayMaterializationJob(
                job_id=job_id, status=MaterializationJobStatus.ERROR, error=error
            )
        return RayMaterializationJob(
            job_id=job_id, status=MaterializationJobStatus.SUCCEEDED, result=result
        )

"""``feast_redis_rs.RedisRayComputeEngine``: Feast's Ray compute engine (``ray.engine``) whose
write step sends rows to Redis from Arrow in Rust, from the workers.

A plain feature view with a local parquet source (as ``RedisComputeEngine`` streams it) is
read in two passes: the driver reads the key and time columns and finds each entity's
latest row in the window (and in the last ttl, as Feast's Ray filter keeps); then Ray tasks
on its pooled workers (as many at once as Feast's write step runs: ``write_concurrency``,
else ``max_workers``, else 1), each given a row group and the positions of its latest rows, read
that row group a batch of ``write_batch_size`` rows at a time and write the chosen rows. A
worker holds a batch and its positions, whatever the view's size, and each entity is
written once.

Any other view runs Feast's plan (read, filter, dedup, aggregation, transformations,
validation), and its write step cuts the rows into blocks of at most ``write_batch_size``
rows written by Ray tasks; a block is not kept after it is written unless a derived view
reads it. Feast's own write step turns every block into pandas, then into protos row by
row, and builds a new online store (a new connection) for every batch.

Both write with ``RedisOnlineStore.write_arrow``: the bytes, dedup (newest event time wins,
atomically, whichever task writes first) and TTL of ``online_write_batch``; a worker keeps
its store's connection for every later task of the job. In cluster mode each task routes
its keys by slot, so N workers write to M masters in parallel. A failed write fails the job
(Feast's Ray write step logs the error on the worker and carries on). Every option of
``ray.engine`` keeps its meaning.

In ``feature_store.yaml``::

    batch_engine:
      type: feast_redis_rs.RedisRayComputeEngine
      ray_address: ray://head:10001     # unset: a local Ray
      write_concurrency: 8              # Feast 0.63 on; before it, max_workers
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import ray
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

from feast_redis_rs import _distributed, _feast
from feast_redis_rs.compute_engine import ParquetScan, Piece, streamable_scan
from feast_redis_rs.online_store import RedisOnlineStore


class RedisRayComputeEngineConfig(RayComputeEngineConfig):
    """Feast's ``ray.engine`` options, unchanged."""

    type: Literal["feast_redis_rs.RedisRayComputeEngine"] = (  # type: ignore[assignment]
        "feast_redis_rs.RedisRayComputeEngine"
    )
    """Batch engine type selector"""


_ROWS_PER_TASK = 131_072


@ray.remote
def _write_latest(
    scan: ParquetScan, piece: Piece, positions: np.ndarray, batch_size: int, artifacts: bytes
) -> None:
    """A Ray task: of a row group of the view's files, the rows at ``positions`` (the
    latest of their entity, counted among the row group's rows in the window) written
    from Arrow, a batch of ``batch_size`` rows at a time."""
    for rows in scan.take(scan.batches(scan.columns, batch_size, piece), positions):
        _distributed.write_rows(artifacts, rows)


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
            concurrency=_feast.ray_write_concurrency(self.config),
        ).materialize()
        return DAGValue(
            data=written,
            format=DAGFormat.RAY,
            metadata={"written": True, "feature_view": self.feature_view.name},
        )


def _stream_to_redis(
    context: ExecutionContext,
    builder: _ArrowRayFeatureBuilder,
    task: MaterializationTask,
    config: RayComputeEngineConfig,
) -> bool:
    """Materializes a plain feature view with a local parquet source in two passes: the
    driver reads the key and time columns and finds each entity's latest row; then a Ray
    task per row group reads that row group's rows a batch at a time and writes the latest
    ones. A worker holds a batch and its row group's positions, whatever the view's size;
    each entity is written once. False (nothing done) for views that need Feast's plan (see
    ``streamable_scan``)."""
    scan = streamable_scan(context, builder, task)
    if scan is None:
        return False
    view = task.feature_view
    if view.ttl:
        # Feast's Ray filter keeps the rows of the last ttl (from now) only.
        scan.since(datetime.now(timezone.utc) - view.ttl)
    pieces = scan.pieces()
    if not pieces:
        return True
    keys = [scan.keys_and_times(piece) for piece in pieces]
    latest = scan.latest_positions(pa.concat_tables(keys))
    # Where each piece's rows start in the scan, and its share of the latest positions.
    starts = np.cumsum([0] + [piece_keys.num_rows for piece_keys in keys[:-1]])
    per_piece = np.split(latest, np.searchsorted(latest, starts[1:]))
    batch_size = context.repo_config.online_store.write_batch_size
    artifacts = _distributed.pack(context.repo_config, context.online_store, view)
    # In Ray's object store once, for every task.
    scan_ref, artifacts_ref = ray.put(scan), ray.put(artifacts)
    pending: list[ray.ObjectRef] = []
    # Unset (Feast before 0.63 without max_workers): as many as Ray has CPUs for.
    in_flight = _feast.ray_write_concurrency(config) or max(
        1, int(ray.cluster_resources().get("CPU", 1))
    )
    for piece, start, in_scan in zip(pieces, starts, per_piece, strict=True):
        in_piece = in_scan - start
        # A task per _ROWS_PER_TASK latest rows, so that one row group holding most of
        # them is still written by every worker (each reads its row group up to its rows).
        for first in range(0, len(in_piece), _ROWS_PER_TASK):
            if len(pending) == in_flight:
                done, pending = ray.wait(pending, num_returns=1)
                ray.get(done)
            positions = in_piece[first : first + _ROWS_PER_TASK]
            pending.append(
                _write_latest.remote(scan_ref, piece, positions, batch_size, artifacts_ref)
            )
    ray.get(pending)
    return True


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        refusal = _feast.ray_refusal(ray.__version__)
        if refusal is not None:
            raise RuntimeError(refusal)
        super().__init__(*args, **kwargs)

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
            if _stream_to_redis(context, builder, task, self.config):
                result = None
            else:
                result = builder.build().execute(context)
        except Exception as error:
            return RayMaterializationJob(
                job_id=job_id, status=MaterializationJobStatus.ERROR, error=error
            )
        return RayMaterializationJob(
            job_id=job_id, status=MaterializationJobStatus.SUCCEEDED, result=result
        )

"""``feast_redis_rs.RedisComputeEngine``: Feast's local compute engine (offline read,
latest row per entity in the window, validation) with the online write going from
Arrow straight into Redis in Rust, through ``RedisOnlineStore.write_arrow``.

In ``feature_store.yaml``::

    batch_engine:
      type: feast_redis_rs.RedisComputeEngine
"""

from __future__ import annotations

from typing import Literal

from feast.infra.common.materialization_job import (
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.dag.context import ExecutionContext
from feast.infra.compute_engines.local.arrow_table_value import ArrowTableValue
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.feature_builder import LocalFeatureBuilder
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.compute_engines.local.nodes import LocalOutputNode
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel

from feast_redis_rs.online_store import RedisOnlineStore


class RedisComputeEngineConfig(FeastConfigBaseModel):
    """Config of ``feast_redis_rs.RedisComputeEngine``."""

    type: Literal["feast_redis_rs.RedisComputeEngine"] = "feast_redis_rs.RedisComputeEngine"
    """Batch engine type selector"""

    backend: str | None = None
    """DataFrame backend of the local engine (``pandas``, ``polars``); inferred by default"""


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

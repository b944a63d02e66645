"""Everything this package takes from Feast's private API, in one place: a Feast upgrade
that renames or reshapes one of these is fixed here (as orjson keeps CPython's details
in one module).

Beside these, the package overrides hooks of Feast's classes that carry a leading
underscore: ``RedisOnlineStore._get_client`` (Feast's ``precompute_feature_service``
scans entities through it), ``OnlineStore._read_features_per_fv[_async]`` (the proto
path of ``get_online_features``), ``LocalComputeEngine._materialize_one``,
``RayComputeEngine._materialize_one`` and ``SparkComputeEngine._materialize_one`` (with
its ``_get_feature_view_spark_session``); and ``ray_engine`` and ``spark_engine`` swap
the class of the write nodes Feast's ``RayFeatureBuilder`` and ``SparkFeatureBuilder``
build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa
from feast import metrics, utils
from feast.infra.online_stores.online_store import OnlineStore
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, FeatureView, RepoConfig
    from feast.infra.compute_engines.dag.context import ExecutionContext
    from feast.infra.compute_engines.local.compute import LocalComputeEngine
    from feast.infra.offline_stores.offline_store import OfflineStore
    from feast.infra.registry.base_registry import BaseRegistry


class RequestContext(NamedTuple):
    """Feast's resolution of a feature list (``utils._get_cached_request_context``), with
    its fields named."""

    feature_refs: list[str]
    on_demand_views: list
    entity_name_to_join_key_map: dict[str, str]
    entity_type_map: dict[str, ValueType]
    join_keys: set[str]
    grouped_refs: list[tuple[FeatureView, list[str]]]
    result_row_names: frozenset[str]
    needed_request_data: set[str]
    entityless_case: bool


def request_context(
    registry: BaseRegistry,
    project: str,
    features: list[str] | FeatureService,
    full_feature_names: bool,
) -> RequestContext:
    """Feast's resolution of ``features``; its ``grouped_refs`` stay the same object
    until Feast's registry cache refreshes."""
    return RequestContext._make(
        utils._get_cached_request_context(registry, project, features, full_feature_names)
    )


def table_entity_values(
    table: FeatureView,
    entity_name_to_join_key_map: dict[str, str],
    join_key_values: dict[str, list[Any]],
) -> dict[str, list[Any]]:
    """The request's columns a view reads, by the view's join-key names (projections'
    join-key maps applied)."""
    return utils._get_table_entity_values(table, entity_name_to_join_key_map, join_key_values)


def feature_status_metrics_on() -> bool:
    """Whether Feast records its online feature-status metrics (its metrics server runs
    with them); when not, a read skips counting them."""
    return bool(metrics._config.online_features)


def feature_types(grouped_refs: list) -> dict[str, ValueType]:
    """The ValueType of each requested feature, by plain and prefixed name."""
    return OnlineStore._build_feature_types(grouped_refs)


def check_versioned_read_support(store: OnlineStore, grouped_refs: list) -> None:
    """Feast's refusal of versioned reads where the store does not support them."""
    store._check_versioned_read_support(grouped_refs)


def populate_result_rows(
    response: GetOnlineFeaturesResponse, entity_columns: dict[str, list[ValueProto]]
) -> None:
    """Adds the request's entity columns to ``response`` as Feast's response building does."""
    utils._populate_result_rows_from_columnar(response, entity_columns)


def arrow_to_rows(
    data: pa.RecordBatch | pa.Table, table: FeatureView, join_keys: dict[str, ValueType]
) -> list:
    """The ``online_write_batch`` rows Feast makes of Arrow data."""
    return utils._convert_arrow_to_proto(data, table, join_keys)


def apply_field_mapping(table: pa.Table, field_mapping: dict[str, str]) -> pa.Table:
    """Feast's renaming of a source's columns to the view's names."""
    return utils._run_pyarrow_field_mapping(table, field_mapping)


def local_backend(engine: LocalComputeEngine, context: ExecutionContext) -> Any:
    """The DataFrame backend Feast's local engine runs its plan with."""
    return engine._get_backend(context)


def online_store_of(store: FeatureStore) -> OnlineStore:
    """The online store object a FeatureStore reads through."""
    return store._get_provider().online_store


def feature_view_from_proto(serialized: bytes) -> FeatureView:
    """A feature view from its serialized proto, without its UDFs, as Feast's engines ship
    views to their workers (``feast.infra.common.serde``)."""
    from feast import FeatureView
    from feast.protos.feast.core.FeatureView_pb2 import FeatureView as FeatureViewProto

    proto = FeatureViewProto()
    proto.ParseFromString(serialized)
    return FeatureView.from_proto(proto, skip_udf=True)


def offline_store_of(repo_config: RepoConfig) -> OfflineStore:
    """The offline store a provider of ``repo_config`` writes through."""
    from feast.infra.passthrough_provider import PassthroughProvider

    return PassthroughProvider(repo_config).offline_store

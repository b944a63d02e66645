"""Plans: what the store derives from the registry and the config, once.

A ``_native.ViewPlan`` holds everything about one feature view that reads and writes
need (project, key serialization, versioned name, join keys and their types, features
and their dtypes, hash fields, ``_ts`` field, TTL, dedup); a ``RequestPlan`` holds, for a
feature list as Feast resolved it, each view's plan and the response's names and
metadata. Both are cached while Feast keeps the same registry objects: a refresh of its
registry makes new ones, and so new plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from feast import FeatureView, RepoConfig
from feast.value_type import ValueType

from feast_redis_rs import _feast, _native

_MAX_CACHED = 256


@dataclass(frozen=True)
class ViewSpec:
    """What a ``_native.ViewPlan`` is built from."""

    project: str
    entity_key_serialization_version: int
    view: str
    """The name the view's data is stored under (``fv_v{N}`` with view versioning)."""
    join_keys: list[tuple[str, str]]
    """``(join key, ValueType name)``"""
    features: list[tuple[str, str]]
    """``(feature, ValueType name)``: the features read or written, in order."""
    timestamp_column: str | None
    """The event-time column of Arrow batches written with the plan."""
    key_ttl_seconds: int | None
    skip_dedup: bool
    in_batch_ordering: bool
    """Feast 0.66's rule: a row must also be newer than earlier rows of its batch."""
    near_cache: bool
    """Whether reads of the view go through the client's near cache."""


def feature_names(table: FeatureView, requested_features: list[str] | None) -> list[str]:
    return list(requested_features) if requested_features else [f.name for f in table.features]


def _spec(
    config: RepoConfig,
    table: FeatureView | None,
    features: list[str],
    join_keys: list[tuple[str, str]],
) -> ViewSpec:
    dtypes = {f.name: f.dtype.to_value_type().name for f in table.features} if table else {}
    near_cache = config.online_store.near_cache
    source = table.batch_source if table else None
    return ViewSpec(
        project=config.project,
        entity_key_serialization_version=config.entity_key_serialization_version,
        view=_feast.versioned_name(table, config) if table else "",
        join_keys=join_keys,
        features=[(name, dtypes.get(name, ValueType.UNKNOWN.name)) for name in features],
        timestamp_column=source.timestamp_field if source else None,
        key_ttl_seconds=config.online_store.key_ttl_seconds or None,
        skip_dedup=config.online_store.skip_dedup,
        in_batch_ordering=_feast.IN_BATCH_ORDERING,
        near_cache=table is not None and near_cache is not None and near_cache.caches(table.name),
    )


def _join_keys(table: FeatureView) -> list[tuple[str, str]]:
    return [(c.name, c.dtype.to_value_type().name) for c in table.entity_columns]


@dataclass(frozen=True)
class ViewRead:
    """One feature view of a ``get_online_features`` request."""

    table: FeatureView
    plan: _native.ViewPlan
    features: list[str]
    join_keys: list[str]
    """The plan's join keys, in the order its columns of values are given."""


@dataclass(frozen=True)
class RequestPlan:
    """The registry-derived part of a ``get_online_features`` request."""

    views: list[ViewRead]
    feature_names: list[str]
    """The response's feature columns, as ``get_online_features`` answers them."""
    proto_feature_names: list[str]
    """The same with each view's ``_ts:{view}`` column after its features, as Feast's
    proto flow names them before dropping those columns."""
    seconds_columns: list[int]
    """For each feature column, the answer's column of its view's event seconds."""
    feature_view_metadata: list[tuple[str, int]]
    feature_types: dict[str, ValueType]
    routes: dict[tuple[str, ...], Route | None] = field(default_factory=dict, compare=False)
    """``route``'s answers, by the request's column names."""

    def route(
        self,
        join_keys: set[str],
        entity_name_to_join_key_map: dict[str, str],
        names: tuple[str, ...],
    ) -> Route | None:
        """Where the columns of a request with at least one row go, worked out the first
        time a set of column names is seen (Feast's checks run then, with their errors);
        ``None`` sends requests with these names down Feast's own flow."""
        if names in self.routes:
            return self.routes[names]
        kept = tuple(name for name in names if name in join_keys)
        route: Route | None = None
        # Feast's deprecated entity-name keys are left to its own flow, which warns.
        if not any(n in entity_name_to_join_key_map for n in names if n not in join_keys):
            # Each column tagged with its own name: Feast's renaming by projection then
            # tells which request column feeds each join key of each view.
            tagged = {name: [name] for name in kept}
            sources = []
            for view in self.views:
                values = view_columns(view, entity_name_to_join_key_map, tagged)
                if set(values) != set(view.join_keys):
                    break  # A view read with other keys than its own: Feast's flow.
                sources.append(tuple(values[k][0] for k in view.join_keys))
            else:
                route = Route(join_key_columns=kept, view_sources=tuple(sources))
        if len(self.routes) >= _MAX_CACHED:
            self.routes.clear()
        self.routes[names] = route
        return route

    def feature_counts(self, rows: int) -> list[tuple[str, int, int]]:
        """Per view ``(name, present, not found)`` for Feast's feature-status metrics,
        as stock Feast's Redis store counts them: every feature of every row present,
        and the view's ``_ts`` column (which it reads as one more feature) not found."""
        return [(view.table.name, len(view.features) * rows, rows) for view in self.views]


@dataclass(frozen=True)
class Route:
    """How one set of request column names feeds a ``RequestPlan``'s views."""

    join_key_columns: tuple[str, ...]
    """The request's columns that are join keys: the response's entity columns."""
    view_sources: tuple[tuple[str, ...], ...]
    """Per view, the request column of each of its join keys, in the plan's order."""


def view_columns(
    view: ViewRead,
    entity_name_to_join_key_map: dict[str, str],
    join_key_values: dict[str, list[Any]],
) -> dict[str, list[Any]]:
    """The request columns a view reads, by join key, checked as Feast checks them
    (``feast.utils._get_unique_entities``, with its error)."""
    values = _feast.table_entity_values(view.table, entity_name_to_join_key_map, join_key_values)
    expected = set(entity_name_to_join_key_map.values()) - {"__dummy_id"}
    missing = sorted(k for k in expected if k not in values)
    empty = sorted(k for k in expected if not values.get(k))
    if (missing or empty) and not any(values.values()):
        raise KeyError(
            f"Missing join key values for keys: {missing}. "
            f"No values provided for keys: {empty}. "
            f"Provided join_key_values: {list(join_key_values.keys())}"
        )
    return values


def feature_counts(
    plan: RequestPlan, columns: list[dict[str, list[Any]]]
) -> list[tuple[str, int, int]]:
    """Per view ``(name, present, not found)`` for Feast's feature-status metrics, as
    ``RequestPlan.feature_counts`` counts them, each view's rows counted from its columns
    (Feast's proto path)."""
    counts = []
    for view, values in zip(plan.views, columns, strict=True):
        rows = min((len(v) for v in values.values()), default=0)
        counts.append((view.table.name, len(view.features) * rows, rows))
    return counts


class Plans:
    """A store's cache of view and request plans, keyed by the identity of Feast's
    objects (a registry refresh replaces them) and bounded."""

    def __init__(self) -> None:
        self._views: dict[tuple, tuple[Any, RepoConfig, _native.ViewPlan]] = {}
        self._requests: dict[tuple, tuple[list, RepoConfig, RequestPlan]] = {}

    def view(
        self,
        config: RepoConfig,
        table: FeatureView,
        features: list[str] | None = None,
        join_keys: list[str] | None = None,
    ) -> _native.ViewPlan:
        """The plan of ``table`` for ``features`` (all when None), keyed by the view's
        join keys, or by ``join_keys`` as a request gives them (their values then come
        as protos, which carry their own types)."""
        key = (
            id(table),
            id(config),
            tuple(features) if features is not None else None,
            tuple(join_keys) if join_keys is not None else None,
        )
        cached = self._views.get(key)
        if cached is not None and cached[0] is table and cached[1] is config:
            return cached[2]
        names = feature_names(table, features)
        keys = (
            _join_keys(table)
            if join_keys is None
            else [(k, ValueType.UNKNOWN.name) for k in join_keys]
        )
        plan = _native.ViewPlan(_spec(config, table, names, keys))
        if len(self._views) >= _MAX_CACHED:
            self._views.clear()
        self._views[key] = (table, config, plan)
        return plan

    def precomputed(self, config: RepoConfig, service: str, first: FeatureView) -> _native.ViewPlan:
        """The plan of the vectors of pre-computed ``service``, whose first view is
        ``first``."""
        table = _feast.precomputed_vector_view(service)
        return _native.ViewPlan(_spec(config, table, ["vector"], _join_keys(first)))

    def entities(self, config: RepoConfig, join_keys: list[str]) -> _native.ViewPlan:
        """A plan of join keys alone, for deleting every key of an entity."""
        return _native.ViewPlan(
            _spec(config, None, [], [(k, ValueType.UNKNOWN.name) for k in join_keys])
        )

    def request(
        self,
        config: RepoConfig,
        grouped_refs: list,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> RequestPlan:
        """The plan of a feature list as Feast resolved it into ``grouped_refs``."""
        key = (
            id(grouped_refs),
            id(config),
            full_feature_names,
            include_feature_view_version_metadata,
        )
        cached = self._requests.get(key)
        if cached is not None and cached[0] is grouped_refs and cached[1] is config:
            return cached[2]
        views: list[ViewRead] = []
        names: list[str] = []
        proto_names: list[str] = []
        view_of_feature: list[int] = []
        metadata: list[tuple[str, int]] = []
        for index, (table, requested_features) in enumerate(grouped_refs):
            features = feature_names(table, requested_features)
            views.append(
                ViewRead(
                    table=table,
                    plan=self.view(config, table, features),
                    features=features,
                    join_keys=[name for name, _ in _join_keys(table)],
                )
            )
            columns = [*features, f"_ts:{_feast.versioned_name(table, config)}"]
            if full_feature_names:
                prefix = table.projection.name_to_use()
                columns = [f"{prefix}__{name}" for name in columns]
            names += columns[:-1]
            proto_names += columns
            view_of_feature += [index] * len(features)
            if include_feature_view_version_metadata:
                clean_name = table.projection.name_alias or table.projection.name
                if clean_name not in [name for name, _ in metadata]:
                    metadata.append((clean_name, getattr(table, "current_version_number", 0) or 0))
        plan = RequestPlan(
            views=views,
            feature_names=names,
            proto_feature_names=proto_names,
            seconds_columns=[len(names) + v for v in view_of_feature],
            feature_view_metadata=metadata,
            feature_types=_feast.feature_types(grouped_refs),
        )
        if len(self._requests) >= _MAX_CACHED:
            self._requests.clear()
        self._requests[key] = (grouped_refs, config, plan)
        return plan

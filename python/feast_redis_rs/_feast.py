"""Everything this package takes from Feast's private API, and everything that differs
between the Feast releases it supports, in one place: a Feast upgrade that renames or
reshapes one of these is fixed here (as orjson keeps CPython's details in one module).

Each supported release (``SUPPORTED``) is matched byte for byte: what differs between
them is chosen once, at import, from ``feast.__version__``.

Beside these, the package overrides hooks of Feast's classes that carry a leading
underscore: ``RedisOnlineStore._get_client`` (Feast's ``precompute_feature_service``
scans entities through it), ``OnlineStore._read_features_per_fv[_async]`` (the proto
path of ``get_online_features``, from Feast 0.64), ``LocalComputeEngine._materialize_one``,
``RayComputeEngine._materialize_one`` and ``SparkComputeEngine._materialize_one`` (with
its ``_get_feature_view_spark_session``); and ``ray_engine`` and ``spark_engine`` swap
the class of the write nodes Feast's ``RayFeatureBuilder`` and ``SparkFeatureBuilder``
build.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import math
import re
import threading
import time
import warnings
from enum import Enum
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import feast
import feast.online_response
import pyarrow as pa
from feast import utils
from feast.feature_view import DUMMY_ENTITY_ID
from feast.infra.online_stores.online_store import OnlineStore
from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, FeatureView, RepoConfig
    from feast.infra.compute_engines.dag.context import ExecutionContext
    from feast.infra.compute_engines.local.compute import LocalComputeEngine
    from feast.infra.offline_stores.offline_store import OfflineStore
    from feast.infra.registry.base_registry import BaseRegistry
    from feast.online_response import OnlineResponse

SUPPORTED = ((0, 60), (0, 67))
"""The oldest and the newest Feast minor release tested (``make test-feast-versions``)."""


def _release(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ImportError(f"feast-redis-rs cannot read Feast's version {version!r}")
    return int(match[1]), int(match[2])


FEAST = _release(feast.__version__)
_SUPPORTED_TEXT = "Feast {}.{} to {}.{}".format(*SUPPORTED[0], *SUPPORTED[1])
if FEAST < SUPPORTED[0]:
    raise ImportError(
        f"feast-redis-rs supports {_SUPPORTED_TEXT}; Feast {feast.__version__} is "
        f"installed: pip install 'feast[redis]>={SUPPORTED[0][0]}.{SUPPORTED[0][1]},"
        f"<{SUPPORTED[1][0]}.{SUPPORTED[1][1] + 1}'"
    )
if FEAST > SUPPORTED[1]:
    warnings.warn(
        f"feast-redis-rs is tested with {_SUPPORTED_TEXT}; Feast {feast.__version__} is "
        "newer: it runs, but what this Feast stores may differ from what the store "
        "writes until a feast-redis-rs release tests it",
        stacklevel=2,
    )

if FEAST >= (0, 67):
    from feast.infra.online_stores.redis import RedisClient
else:

    class RedisClient(str, Enum):  # type: ignore[no-redef]
        """Feast 0.67's ``client`` choice of the Redis store, which its config accepts
        (and this store ignores) on every release."""

        redis = "redis"
        glide = "glide"


VERSIONED_VIEWS = FEAST >= (0, 63)
"""Views stored under ``{name}_v{N}`` with ``enable_online_feature_view_versioning``."""
VERSIONED_READS_CHECKED = FEAST >= (0, 62)
"""Feast refuses versioned reads (``fv@v2``) on stores that do not support them."""
VERSION_METADATA = FEAST >= (0, 62)
"""``get_online_features`` takes ``include_feature_view_version_metadata``."""
SERVED_VERSION_METADATA = FEAST >= (0, 67)
"""``feast serve`` answers ``feature_view_metadata`` when asked (0.62 to 0.66 read the
request's flag but leave the metadata out of their JSON)."""
SERVED_NULL_STATUS = (0, 62) <= FEAST < (0, 64)
"""``feast serve``'s answers end with ``"status": null`` (0.62 and 0.63's response model)."""
IN_BATCH_ORDERING = FEAST >= (0, 66)
"""A written row must also be newer than earlier rows of its batch for the same entity
(before, each row was checked against what was stored before the batch only)."""
PRECOMPUTED_ROWS_AS_ASKED = (
    "entity_row_indices"
    in inspect.signature(
        getattr(OnlineStore, "_try_precomputed_fast_path", lambda: None)
    ).parameters
)
"""Pre-computed feature services answer every request row, repeated entities each in
its place (Feast 0.67's fast path; before, the server leaves them to Feast's app)."""


def precomputed_vector_view(service: str) -> FeatureView:
    """The view Feast stores a pre-computed service's vectors under, one ``vector`` per
    entity of the service's first view (``OnlineStore.write_precomputed_vector``)."""
    from feast import FeatureView, Field
    from feast.types import Bytes

    return FeatureView(
        name=f"__precomputed__{service}",
        entities=[],
        schema=[Field(name="vector", dtype=Bytes)],
        source=None,
    )


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


_contexts: dict[tuple, tuple] = {}
_contexts_registry: list[Any] = [None]
_contexts_lock = threading.Lock()


def _context_before_0_64(
    registry: BaseRegistry,
    project: str,
    features: list[str] | FeatureService,
    full_feature_names: bool,
) -> tuple:
    """Feast's resolution before 0.64, which did not cache it: cached here as 0.64 does,
    until Feast's registry cache refreshes (so plans keyed on ``grouped_refs`` hold)."""
    from feast import FeatureService

    key = (
        ("__fs__", features.name) if isinstance(features, FeatureService) else tuple(features),
        project,
        full_feature_names,
    )
    created = getattr(registry, "cached_registry_proto_created", None)
    is_cache_valid = getattr(registry, "is_cache_valid", None)
    cacheable = created is not None and callable(is_cache_valid) and is_cache_valid()
    if cacheable:
        with _contexts_lock:
            if _contexts_registry[0] != created:
                _contexts.clear()
                _contexts_registry[0] = created
            elif key in _contexts:
                return _contexts[key]
    context = list(
        utils._get_online_request_context(registry, project, features, full_feature_names)
    )
    context[6] = frozenset(context[6])
    resolved = tuple(context)
    if cacheable:
        with _contexts_lock:
            if _contexts_registry[0] == created:
                _contexts[key] = resolved
    return resolved


def request_context(
    registry: BaseRegistry,
    project: str,
    features: list[str] | FeatureService,
    full_feature_names: bool,
) -> RequestContext:
    """Feast's resolution of ``features``; its ``grouped_refs`` stay the same object
    until Feast's registry cache refreshes."""
    if FEAST >= (0, 64):
        resolved = utils._get_cached_request_context(
            registry, project, features, full_feature_names
        )
    else:
        resolved = _context_before_0_64(registry, project, features, full_feature_names)
    return RequestContext._make(resolved)


def table_entity_values(
    table: FeatureView,
    entity_name_to_join_key_map: dict[str, str],
    join_key_values: dict[str, list[Any]],
) -> dict[str, list[Any]]:
    """The request's columns a view reads, by the view's join-key names (projections'
    join-key maps applied)."""
    return utils._get_table_entity_values(table, entity_name_to_join_key_map, join_key_values)


# Feast's metrics module (0.61 on), imported once: reads ask it about every request.
_metrics: Any = None
if FEAST >= (0, 61):
    from feast import metrics as _metrics


def feature_status_metrics_on() -> bool:
    """Whether Feast records its online feature-status metrics (its metrics server runs
    with them; Feast 0.63 on); when not, a read skips counting them."""
    return FEAST >= (0, 63) and bool(_metrics._config.online_features)


def store_read_metrics_on() -> bool:
    """Whether Feast times its online store reads (Feast 0.62 on)."""
    return FEAST >= (0, 62) and bool(_metrics._config.online_features)


def record_store_read(seconds: float) -> None:
    """What Feast's own ``get_online_features`` records around its read."""
    _metrics.track_online_store_read(seconds)


def record_feature_statuses(counts: list[tuple[str, int, int]]) -> None:
    """Feast's feature-status metrics, as its own response building records them; a
    metrics failure never fails a read."""
    try:
        for name, present, not_found in counts:
            _metrics.track_feature_statuses(name, present, not_found)
    except Exception:
        pass


def feature_types(grouped_refs: list) -> dict[str, ValueType]:
    """The ValueType of each requested feature, by plain and prefixed name, as Feast's
    ``OnlineResponse`` takes them (from 0.62; before, it takes none)."""
    if FEAST < (0, 62):
        return {}
    return OnlineStore._build_feature_types(grouped_refs)


def versioned_name(table: FeatureView, config: RepoConfig) -> str:
    """The name a view's fields and ``_ts`` are stored under."""
    if not VERSIONED_VIEWS:
        return table.name
    from feast.infra.online_stores.helpers import compute_versioned_name

    return compute_versioned_name(table, config.registry.enable_online_feature_view_versioning)


def stock_get_online_features(
    store: OnlineStore,
    config: RepoConfig,
    features: list[str] | FeatureService,
    entity_rows: Any,
    registry: BaseRegistry,
    project: str,
    full_feature_names: bool,
    include_feature_view_version_metadata: bool,
) -> OnlineResponse:
    """Feast's own ``get_online_features`` flow, reading through ``store``: the base
    store's (Feast 0.63's Redis store overrides it with redis-py calls of its own; its
    answers are the base flow's)."""
    arguments = [config, features, entity_rows, registry, project, full_feature_names]
    if VERSION_METADATA:
        arguments.append(include_feature_view_version_metadata)
    elif include_feature_view_version_metadata:
        raise ValueError(
            f"include_feature_view_version_metadata needs Feast 0.62 or later; "
            f"Feast {feast.__version__} is installed"
        )
    return OnlineStore.get_online_features(store, *arguments)


# Feast's on-demand transformations take the requested features' types from 0.62 on.
_TRANSFORMS_TAKE_TYPES = (
    "feature_types"
    in inspect.signature(utils._augment_response_with_on_demand_transforms).parameters
)


# The types whose Python values ``feast_value_type_to_python_type`` makes without regard
# to the type it is given (the UUIDs it parses are stored as strings).
_PLAIN_TYPES = frozenset(
    ValueType[f"{name}{suffix}"]
    for name in ("INT32", "INT64", "FLOAT", "DOUBLE", "STRING", "BYTES", "BOOL", "UNIX_TIMESTAMP")
    for suffix in ("", "_LIST")
)

_transforming = threading.local()


class _OnlineResponseOfColumns(OnlineResponse):
    """Feast's ``OnlineResponse``; but the ``to_dict`` of a response that
    ``on_demand_features`` is transforming on this thread starts with the columns
    decoded in Rust (the Python values Feast's own conversion makes of them), then
    goes on with the response's own columns (the request data)."""

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
        current = getattr(_transforming, "columns", None)
        if current is None or current[0] is not self.proto or include_event_timestamps:
            return super().to_dict(include_event_timestamps)
        return {**current[1], **super().to_dict()}


def transform_from_columns() -> None:
    """Lets ``on_demand_features`` hand Feast's transformations the columns decoded in
    Rust: Feast's flow imports ``OnlineResponse`` at each call, and gets
    ``_OnlineResponseOfColumns`` from here on (in this process: ``feast-redis-rs serve``
    calls this; it answers as Feast's class for any other response)."""
    feast.online_response.OnlineResponse = _OnlineResponseOfColumns


def _timestamp_columns(
    config: RepoConfig, grouped_refs: list, full_feature_names: bool
) -> list[str]:
    """The ``_ts:<view>`` column, its values all missing, that Feast's flow over a Redis
    store hands its transformations for each view read: the store appends the view's
    timestamp field to the list of features Feast's flow then names its columns by."""
    names = []
    for table, _ in grouped_refs:
        field = f"_ts:{versioned_name(table, config)}"
        names.append(f"{table.projection.name_to_use()}__{field}" if full_feature_names else field)
    return names


def on_demand_features(
    store: FeatureStore,
    features: list[str],
    feature_service: str | None,
    full_feature_names: bool,
    request_data: list[tuple[str, str]],
    read: bytes,
    columns: list[tuple[str, list[Any]]] | None = None,
) -> list[tuple[str, bytes]] | None:
    """Feast's on-demand transformations of the rows ``read`` (a serialized
    ``GetOnlineFeaturesResponse`` holding the join keys and the source features, as
    Feast's flow holds it before it transforms) and of ``request_data`` (each column as
    the request's JSON) for ``features``, or for ``feature_service`` when given: each
    on-demand feature asked for, by its name in the answer, as a serialized
    ``FeatureVector``. ``columns``, when given, are ``read``'s as Python lists of the
    values Feast's ``OnlineResponse.to_dict`` makes of them (decoded in Rust); they are
    used for columns of types converted without a type (once ``transform_from_columns``
    was called). ``None`` where Feast's app should answer (Feast refuses the request, or
    a transformation fails: the app says why)."""
    try:
        asked: list[str] | FeatureService = (
            features
            if feature_service is None
            else store.get_feature_service(feature_service, allow_cache=True)
        )
        context = request_context(store.registry, store.project, asked, full_feature_names)
        types = feature_types(context.grouped_refs)
        decoded = None
        if (
            columns is not None
            and feast.online_response.OnlineResponse is _OnlineResponseOfColumns
            and all(types.get(name) in _PLAIN_TYPES or name not in types for name, _ in columns)
            and [name for name, _ in columns].count(DUMMY_ENTITY_ID) <= 1
        ):
            decoded = {name: values for name, values in columns if name != DUMMY_ENTITY_ID}
            response = GetOnlineFeaturesResponse()
        else:
            response = GetOnlineFeaturesResponse.FromString(read)
        # Feast reads request data as it reads an entity column with no declared type.
        request_columns = {
            name: python_values_to_proto_values(json.loads(text), ValueType.UNKNOWN)
            for name, text in request_data
        }
        rows = len(next(iter(decoded.values()))) if decoded else len(response.results[0].values)
        present = (
            decoded.keys() if decoded is not None else set(response.metadata.feature_names.val)
        )
        for name in _timestamp_columns(store.config, context.grouped_refs, full_feature_names):
            if name not in present:
                request_columns.setdefault(name, [ValueProto()] * rows)
        populate_result_rows(response, request_columns)
        before = len(response.results)
        extra = {"feature_types": types} if _TRANSFORMS_TAKE_TYPES else {}
        _transforming.columns = None if decoded is None else (response, decoded)
        try:
            utils._augment_response_with_on_demand_transforms(
                response, context.feature_refs, context.on_demand_views, full_feature_names, **extra
            )
        finally:
            _transforming.columns = None
    except Exception:
        return None
    names = response.metadata.feature_names.val[before:]
    return [
        (name, vector.SerializeToString())
        for name, vector in zip(names, response.results[before:], strict=True)
        if name in context.result_row_names
    ]


def check_versioned_read_support(store: OnlineStore, grouped_refs: list) -> None:
    """Feast's refusal of versioned reads where the store does not support them (none
    before 0.62)."""
    if VERSIONED_READS_CHECKED:
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


def file_source_credentials(source: Any) -> Any:
    """The credentials a ``FileSource`` reads its files with (Feast 0.66 on: before,
    none)."""
    resolve = getattr(source, "resolve_credentials", None)
    return resolve() if resolve is not None else None


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
    if "skip_udf" in inspect.signature(FeatureView.from_proto).parameters:
        return FeatureView.from_proto(proto, skip_udf=True)
    # Before Feast 0.63 a view comes with its UDF, if it has one (deserialized by dill).
    return FeatureView.from_proto(proto)


def ray_refusal(ray_version: str) -> str | None:
    """Why Feast's Ray engine cannot start on Ray ``ray_version``, or None: before 0.67
    it sets Ray Data's shuffle strategy as the name ``"sort"``, which Ray 2.59 and later
    refuse (Feast 0.67 sets the enum)."""
    if FEAST >= (0, 67) or _release(ray_version) < (2, 59):
        return None
    return (
        f"Feast {feast.__version__}'s Ray engine sets Ray Data's shuffle strategy as a "
        f"name that Ray 2.59 and later refuse; Ray {ray_version} is installed: "
        "pip install 'ray[data]>=2.58,<2.59', or upgrade to Feast 0.67"
    )


def ray_write_concurrency(config: Any) -> int | None:
    """How many write tasks Feast's Ray write step runs at once under ``config`` (a
    ``RayComputeEngineConfig``, or None): ``write_concurrency`` (Feast 0.63 on), else
    ``max_workers``, else one; before 0.63 ``max_workers``, unset meaning as many as Ray
    schedules (None), and 12 without a config."""
    if config is None:
        return 1 if FEAST >= (0, 63) else 12
    if FEAST >= (0, 63) and config.write_concurrency is not None:
        return int(config.write_concurrency)
    if config.max_workers is not None:
        return int(config.max_workers)
    return 1 if FEAST >= (0, 63) else None


def offline_store_of(repo_config: RepoConfig) -> OfflineStore:
    """The offline store a provider of ``repo_config`` writes through."""
    from feast.infra.passthrough_provider import PassthroughProvider

    return PassthroughProvider(repo_config).offline_store


def authenticate_grpc_call(metadata: dict[str, str]) -> None:
    """Makes a gRPC call's user the current user of Feast's security manager, as Feast's
    ``AuthInterceptor`` does: the bearer token of its ``authorization`` metadata, parsed
    by the repo's auth manager. Nothing when the repo has no ``auth``. Raises
    starlette's ``AuthenticationError`` for a missing or rejected token."""
    from feast.permissions.auth.auth_manager import get_auth_manager
    from feast.permissions.security_manager import get_security_manager
    from feast.permissions.server.grpc_token_extractor import GrpcTokenExtractor

    security_manager = get_security_manager()
    if security_manager is None:
        return
    token = GrpcTokenExtractor().extract_access_token(metadata=metadata)
    parser = get_auth_manager().token_parser
    security_manager.set_current_user(asyncio.run(parser.user_details_from_access_token(token)))


def authorize_grpc_call(store: FeatureStore, method: str, request: Any) -> None:
    """Asks Feast's security manager what ``feast serve`` asks before the same action
    (its ``/get-online-features``, ``/push`` and ``/write-to-online-store``): Feast's
    servicer asks nothing. Raises ``FeastPermissionError``; nothing when the repo has
    no ``auth``; a name not found raises Feast's error for it."""
    from feast.feature_view_utils import get_feature_view_from_feature_store
    from feast.permissions.action import WRITE, AuthzedAction
    from feast.permissions.security_manager import assert_permissions, get_security_manager

    if get_security_manager() is None:
        return
    if method == "GetOnlineFeatures":
        service = request.feature_service if request.HasField("feature_service") else None
        _assert_may_read(store, service, list(request.features.val))
    elif method == "Push":
        actions = {
            "online": [AuthzedAction.WRITE_ONLINE],
            "offline": [AuthzedAction.WRITE_OFFLINE],
            "online_and_offline": WRITE,
        }.get(request.to)
        if actions is None:
            return  # the servicer refuses it
        cache = request.allow_registry_cache
        views = store.list_feature_views(allow_cache=cache) + store.list_stream_feature_views(
            allow_cache=cache
        )
        for view in views:
            source = view.stream_source
            if source is not None and getattr(source, "name", None) == request.stream_feature_view:
                assert_permissions(resource=view, actions=actions)
    elif method == "WriteToOnlineStore":
        view = get_feature_view_from_feature_store(
            store, request.feature_view_name, request.allow_registry_cache
        )
        assert_permissions(resource=view, actions=[AuthzedAction.WRITE_ONLINE])


def _assert_may_read(store: FeatureStore, feature_service: str | None, features: list[str]) -> None:
    """What ``feast serve`` asserts of the current user before ``/get-online-features``
    (its ``_get_features``): READ_ONLINE on the feature service, or on each view of the
    features."""
    from feast.feature_server import _get_features

    asked = SimpleNamespace(feature_service=feature_service, features=features)
    asyncio.run(_get_features(asked, store))


def _assert_may_write(store: FeatureStore, views: list[str]) -> None:
    """What ``feast serve`` asserts of the current user before ``/push`` (online) and
    ``/write-to-online-store``: WRITE_ONLINE on each feature view written."""
    from feast.permissions.action import AuthzedAction
    from feast.permissions.security_manager import assert_permissions

    for name in views:
        view = store.get_feature_view(name, allow_registry_cache=True)
        assert_permissions(resource=view, actions=[AuthzedAction.WRITE_ONLINE])


def decide_request(
    store: FeatureStore,
    authorization: str,
    feature_service: str | None,
    features: list[str],
    written: list[str],
) -> float | None:
    """Feast's decision on a read of ``features`` (or ``feature_service``), or a write
    of the feature views ``written``, by the bearer token of the ``authorization`` header:
    the token parsed by the repo's auth manager and the user's permissions asserted as
    ``feast serve`` does, in a context of its own. Returns the seconds until the token
    expires (``math.inf`` when it names no expiry), or ``None`` where Feast would not
    answer (no bearer token, a token rejected, a permission missing, a name not found):
    Feast's app then answers the request."""
    return contextvars.Context().run(
        _decide_request, store, authorization, feature_service, features, written
    )


def _decide_request(
    store: FeatureStore,
    authorization: str,
    feature_service: str | None,
    features: list[str],
    written: list[str],
) -> float | None:
    from feast.permissions.auth.auth_manager import get_auth_manager
    from feast.permissions.security_manager import get_security_manager
    from feast.permissions.server.grpc_token_extractor import GrpcTokenExtractor

    security_manager = get_security_manager()
    if security_manager is None:
        return None
    try:
        token = GrpcTokenExtractor().extract_access_token(metadata={"authorization": authorization})
        parser = get_auth_manager().token_parser
        security_manager.set_current_user(asyncio.run(parser.user_details_from_access_token(token)))
        if written:
            _assert_may_write(store, written)
        else:
            _assert_may_read(store, feature_service, features)
    except Exception:  # Feast's app answers the request, with its own error
        return None
    return _seconds_until_expiry(token)


def _seconds_until_expiry(token: str) -> float:
    """The time left before the ``exp`` of a token Feast has just accepted (its signature
    was checked by Feast's parser)."""
    import jwt

    try:
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return math.inf
    if not isinstance(expires, (int, float)):
        return math.inf
    return max(0.0, expires - time.time())


def is_permission_error(details: str) -> bool:
    """Whether Feast's servicer's details are a ``FeastPermissionError`` it caught (its
    ``Push`` and ``WriteToOnlineStore`` answer every error as ``INTERNAL``)."""
    from feast.errors import FeastPermissionError

    return details.startswith(str(FeastPermissionError("")))


def grpc_feature_servicer(store: FeatureStore) -> Any:
    """Feast's ``GrpcFeatureServer`` servicer (``feast listen``'s) on ``store``, without
    its registry-refresh timer: ``serve`` refreshes the registry for all of it. Needs
    grpcio (``ImportError`` without it)."""
    from feast.infra.contrib.grpc_server import GrpcFeatureServer

    class Servicer(GrpcFeatureServer):
        def _async_refresh(self) -> None:
            pass

    return Servicer(store)

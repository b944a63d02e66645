"""``feast-redis-rs serve``: Feast's HTTP feature server, answered in Rust.

Python reads ``feature_store.yaml`` and the registry with Feast's own API, at start and
every ``registry_ttl_sec``, and hands the native server one plan per feature view, the
on-demand views and feature services made of them. The server answers ``POST
/get-online-features`` and ``GET /health`` (``/metrics`` with ``--metrics``) without the
GIL but for on-demand transformations, which Feast's code runs. Every other request --
``/push``, ``/write-to-online-store``, ``/materialize``, online requests the catalog
does not cover and malformed ones -- is answered by Feast's own app in this process, so
its shapes, statuses and errors are Feast's.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from typing import Any, NoReturn
from urllib.parse import unquote

import feast
from feast import FeatureService, FeatureStore, FeatureView
from feast.data_source import PushSource
from feast.errors import FeastPermissionError
from feast.feature_server import get_app
from feast.feature_view import DUMMY_ENTITY_NAME
from feast.permissions.server.utils import (
    AuthManagerType,
    ServerType,
    init_auth_manager,
    init_security_manager,
    str_to_auth_manager_type,
)
from starlette.authentication import AuthenticationError

from feast_redis_rs import _feast, _native
from feast_redis_rs.config import _PASSWORD, RedisOnlineStoreConfig
from feast_redis_rs.cores import cores_available
from feast_redis_rs.online_store import RedisOnlineStore
from feast_redis_rs.plans import Plans

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    """What ``feast-redis-rs serve`` binds and every limit it holds clients to; the
    README's "Running it in production" says what happens at each."""

    host: str = "127.0.0.1"
    port: int = 6566
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    access_log: bool = True
    metrics: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    """``None``: ``/metrics`` on the server's own port, or on ``STOCK_METRICS_PORT`` of
    ``metrics_host`` for a repo with ``auth:``."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Larger request bodies are refused with 413."""
    max_entity_rows: int = 100_000
    """Requests with more entity rows are refused with 413."""
    max_values_per_request: int = 2_000_000
    """Requests for more entity rows x features are refused with 413."""
    max_buffered_mb: int = 1024
    """Bodies and answers of all requests in flight, together; past it, 503."""
    max_concurrent_reads: int = 64
    """Online requests read natively at once at most (the number adapts to the load
    under it), and waiting at most; past it, 503 and overload."""
    read_queue_timeout: float = 0.001
    """Under overload, seconds an online request may wait to be read; then 503 (load
    shedding: what is answered keeps its latency)."""
    transform_queue_timeout: float = 1.0
    """Seconds a read with on-demand views may wait for one of the transformations
    running at once (4) to end; then 503."""
    workers: int = field(default_factory=cores_available)
    """Threads answering requests: by default one per core the process may use."""
    worker_connections: int = 1000
    """Open client connections; past it the oldest idle one is closed to make room."""
    keep_alive_timeout: float = 30.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    write_timeout: float = 30.0
    tls_handshake_timeout: float = 10.0
    stream_timeout: float = 300.0
    """For all of a streaming gRPC call (health Watch, reflection); then UNAVAILABLE."""
    fallback_concurrency: int = 32
    """Requests Feast's app works on at once."""
    fallback_queue: int = 256
    """Requests waiting for Feast's app; past it, 503."""
    fallback_queue_timeout: float = 5.0
    shutdown_timeout: float = 25.0
    """From SIGTERM to exit, all of it (Kubernetes waits 30 s by default)."""
    auth_cache_seconds: float = 60.0
    """In a repo with ``auth``: how long Feast's decision for a token and the features a
    request asks for (or the views it writes) is reused at most (never past the token's
    expiry, and decided again after each registry refresh); 0: Feast decides every
    request."""


# A fallback whose client went away is cancelled this long after its app is told.
CANCEL_GRACE_SECONDS = 1.0

# `feast serve --metrics` serves Prometheus on this port (feast.metrics).
STOCK_METRICS_PORT = 8000


@dataclass(frozen=True)
class ServedView:
    name: str
    plan: _native.ViewPlan = field(compare=False)
    version: int
    # The view as the registry holds it: a refresh that changes no view compares equal,
    # though it made new plans.
    definition: bytes


@dataclass(frozen=True)
class ServedProjection:
    view: str
    name: str
    metadata_name: str
    features: list[str]
    join_key_map: dict[str, str]


@dataclass(frozen=True)
class ServedOnDemandView:
    name: str
    # Each source view and its features given to the transformation.
    sources: list[tuple[str, list[str]]]
    features: list[str]
    request_fields: list[str]
    # The view as the registry holds it (its transformation included).
    definition: bytes


@dataclass(frozen=True)
class ServedPrecomputed:
    service: str
    plan: _native.ViewPlan = field(compare=False)
    # The TTL in whole seconds of each view of the service that has one, by the name the
    # service gives it, as Feast's pre-computed path judges staleness.
    ttls: list[tuple[str, int]]


@dataclass(frozen=True)
class WritableView:
    """A feature view ``/push`` and ``/write-to-online-store`` write natively."""

    name: str
    plan: _native.ViewPlan = field(compare=False)
    # Feast parses it (a push without it, or with times it cannot read, is refused).
    created_column: str | None


def _writes(
    store: FeatureStore,
    all_views: list[FeatureView],
    views: dict[str, FeatureView],
    served: list[ServedView],
    services: list[FeatureService],
) -> tuple[list[WritableView], list[tuple[str, list[str]]]]:
    """The feature views written natively (of ``views``, those ``served``): plain ones
    whose batch source maps no fields (Feast renames those columns first); and the push
    sources whose every view is one (Feast pushes to stream and label views its own way)
    and in none of the pre-computed ``services`` (Feast computes the service's vectors
    again after a push)."""
    plans = {view.name: view.plan for view in served}
    writable = [
        WritableView(
            name=view.name,
            plan=plans[view.name],
            created_column=view.batch_source.created_timestamp_column or None,
        )
        for view in views.values()
        if type(view) is FeatureView
        and view.batch_source is not None
        and view.batch_source.timestamp_field
        and not view.batch_source.field_mapping
    ]
    fed: dict[str, list[str]] = {}
    for view in [*all_views, *store.list_stream_feature_views(allow_cache=True)]:
        if isinstance(view.stream_source, PushSource):
            fed.setdefault(view.stream_source.name, []).append(view.name)
    refused = {
        projection.name
        for service in services
        if getattr(service, "precompute_online", False)
        for projection in service.feature_view_projections
    }
    for label_view in getattr(store, "list_label_views", lambda **_: [])(allow_cache=True):
        if isinstance(label_view.source, PushSource):
            fed.setdefault(label_view.source.name, []).append(label_view.name)
            refused.add(label_view.name)
    names = {view.name for view in writable} - refused
    pushes = [
        (source, sorted(targets))
        for source, targets in sorted(fed.items())
        if all(target in names for target in targets)
    ]
    return writable, pushes


def _precomputed(
    store: FeatureStore, plans: Plans, service: FeatureService, views: dict[str, FeatureView]
) -> ServedPrecomputed:
    ttls: dict[str, int | None] = {}
    for projection in service.feature_view_projections:
        ttl = views[projection.name].ttl
        ttls[projection.name_to_use()] = int(ttl.total_seconds()) if ttl else None
    first = views[service.feature_view_projections[0].name]
    return ServedPrecomputed(
        service=service.name,
        plan=plans.precomputed(store.config, service.name, first),
        ttls=[(name, seconds) for name, seconds in ttls.items() if seconds is not None],
    )


def _on_demand_views(store: FeatureStore, served: set[str]) -> list[ServedOnDemandView]:
    """The on-demand views whose sources the server reads natively, transformed by
    Feast's code. Left to Feast: those written to the online store, with aggregations
    or entities of their own (not Feast's placeholder), of another mode than pandas and
    python, or with a source renamed or re-keyed by a projection."""
    on_demand = []
    for view in store.list_on_demand_feature_views(allow_cache=True):
        sources = list(view.source_feature_view_projections.values())
        if (
            view.write_to_online_store
            or getattr(view, "aggregations", None)
            or set(getattr(view, "entities", None) or ()) - {DUMMY_ENTITY_NAME}
            or view.mode not in ("pandas", "python")
            or any(
                p.name not in served
                or p.name_alias
                or p.join_key_map
                or getattr(p, "version_tag", None) is not None
                for p in sources
            )
        ):
            continue
        on_demand.append(
            ServedOnDemandView(
                name=view.name,
                sources=[(p.name, [f.name for f in p.features]) for p in sources],
                features=[f.name for f in view.features],
                request_fields=sorted(view.get_request_data_schema()),
                definition=view.to_proto().SerializeToString(deterministic=True),
            )
        )
    return on_demand


Catalog = tuple[
    list[ServedView],
    list[ServedOnDemandView],
    list[tuple[str, list[ServedProjection]]],
    list[ServedPrecomputed],
    tuple[list[WritableView], list[tuple[str, list[str]]]],
]


def _catalog(store: FeatureStore, plans: Plans) -> Catalog:
    """The feature views the server reads natively, the on-demand views made of them
    and the feature services made of those (a pre-computed one read from its vectors
    where Feast's own path answers each row as asked, else left to Feast; one with
    on-demand views left to Feast when a projection renames or re-keys its view); the
    views it writes natively, and the push sources feeding them."""
    all_views = store.list_feature_views(allow_cache=True)
    feature_views = {view.name: view for view in all_views if view.entity_columns}
    views = [
        ServedView(
            name=view.name,
            plan=plans.view(store.config, view),
            version=getattr(view, "current_version_number", 0) or 0,
            definition=view.to_proto().SerializeToString(deterministic=True),
        )
        for view in feature_views.values()
    ]
    on_demand = _on_demand_views(store, set(feature_views))
    served_on_demand = {view.name for view in on_demand}
    servable = feature_views.keys() | served_on_demand
    services = []
    precomputed = []
    all_services = store.list_feature_services()
    for service in all_services:
        projections = service.feature_view_projections
        with_on_demand = any(p.name in served_on_demand for p in projections)
        if (
            not projections
            or any(p.name not in servable for p in projections)
            or (with_on_demand and any(p.name_alias or p.join_key_map for p in projections))
        ):
            continue
        # Feast reads a service with on-demand views from its views, pre-computed or not.
        if getattr(service, "precompute_online", False) and not with_on_demand:
            if not _feast.PRECOMPUTED_ROWS_AS_ASKED:
                continue
            precomputed.append(_precomputed(store, plans, service, feature_views))
        services.append(
            (
                service.name,
                [
                    ServedProjection(
                        view=p.name,
                        name=p.name_to_use(),
                        metadata_name=p.name_alias or p.name,
                        features=[f.name for f in p.features],
                        join_key_map=dict(p.join_key_map),
                    )
                    for p in projections
                ],
            )
        )
    writes = _writes(store, all_views, feature_views, views, all_services)
    return views, on_demand, services, precomputed, writes


class FeastApp:
    """Feast's own FastAPI app, run on an event loop of its own thread, answering the
    requests the native server hands over."""

    def __init__(self, store: FeatureStore) -> None:
        # The registry is refreshed by `serve`, for Feast's app and the catalog alike.
        self._app = get_app(store, registry_ttl_sec=0)
        self._grpc = GrpcServicer(store)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._requests: dict[int, tuple[asyncio.Task, asyncio.Event]] = {}
        self._thread = threading.Thread(target=self._run, name="feast-app", daemon=True)

    def routes(self) -> list[str]:
        """The path templates of Feast's app."""
        return sorted({route.path for route in self._app.routes if hasattr(route, "path")})

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        try:
            async with self._app.router.lifespan_context(self._app):
                self._started.set()
                await self._stopping.wait()
        except BaseException as error:  # handed to start()
            self._error = error
            self._started.set()

    def dispatch(
        self,
        request_id: int,
        method: str,
        path: str,
        headers: list[tuple[str, bytes]],
        body: bytes,
        client: tuple[str, int],
        scheme: str,
        reply: Callable[[int, list[tuple[str, bytes]], bytes], None],
    ) -> None:
        """Called by the native server: answers through ``reply`` once Feast's app has."""
        self._loop.call_soon_threadsafe(
            self._start, request_id, method, path, headers, body, client, scheme, reply
        )

    def cancel(self, request_id: int) -> None:
        """Called by the native server when the client of ``request_id`` went away."""
        self._loop.call_soon_threadsafe(self._cancel, request_id)

    def _start(self, request_id, method, path, headers, body, client, scheme, reply) -> None:
        if method == GRPC_METHOD:
            # Feast's servicer blocks: it runs on the loop's threads, not on the loop.
            call = self._loop.run_in_executor(None, self._grpc.answer, path, headers, body)
            call.add_done_callback(lambda done: reply(*done.result()))
            return
        disconnected = asyncio.Event()
        task = self._loop.create_task(
            self._handle(method, path, headers, body, client, scheme, reply, disconnected)
        )
        self._requests[request_id] = (task, disconnected)
        task.add_done_callback(lambda _: self._requests.pop(request_id, None))

    def _cancel(self, request_id: int) -> None:
        if (request := self._requests.get(request_id)) is not None:
            task, disconnected = request
            # The app hears of it as of any ASGI server's; what it does not wind up by
            # itself is cancelled.
            disconnected.set()
            self._loop.call_later(CANCEL_GRACE_SECONDS, task.cancel)

    async def _handle(
        self, method, path, headers, body, client, scheme, reply, disconnected
    ) -> None:
        raw_path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": scheme,
            # As uvicorn gives it to Starlette: percent-decoded, the raw path beside it.
            "path": unquote(raw_path),
            "raw_path": raw_path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(name.lower().encode(), value) for name, value in headers],
            "client": client,
            "server": None,
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        status: int | None = None
        response_headers: list[tuple[str, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = [(k.decode(), v) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self._app(scope, receive, send)
        except asyncio.CancelledError:
            return  # the client went away: nobody waits for an answer
        except Exception:
            # Starlette re-raises an error after its handler has answered (to have it
            # logged): the answer stands; without one, it is a 500.
            if status is None:
                logger.exception("Feast's app failed on %s %s", method, raw_path)
        if status is None:
            status, response_headers, chunks = 500, [], [b'"Internal Server Error"']
        reply(status, response_headers, b"".join(chunks))


# The method of the requests the native server hands over for Feast's gRPC servicer.
GRPC_METHOD = "GRPC"


class _Context:
    """What Feast's servicer is given of grpcio's ``ServicerContext``."""

    def __init__(self, metadata: dict[str, str]) -> None:
        self.code: Any = None
        self.details = ""
        self._metadata = metadata

    def set_code(self, code: Any) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def abort(self, code: Any, details: str) -> NoReturn:
        self.code, self.details = code, details
        raise _Aborted

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._metadata.items())

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> None:
        return None


class _Aborted(Exception):
    pass


class GrpcServicer:
    """Feast's ``GrpcFeatureServer`` (``feast listen``'s servicer), called with the
    serialized requests the native server hands over; answers as grpcio would."""

    def __init__(self, store: FeatureStore) -> None:
        from feast.protos.feast.serving import GrpcServer_pb2, ServingService_pb2

        self._requests = {
            "GetOnlineFeatures": ServingService_pb2.GetOnlineFeaturesRequest,
            "Push": GrpcServer_pb2.PushRequest,
            "WriteToOnlineStore": GrpcServer_pb2.WriteToOnlineStoreRequest,
        }
        self._store = store
        try:
            self._servicer: Any = _feast.grpc_feature_servicer(store)
        except ImportError as error:
            self._servicer = None
            self._missing = str(error)

    def answer(
        self, path: str, headers: list[tuple[str, bytes]], body: bytes
    ) -> tuple[int, list[tuple[str, bytes]], bytes]:
        """``(status code, [("grpc-message", details)], serialized response)``, in a
        context of its own: the caller's user is the call's alone."""
        return contextvars.Context().run(self._answer, path, headers, body)

    def _answer(
        self, path: str, headers: list[tuple[str, bytes]], body: bytes
    ) -> tuple[int, list[tuple[str, bytes]], bytes]:
        method = path.rpartition("/")[2]
        if self._servicer is None:
            return _status(
                _UNIMPLEMENTED,
                f"GrpcFeatureServer/{method} is answered by Feast's servicer, which needs "
                f"grpcio ({self._missing}): pip install 'feast-redis-rs[grpc]'",
            )
        if method not in self._requests:
            return _status(_UNIMPLEMENTED, f"GrpcFeatureServer has no method {method}")
        metadata = {
            name: value.decode("latin-1") for name, value in headers if not name.endswith("-bin")
        }
        try:
            _feast.authenticate_grpc_call(metadata)
        except AuthenticationError as error:
            # Feast's message may quote the header it could not read: never send it back.
            details = str(error)
            for value in metadata.values():
                details = details.replace(value, "<redacted>") if value else details
            return _status(_UNAUTHENTICATED, details)
        context = _Context(metadata)
        try:
            request = self._requests[method].FromString(body)
            _feast.authorize_grpc_call(self._store, method, request)
            response = getattr(self._servicer, method)(request, context)
        except _Aborted:
            return _status(context.code.value[0], context.details)
        except FeastPermissionError as error:
            # As Feast's gRPC servers with auth answer it (their ErrorInterceptor).
            return _status(_PERMISSION_DENIED, str(error))
        except Exception as error:
            # As grpcio answers a servicer's uncaught exception.
            logger.exception("Exception calling application: %s", error)
            return _status(_UNKNOWN, f"Exception calling application: {error}")
        if context.code is not None and context.code.value[0] != 0:
            code = context.code.value[0]
            if code == _INTERNAL and _feast.is_permission_error(context.details):
                code = _PERMISSION_DENIED
            return _status(code, context.details)
        return 0, [], response.SerializeToString()


_UNKNOWN = 2
_PERMISSION_DENIED = 7
_UNIMPLEMENTED = 12
_INTERNAL = 13
_UNAUTHENTICATED = 16


def _status(code: int, details: str) -> tuple[int, list[tuple[str, bytes]], bytes]:
    return code, [("grpc-message", details.encode())], b""


class _ServerLog(logging.Handler):
    """Log records through the native server's log queue: a full or closed stderr
    drops them (counted in the metrics) instead of stalling the thread that logs."""

    def __init__(self, server: _native.FeatureServer) -> None:
        super().__init__()
        self._server = server
        self.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._server.log(self.format(record))
        except Exception:
            self.handleError(record)


_URL_CREDENTIALS = re.compile(r"(://)[^/@\s]*@")


def _without_secrets(text: str) -> str:
    """``text`` with URL credentials and ``password=`` values hidden."""
    return _PASSWORD.sub(r"\1<redacted>", _URL_CREDENTIALS.sub(r"\1<redacted>@", text))


def serve(
    store: FeatureStore,
    options: ServerOptions,
    registry_ttl_sec: int = 60,
    on_ready: Callable[[str, int], None] | None = None,
) -> float | None:
    """Serves ``store`` until SIGTERM or SIGINT; in-flight requests finish first, within
    ``options.shutdown_timeout`` in all. Returns the seconds of it left, or ``None`` when
    a second signal cut the shutdown short."""
    config = store.config
    if not isinstance(config.online_store, RedisOnlineStoreConfig):
        raise ValueError(
            "feast-redis-rs serve needs online_store: type: feast_redis_rs.RedisOnlineStore "
            f"in feature_store.yaml (this repo has {type(config.online_store).__name__}); "
            "use feast serve for other stores"
        )
    # Feast's own authentication and authorization, set up as `feast serve` sets them up.
    auth_type = str_to_auth_manager_type(config.auth_config.type)
    init_security_manager(auth_type=auth_type, fs=store)
    init_auth_manager(
        auth_type=auth_type, server_type=ServerType.REST, auth_config=config.auth_config
    )
    protected = auth_type != AuthManagerType.NONE
    decide = None
    if protected:
        logger.info(
            "auth type %s: a read is answered natively once Feast's auth allows its token "
            "(the decision reused for up to %g s and until the registry is read again); "
            "Feast's app answers the rest",
            config.auth_config.type,
            options.auth_cache_seconds,
        )

        def decide(
            authorization: str, feature_service: str | None, features: list[str], written: list[str]
        ) -> float | None:
            return _feast.decide_request(store, authorization, feature_service, features, written)

        if options.metrics and options.metrics_port is None:
            # Not beside an authenticated API for anyone to read: on a port of its own.
            options = replace(options, metrics_port=STOCK_METRICS_PORT)
    if options.metrics and options.metrics_port is not None:
        logger.info("metrics at http://%s:%d/metrics", options.metrics_host, options.metrics_port)
    online_store = _feast.online_store_of(store)
    if not isinstance(online_store, RedisOnlineStore):
        raise ValueError("the repo's online store is not feast_redis_rs.RedisOnlineStore")
    client = online_store._get_client(config.online_store)
    plans = Plans()
    try:
        served = _catalog(store, plans)
    except Exception as error:
        # Say what failed without a traceback: e.g. an on-demand view's transformation
        # whose module is not installed where the server runs.
        raise ValueError(
            f"cannot read the feature views, on-demand views and services of the registry "
            f"of {store.repo_path}: {type(error).__name__}: {_without_secrets(str(error))}"
        ) from error
    _feast.transform_from_columns()
    app = FeastApp(store)
    app.start()
    server = _native.FeatureServer(
        options,
        client,
        app.dispatch,
        app.cancel,
        app.routes(),
        _feast.SERVED_VERSION_METADATA,
        _feast.SERVED_NULL_STATUS,
        feast.__version__,
        decide,
        partial(_feast.on_demand_features, store),
    )
    stop_refreshing = threading.Event()

    def catalog() -> Catalog:
        return _catalog(store, plans)

    def refresh() -> None:
        nonlocal served
        try:
            store.refresh_registry()
            fresh = catalog()
        except Exception as error:
            logger.exception("cannot read the registry; serving the catalog read before")
            server.set_stale(
                f"cannot read the registry since {datetime.now(timezone.utc).isoformat()}: "
                f"{type(error).__name__}: {_without_secrets(str(error))}"
            )
            return
        # The same catalog again keeps the answers kept for it.
        if fresh == served:
            server.keep_catalog()
        else:
            server.update(*fresh)
            served = fresh

    def refresh_every_ttl() -> None:
        while registry_ttl_sec > 0 and not stop_refreshing.wait(registry_ttl_sec):
            refresh()

    server.update(*served)
    refresher = threading.Thread(target=refresh_every_ttl, name="registry-refresh", daemon=True)
    refresher.start()

    def ready(host: str, port: int) -> None:
        scheme = "https" if options.tls_cert_path else "http"
        logger.info(
            "feast-redis-rs serve: listening on %s://%s:%d with %d worker threads",
            scheme, host, port, options.workers,
        )  # fmt: skip
        if on_ready is not None:
            on_ready(host, port)

    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers = [_ServerLog(server)]
    left = None
    try:
        left = server.run(ready)
    finally:
        root.handlers = handlers
        stop_refreshing.set()
        if left is not None:
            app.stop(timeout=left)
    return left

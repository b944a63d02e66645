"""Pre-computed feature services (``precompute_online``) read natively by
``feast-redis-rs serve``: one stored vector per entity, decoded here, the JSON equal to
stock ``feast serve``'s on the same repo and Redis (fresh, stale: a view older than its
TTL) with Feast's app never asked, and over gRPC equal to stock ``feast listen``'s. A
request Feast's pre-computed path refuses (a vector missing, names the vectors do not
hold) goes to Feast's app and gets stock's answer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from feast import FeatureService, FeatureView
from feast.protos.feast.serving import GrpcServer_pb2_grpc, ServingService_pb2
from feast.protos.feast.serving.ServingService_pb2_grpc import ServingServiceStub
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_redis_rs import RedisOnlineStoreConfig, _feast

from . import loan_repo
from .feature_servers import (
    assert_native_and_as_stock,
    columns,
    ours_and_stock_channels,
    ours_and_stock_servers,
)
from .test_grpc import by_name
from .test_server import fallbacks

pytestmark = pytest.mark.skipif(
    not _feast.PRECOMPUTED_ROWS_AS_ASKED,
    reason="the server reads pre-computed services where Feast's own path answers each "
    "request row as asked (Feast 0.67); before, they are Feast's app's",
)

WRITTEN = loan_repo.ZIPCODES[:6]
# Entities written, repeated, out of order.
ZIPCODES = [WRITTEN[3], WRITTEN[0], WRITTEN[3], WRITTEN[5], WRITTEN[1]]
NEVER_WRITTEN = 1


def stale_view(zipcodes: FeatureView) -> FeatureView:
    """The zipcode view's features under another name, with a TTL its data is older than."""
    return FeatureView(
        name="stale_zipcodes",
        entities=[loan_repo.entities()[0]],
        ttl=timedelta(days=1),
        schema=zipcodes.schema,
        source=zipcodes.batch_source,
    )


@pytest.fixture(scope="module")
def precomputed_repo(redis_server, tmp_path_factory):
    """The loan repo with its zipcodes written twice (once under a short TTL), and
    services of them with their vectors pre-computed."""
    repo = tmp_path_factory.mktemp("precomputed-repo")
    store = loan_repo.feature_store(
        repo, RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    redis_server.client().flushall()
    zipcodes = loan_repo.views(repo)[0]
    stale = stale_view(zipcodes)
    store.apply(
        [
            stale,
            FeatureService(name="vectors", features=[zipcodes], precompute_online=True),
            FeatureService(
                name="stale_vectors",
                features=[zipcodes[["z_i64", "z_text"]], stale[["z_f64", "z_when"]]],
                precompute_online=True,
            ),
            FeatureService(name="not_precomputed", features=[zipcodes]),
        ]
    )
    frame = loan_repo.frame(zipcodes)
    frame = frame[frame["zipcode"].isin(WRITTEN)]
    store.write_to_online_store(zipcodes.name, frame)
    store.write_to_online_store(stale.name, frame)
    for service in ("vectors", "stale_vectors"):
        assert store.precompute_feature_service(service) == len(WRITTEN)
    return repo


@pytest.fixture(scope="module")
def servers(redis_server, precomputed_repo):
    with ours_and_stock_servers(precomputed_repo, redis_server.address) as servers:
        yield servers


def service_request(service: str, zipcodes: list[int], full_feature_names: bool = True) -> dict:
    return {
        "feature_service": service,
        "entities": {"zipcode": zipcodes},
        "full_feature_names": full_feature_names,
    }


@pytest.mark.parametrize("service", ["vectors", "stale_vectors"], ids=["fresh", "stale"])
def test_precomputed_services_are_answered_natively_as_stock_answers_them(servers, service):
    answered = assert_native_and_as_stock(servers, service_request(service, ZIPCODES), fallbacks)
    statuses = {name: set(column["statuses"]) for name, column in answered.items()}
    if service == "stale_vectors":
        assert statuses["stale_zipcodes__z_f64"] == {"OUTSIDE_MAX_AGE"}
        assert statuses["zipcode_features__z_i64"] == {"PRESENT"}
    else:
        assert set().union(*statuses.values()) == {"PRESENT"}


def test_the_vectors_hold_what_the_views_hold(servers):
    """Each row's values are its own entity's stored features (as the same service
    without pre-computed vectors reads them), stamped with the time they were
    pre-computed."""
    ours, _ = servers
    _, precomputed = ours.post("/get-online-features", service_request("vectors", ZIPCODES))
    _, read = ours.post("/get-online-features", service_request("not_precomputed", ZIPCODES))
    vectors, views = columns(precomputed), columns(read)
    assert vectors.keys() == views.keys()
    for name, column in views.items():
        assert vectors[name]["values"] == column["values"], name
    stamps = vectors["zipcode_features__z_i64"]["event_timestamps"]
    assert stamps != views["zipcode_features__z_i64"]["event_timestamps"]
    assert stamps[0] == stamps[2] and min(stamps) > "2026"


@pytest.mark.parametrize(
    "request_body",
    [
        # An entity without a vector: Feast's flow refuses the request.
        service_request("vectors", [*ZIPCODES, NEVER_WRITTEN]),
        # Short names: the vectors hold full names only, which Feast's path refuses.
        service_request("vectors", ZIPCODES, full_feature_names=False),
    ],
    ids=["vector-missing", "short-names"],
)
def test_what_feasts_precomputed_path_refuses_gets_stocks_answer(servers, request_body):
    ours, stock = servers
    before = fallbacks(ours)
    status, answer = ours.request("POST", "/get-online-features", request_body)
    stock_status, expected = stock.request("POST", "/get-online-features", request_body)
    assert (status, answer) == (stock_status, expected)
    assert status == 500
    assert fallbacks(ours) == before + 1


@pytest.fixture(scope="module")
def channels(redis_server, precomputed_repo):
    with ours_and_stock_channels(precomputed_repo, redis_server.address) as channels:
        yield channels


@pytest.mark.parametrize("service", ["vectors", "stale_vectors"], ids=["fresh", "stale"])
def test_grpc_precomputed_services_equal_stock_feast_listen(channels, service):
    ours, ours_channel, stock_channel = channels
    request = ServingService_pb2.GetOnlineFeaturesRequest(
        feature_service=service, full_feature_names=True
    )
    request.entities["zipcode"].CopyFrom(
        RepeatedValue(val=[ValueProto(int64_val=zipcode) for zipcode in ZIPCODES])
    )
    before = fallbacks(ours)
    answer = GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel).GetOnlineFeatures(request)
    expected = GrpcServer_pb2_grpc.GrpcFeatureServerStub(stock_channel).GetOnlineFeatures(request)
    assert fallbacks(ours) == before, "the call must be answered natively"
    assert len(by_name(answer)) > 2
    assert by_name(answer) == by_name(expected)
    serving = ServingServiceStub(ours_channel).GetOnlineFeatures(request)
    assert by_name(serving) == by_name(expected)

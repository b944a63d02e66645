"""On-demand feature views read natively by ``feast-redis-rs serve``: their sources read
from Redis here, their transformations run by Feast's own code, the JSON equal to stock
``feast serve``'s on the same repo and Redis, with Feast's app never asked (its fallback
counter stays put), in feature services too, and over gRPC equal to stock ``feast
listen``'s. What the native path leaves to Feast (a failing transformation, request
data missing, a service that renames a view, request data in a gRPC call) gets stock's
answer."""

from __future__ import annotations

import json

import grpc
import pandas as pd
import pytest
from feast import FeatureService, Field, OnDemandFeatureView, RequestSource
from feast.protos.feast.serving import GrpcServer_pb2_grpc, ServingService_pb2
from feast.protos.feast.serving.ServingService_pb2_grpc import ServingServiceStub
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Float64, Int64, String

from feast_redis_rs import RedisOnlineStoreConfig

from . import loan_repo
from .feature_servers import (
    assert_native_and_as_stock,
    columns,
    ours_and_stock_channels,
    ours_and_stock_servers,
)
from .test_grpc import by_name
from .test_server import fallbacks, scaled_wages


def shifted_counts(inputs: dict) -> dict:
    """Python mode: a stored Int64 plus the request's offset (None stays None)."""
    counts = inputs.get("z_i64", inputs.get("zipcode_features__z_i64"))
    return {
        "shifted": [
            None if count is None else count + offset
            for count, offset in zip(counts, inputs["offset"], strict=True)
        ]
    }


def labelled(inputs: dict) -> dict:
    """Python mode, one row at a time (``singleton``)."""
    text = inputs.get("c_text", inputs.get("credit_history__c_text"))
    return {"label": f"{text}#{inputs['offset']}"}


def ratio(features: pd.DataFrame) -> pd.DataFrame:
    """Pandas mode over two sources, with no request data."""
    return pd.DataFrame({"ratio": features["z_f64"] / features["c_f64"]})


def broken(features: pd.DataFrame) -> pd.DataFrame:
    """Fails on any request of more than one row (``apply`` infers its schema on one)."""
    if len(features) > 1:
        raise ValueError("this transformation fails")
    return pd.DataFrame({"never": features["z_f64"]})


def pandas_inputs(features: pd.DataFrame) -> pd.DataFrame:
    """Every column a pandas transformation is given, its dtype and each row's value."""
    names = sorted(features.columns)
    return pd.DataFrame(
        {
            "pandas_seen": [
                "|".join(f"{n}:{features[n].dtype}:{features[n].iloc[i]!r}" for n in names)
                for i in range(len(features))
            ]
        }
    )


def python_inputs(inputs: dict) -> dict:
    """Every column a python transformation is given, each row's value and its type."""
    names = sorted(inputs)
    rows = len(inputs[names[0]])
    return {
        "python_seen": [
            "|".join(f"{n}:{type(inputs[n][i]).__name__}:{inputs[n][i]!r}" for n in names)
            for i in range(rows)
        ]
    }


def on_demand_objects(repo) -> list:
    zipcodes, credit, _ = loan_repo.views(repo)
    offset = RequestSource(name="offset_source", schema=[Field(name="offset", dtype=Int64)])

    def view(name, sources, field, dtype, udf, **extra) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name=name,
            sources=sources,
            schema=[Field(name=field, dtype=dtype)],
            udf=udf,
            udf_string=udf.__name__,
            **extra,
        )

    scaled = loan_repo.on_demand_view(repo, "scaled_view", "factor", "scaled", scaled_wages)
    return [
        *scaled,
        offset,
        view("shifted_view", [zipcodes, offset], "shifted", Int64, shifted_counts, mode="python"),
        view(
            "labelled_view",
            [credit[["c_text"]], offset],
            "label",
            String,
            labelled,
            mode="python",
            singleton=True,
        ),
        ratio_view := view("ratio_view", [zipcodes, credit[["c_f64"]]], "ratio", Float64, ratio),
        view("broken_view", [zipcodes], "never", Float64, broken),
        # What the transformations are given: every stored type, nulls, lists, request data.
        view(
            "pandas_inputs_view", [zipcodes, credit, offset], "pandas_seen", String, pandas_inputs
        ),
        view(
            "python_inputs_view",
            [zipcodes, credit, offset],
            "python_seen",
            String,
            python_inputs,
            mode="python",
        ),
        FeatureService(name="with_on_demand", features=[zipcodes[["z_f64"]], scaled[1]]),
        # On-demand views without request data, one source not in the service.
        FeatureService(name="ratios", features=[ratio_view, credit[["c_f64", "c_text"]]]),
        FeatureService(
            name="renamed_with_on_demand",
            features=[zipcodes[["z_f64"]].with_name("renamed"), scaled[1]],
        ),
    ]


@pytest.fixture(scope="module")
def on_demand_repo(redis_server, tmp_path_factory):
    """The loan repo with its data written and the on-demand views above."""
    repo = tmp_path_factory.mktemp("on-demand-repo")
    store = loan_repo.feature_store(
        repo, RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    redis_server.client().flushall()
    for view in loan_repo.views(repo):
        store.write_to_online_store(view.name, loan_repo.frame(view))
    store.apply(on_demand_objects(repo))
    return repo


@pytest.fixture(scope="module")
def servers(redis_server, on_demand_repo):
    with ours_and_stock_servers(on_demand_repo, redis_server.address) as servers:
        yield servers


@pytest.fixture(scope="module")
def channels(redis_server, on_demand_repo):
    with ours_and_stock_channels(on_demand_repo, redis_server.address) as channels:
        yield channels


ROWS = loan_repo.entity_rows()
ENTITIES = {
    "zipcode": [row["zipcode"] for row in ROWS],
    "dob_ssn": [row["dob_ssn"] for row in ROWS],
}
REQUEST_DATA = {
    "factor": [0.5 * i - 2 for i in range(len(ROWS))],
    "offset": [i * 1_000 - 7 for i in range(len(ROWS))],
}


# The columns each view reads: join keys and request data.
READS = {
    "zipcode_features": ["zipcode"],
    "credit_history": ["dob_ssn"],
    "loan_features": ["zipcode", "dob_ssn"],
    "scaled_view": ["zipcode", "factor"],
    "shifted_view": ["zipcode", "offset"],
    "labelled_view": ["dob_ssn", "offset"],
    "ratio_view": ["zipcode", "dob_ssn"],
    "pandas_inputs_view": ["zipcode", "dob_ssn", "offset"],
    "python_inputs_view": ["zipcode", "dob_ssn", "offset"],
}


def entities_read_by(features: list[str]) -> dict[str, list]:
    """The request's columns for ``features``: those their views read (a column nothing
    reads is left to Feast's app)."""
    columns = {**ENTITIES, **REQUEST_DATA}
    read = {column for ref in features for column in READS[ref.split(":")[0]]}
    return {name: values for name, values in columns.items() if name in read}


@pytest.mark.parametrize("full_feature_names", [False, True], ids=["short-names", "full-names"])
@pytest.mark.parametrize(
    "features",
    [
        ["zipcode_features:z_f64", "scaled_view:scaled"],
        ["scaled_view:scaled"],
        ["zipcode_features:z_i64", "credit_history:c_text", "shifted_view:shifted"],
        ["labelled_view:label", "credit_history:c_f64"],
        ["ratio_view:ratio", "loan_features:l_text"],
        [
            "scaled_view:scaled",
            "shifted_view:shifted",
            "labelled_view:label",
            "ratio_view:ratio",
            "zipcode_features:z_text_list",
        ],
        ["pandas_inputs_view:pandas_seen", "python_inputs_view:python_seen"],
    ],
    ids=[
        "pandas",
        "only-on-demand",
        "python",
        "singleton",
        "two-sources",
        "all-modes",
        "inputs-seen",
    ],
)
def test_on_demand_views_are_answered_natively_as_stock_answers_them(
    servers, features, full_feature_names
):
    request = {
        "features": features,
        "entities": entities_read_by(features),
        "full_feature_names": full_feature_names,
    }
    assert len(assert_native_and_as_stock(servers, request, fallbacks)) > 1


def test_the_transformation_sees_the_rows_read_for_this_request(servers):
    """Values computed from what this request read: each row's stored value times its
    own factor (rows repeated and entities never written included)."""
    ours, _ = servers
    request = {
        "features": ["zipcode_features:z_f64", "scaled_view:scaled"],
        "entities": {"zipcode": ENTITIES["zipcode"], "factor": REQUEST_DATA["factor"]},
    }
    status, answer = ours.post("/get-online-features", request)
    assert status == 200, answer
    answered = columns(answer)
    stored = answered["z_f64"]["values"]
    assert any(value is None for value in stored) and any(value is not None for value in stored)
    for value, scaled, factor in zip(
        stored, answered["scaled"]["values"], REQUEST_DATA["factor"], strict=True
    ):
        assert scaled == (None if value is None else pytest.approx(value * factor))


@pytest.mark.parametrize(
    "request_body",
    [
        # A transformation that raises.
        {"features": ["broken_view:never"], "entities": {"zipcode": ENTITIES["zipcode"]}},
        # Request data missing.
        {"features": ["scaled_view:scaled"], "entities": {"zipcode": ENTITIES["zipcode"]}},
        # A feature service with an on-demand view and a view it renames.
        {
            "feature_service": "renamed_with_on_demand",
            "entities": {"zipcode": ENTITIES["zipcode"], "factor": REQUEST_DATA["factor"]},
        },
    ],
    ids=["transformation-fails", "request-data-missing", "renamed-in-a-service"],
)
def test_what_the_native_path_leaves_to_feast_gets_stocks_answer(servers, request_body):
    ours, stock = servers
    before = fallbacks(ours)
    status, answer = ours.request("POST", "/get-online-features", request_body)
    stock_status, expected = stock.request("POST", "/get-online-features", request_body)
    assert status == stock_status
    assert fallbacks(ours) == before + 1
    if status == 200:
        assert columns(json.loads(answer)) == columns(json.loads(expected))
    else:
        assert answer == expected


SERVICE_REQUESTS = {
    "with_on_demand": {"zipcode": ENTITIES["zipcode"], "factor": REQUEST_DATA["factor"]},
    "ratios": ENTITIES,
}


@pytest.mark.parametrize("full_feature_names", [False, True], ids=["short-names", "full-names"])
@pytest.mark.parametrize("service", SERVICE_REQUESTS)
def test_feature_services_with_on_demand_views_are_answered_natively(
    servers, service, full_feature_names
):
    request = {
        "feature_service": service,
        "entities": SERVICE_REQUESTS[service],
        "full_feature_names": full_feature_names,
    }
    assert len(assert_native_and_as_stock(servers, request, fallbacks)) > 2


def grpc_request(features: list[str], **extra) -> ServingService_pb2.GetOnlineFeaturesRequest:
    request = ServingService_pb2.GetOnlineFeaturesRequest(
        features=ServingService_pb2.FeatureList(val=features), **extra
    )
    for name, values in entities_read_by(features).items():
        kind = {int: "int64_val", float: "double_val", str: "string_val"}[type(values[0])]
        request.entities[name].CopyFrom(
            RepeatedValue(val=[ValueProto(**{kind: value}) for value in values])
        )
    return request


@pytest.mark.parametrize("full_feature_names", [False, True], ids=["short-names", "full-names"])
def test_grpc_on_demand_views_equal_stock_feast_listen(channels, full_feature_names):
    ours, ours_channel, stock_channel = channels
    request = grpc_request(
        ["ratio_view:ratio", "zipcode_features:z_f64", "credit_history:c_text"],
        full_feature_names=full_feature_names,
    )
    before = fallbacks(ours)
    answer = GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel).GetOnlineFeatures(request)
    expected = GrpcServer_pb2_grpc.GrpcFeatureServerStub(stock_channel).GetOnlineFeatures(request)
    assert fallbacks(ours) == before, "the call must be answered natively"
    assert len(by_name(answer)) == 5
    assert by_name(answer) == by_name(expected)
    serving = ServingServiceStub(ours_channel).GetOnlineFeatures(request)
    assert by_name(serving) == by_name(expected)


def test_grpc_a_feature_service_with_on_demand_views_equals_stock_feast_listen(channels):
    ours, ours_channel, stock_channel = channels
    request = grpc_request(["ratio_view:ratio", "credit_history:c_f64"])
    # The `kind` oneof: naming the service clears the features.
    request.feature_service = "ratios"
    before = fallbacks(ours)
    answer = GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel).GetOnlineFeatures(request)
    expected = GrpcServer_pb2_grpc.GrpcFeatureServerStub(stock_channel).GetOnlineFeatures(request)
    assert fallbacks(ours) == before, "the call must be answered natively"
    assert len(by_name(answer)) == 5
    assert by_name(answer) == by_name(expected)


def test_grpc_request_data_is_left_to_feasts_servicer(channels):
    """Request data in a message's entities: Feast's servicer answers, as stock's."""
    ours, ours_channel, stock_channel = channels
    request = grpc_request(["zipcode_features:z_f64", "scaled_view:scaled"])

    def call(channel):
        try:
            return by_name(
                GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel).GetOnlineFeatures(request)
            )
        except grpc.RpcError as error:
            return error.code()

    before = fallbacks(ours)
    assert call(ours_channel) == call(stock_channel)
    assert fallbacks(ours) == before + 1

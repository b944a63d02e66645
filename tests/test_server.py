"""``feast-redis-rs serve`` against stock ``feast serve`` on the same repo and Redis: the
same JSON for the same requests (every dtype, nulls, absent and repeated entities, two
join keys, a feature service, full names, version metadata), Feast's statuses for bad
requests, the endpoints Feast's app answers, limits, metrics and shutdown."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import timedelta

import pandas as pd
import pytest
from feast import FeatureService, FeatureStore, FeatureView, Field, FileSource
from feast.types import Int64, String

from feast_redis_rs import RedisOnlineStoreConfig, _feast

from . import loan_repo
from .feature_servers import columns, feast_error, ours_and_stock_servers

# Feast 0.60 to 0.63's `feast serve` cannot answer Bytes features (it puts the raw bytes
# in its JSON and answers 500); this server answers them base64-encoded, as Feast 0.64 on
# does. Under those releases the answers are compared without them.
STOCK_ANSWERS_BYTES = _feast.FEAST >= (0, 64)


def comparable_refs() -> list[str]:
    """The loan repo's features that stock `feast serve` can answer."""
    return [
        ref
        for ref in loan_repo.feature_refs()
        if STOCK_ANSWERS_BYTES or not ref.endswith(("_raw", "_raw_list"))
    ]


@pytest.fixture(scope="module")
def served_repo(redis_server, tmp_path_factory):
    """The loan repo with its data written, a view for writes over HTTP, an on-demand view
    and a feature service of the features stock can answer."""
    repo = tmp_path_factory.mktemp("served-repo")
    store = loan_repo.feature_store(
        repo, RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    redis_server.client().flushall()
    for view in loan_repo.views(repo):
        store.write_to_online_store(view.name, loan_repo.frame(view))
    comparable = FeatureService(
        name="comparable",
        features=[
            view[[f.name for f in view.features if f"{view.name}:{f.name}" in comparable_refs()]]
            for view in loan_repo.views(repo)
        ],
    )
    store.apply([written_view(repo), comparable, *on_demand_objects(repo)])
    return repo


@pytest.fixture(scope="module")
def servers(redis_server, served_repo):
    """Ours (with /metrics) and stock's, serving the loan repo."""
    with ours_and_stock_servers(
        served_repo, redis_server.address, "--max-body-bytes", "65536"
    ) as servers:
        yield servers


def written_view(repo) -> FeatureView:
    """A view that the tests write to over HTTP."""
    return FeatureView(
        name="http_view",
        entities=[loan_repo.entities()[1]],
        ttl=timedelta(days=1),
        schema=[Field(name="h_count", dtype=Int64), Field(name="h_text", dtype=String)],
        source=FileSource(path=str(repo / "http.parquet"), timestamp_field="event_timestamp"),
    )


def scaled_wages(features_df: pd.DataFrame) -> pd.DataFrame:
    """An on-demand feature: a stored feature times a value of the request."""
    return pd.DataFrame({"scaled": features_df["z_f64"] * features_df["factor"]})


def on_demand_objects(repo) -> list:
    return loan_repo.on_demand_view(repo, "scaled_view", "factor", "scaled", scaled_wages)


def fallbacks(server) -> int:
    """How many requests the server handed to Feast's app so far."""
    status, text = server.request("GET", "/metrics")
    assert status == 200
    found = re.findall(r"^feast_redis_rs_feast_fallbacks_total (\d+)$", text.decode(), re.M)
    return int(found[0])


def online_request(**extra) -> dict:
    rows = loan_repo.entity_rows()
    return {
        "features": comparable_refs(),
        "entities": {
            "zipcode": [r["zipcode"] for r in rows],
            "dob_ssn": [r["dob_ssn"] for r in rows],
        },
        **extra,
    }


@pytest.mark.parametrize(
    "request_body",
    [
        online_request(full_feature_names=True),
        online_request(),
        online_request(include_feature_view_version_metadata=True, full_feature_names=True),
        {
            "feature_service": "comparable",
            "entities": online_request()["entities"],
            "full_feature_names": True,
        },
        {
            "features": ["credit_history:c_f64", "credit_history:c_text_list"],
            "entities": {"dob_ssn": [*loan_repo.APPLICANTS[:3], "nobody", loan_repo.APPLICANTS[0]]},
        },
    ],
    ids=["full-names", "short-names", "version-metadata", "feature-service", "one-view"],
)
def test_answers_equal_stock_feast_serve(servers, request_body):
    ours, stock = servers
    before = fallbacks(ours)
    status, answer = ours.post("/get-online-features", request_body)
    stock_status, expected = stock.post("/get-online-features", request_body)
    assert (status, stock_status) == (200, 200), answer
    assert fallbacks(ours) == before, "the request must be answered natively"
    assert columns(answer) == columns(expected)
    assert answer["metadata"].get("feature_view_metadata") == expected["metadata"].get(
        "feature_view_metadata"
    )
    assert set(answer) == set(expected)


def test_bytes_features_are_answered_base64_encoded(servers, served_repo):
    """As Feast's SDK reads them from the same Redis, base64-encoded as Feast 0.64's
    server answers (0.60 to 0.63's answers 500)."""
    ours, _ = servers
    refs = [ref for ref in loan_repo.feature_refs() if ref.endswith(("_raw", "_raw_list"))]
    entities = online_request()["entities"]
    status, answer = ours.post("/get-online-features", {"features": refs, "entities": entities})
    assert status == 200, answer
    sdk = FeatureStore(repo_path=str(served_repo), fs_yaml_file=served_repo / "stock.yaml")
    rows = [
        dict(zip(entities, values, strict=True)) for values in zip(*entities.values(), strict=True)
    ]
    expected = sdk.get_online_features(features=refs, entity_rows=rows).to_dict()

    def encoded(value):
        if value is None:
            return None
        if isinstance(value, list):
            return [base64.b64encode(item).decode() for item in value]
        return base64.b64encode(value).decode()

    raw = {name for name in expected if name.endswith(("_raw", "_raw_list"))}
    assert len(raw) == len(refs)
    answered = {name: columns(answer)[name]["values"] for name in raw}
    assert answered == {name: [encoded(v) for v in expected[name]] for name in raw}
    assert any(v is not None for v in answered["z_raw"]), "some values are present"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"features": ["no_such_view:x"], "entities": {"zipcode": [1]}}).encode(),
        json.dumps(
            {"features": ["zipcode_features:no_such"], "entities": {"zipcode": [1]}}
        ).encode(),
        json.dumps(
            {"features": ["zipcode_features:z_i64"], "entities": {"dob_ssn": ["a"]}}
        ).encode(),
        json.dumps(
            {"features": ["zipcode_features:z_i64"], "entities": {"zipcode": ["x"]}}
        ).encode(),
        json.dumps({"features": ["zipcode_features:z_i64"]}).encode(),
    ],
    ids=[
        "malformed",
        "unknown-view",
        "unknown-feature",
        "missing-join-key",
        "wrong-type",
        "no-entities",
    ],
)
def test_bad_requests_get_feasts_status_and_error(servers, body):
    ours, stock = servers
    status, content = ours.request("POST", "/get-online-features", raw=body)
    stock_status, stock_content = stock.request("POST", "/get-online-features", raw=body)
    assert status == stock_status, (content, stock_content)
    assert status >= 400
    assert json.loads(content) == json.loads(stock_content)


def test_health_unknown_paths_and_the_access_log(servers):
    ours, stock = servers
    assert ours.request("GET", "/health")[0] == 200
    assert '"GET /health HTTP/1.1" 200 OK' in ours.log.read_text()
    assert ours.request("GET", "/no-such-path")[0] == stock.request("GET", "/no-such-path")[0]


def test_paths_reach_feasts_app_percent_decoded_as_stock_reads_them(servers):
    ours, stock = servers
    push = {"push_source_name": "no_such_source", "df": {"x": [1]}}
    for path in ("/push", "/pus%68"):
        assert ours.post(path, push)[0] == stock.post(path, push)[0] == 422, path


def test_oversized_bodies_are_refused_with_413(servers):
    ours, _ = servers
    status, content = ours.request("POST", "/get-online-features", raw=b"x" * 70_000)
    assert status == 413
    assert "65536" in feast_error(content) and "--max-body-bytes" in feast_error(content)
    assert ours.request("GET", "/health")[0] == 200


def test_writes_go_through_feasts_app_with_its_statuses(servers, redis_server):
    ours, stock = servers
    push = {
        "push_source_name": "no_such_source",
        "df": {"dob_ssn": ["x"], "event_timestamp": ["2021-08-25T12:00:00"]},
    }
    assert ours.post("/push", push)[0] == stock.post("/push", push)[0]
    row = {
        "dob_ssn": ["written-by-http"],
        "event_timestamp": ["2030-01-01T00:00:00+00:00"],
        "h_count": [42],
        "h_text": ["hello"],
    }
    write = {"feature_view_name": "http_view", "df": row, "allow_registry_cache": True}
    assert stock.post("/write-to-online-store", write)[0] == 200
    redis_server.client().flushdb()  # the next write is ours alone
    assert ours.post("/write-to-online-store", write)[0] == 200
    status, answer = ours.post(
        "/get-online-features",
        {"features": ["http_view:h_count", "http_view:h_text"],
         "entities": {"dob_ssn": ["written-by-http"]}},
    )  # fmt: skip
    assert status == 200
    assert columns(answer)["h_count"]["values"] == [42]
    assert columns(answer)["h_text"]["values"] == ["hello"]


def test_metrics_count_requests_by_endpoint_and_status(servers):
    ours, _ = servers
    ours.post("/get-online-features", online_request())
    status, text = ours.request("GET", "/metrics")
    text = text.decode()
    assert status == 200
    assert re.search(
        r'^feast_redis_rs_requests_total\{endpoint="/get-online-features",status="200"\} [1-9]',
        text,
        re.M,
    )
    assert 'feast_redis_rs_request_duration_seconds_bucket{endpoint="/get-online-features"' in text
    assert re.search(r"^feast_redis_rs_requests_in_flight 1$", text, re.M)
    assert re.search(r"^feast_redis_rs_redis_errors_total 0$", text, re.M)


def test_concurrent_connections_all_answered(servers):
    ours, stock = servers
    body = online_request(full_feature_names=True)
    expected = columns(stock.post("/get-online-features", body)[1])
    failures: list[object] = []
    deadline = time.monotonic() + 5

    def client() -> None:
        while time.monotonic() < deadline:
            status, answer = ours.post("/get-online-features", body)
            if status != 200 or columns(answer) != expected:
                failures.append((status, answer))
                return

    threads = [threading.Thread(target=client) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures

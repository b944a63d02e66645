"""A repo protected with Feast's OIDC auth and permissions: ``feast-redis-rs serve``
answers exactly as ``feast serve`` does (the same 401/403/200 for the same token and
permission set), against an OIDC issuer made at test time; a repo whose auth type Feast
does not know is an error at start, never an open server."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from feast import FeatureView, Field, FileSource, PushSource
from feast.permissions.action import AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy
from feast.protos.feast.serving import GrpcServer_pb2, GrpcServer_pb2_grpc, ServingService_pb2
from feast.protos.feast.serving.ServingService_pb2_grpc import ServingServiceStub
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Int64

from feast_redis_rs import RedisOnlineStoreConfig

from . import loan_repo
from .feature_servers import BIN, columns, start_server, start_stock_listen, write_repo_yaml
from .oidc_issuer import CLIENT_ID, Issuer
from .redis_servers import free_port
from .test_grpc import by_name

REQUEST = {
    "features": ["zipcode_features:z_i64", "zipcode_features:z_text"],
    "entities": {"zipcode": loan_repo.ZIPCODES[:3]},
}


def readers(*roles: str) -> Permission:
    """READ_ONLINE on every feature view for the `roles`."""
    return Permission(
        name="readers",
        types=[FeatureView],
        policy=RoleBasedPolicy(roles=list(roles)),
        actions=[AuthzedAction.READ_ONLINE],
    )


def protect(repo, redis_server, issuer: Issuer):
    """The loan repo in `repo` with OIDC auth by `issuer` and a reader permission, its
    zipcodes written; returns its store, ours' and stock's feature_store.yaml."""
    store = loan_repo.feature_store(
        repo, RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    zipcodes = loan_repo.views(repo)[0]
    store.write_to_online_store(zipcodes.name, loan_repo.frame(zipcodes))
    zipcode_readers = Permission(
        name="zipcode-readers",
        types=[FeatureView],
        name_patterns=["zipcode_features"],
        policy=RoleBasedPolicy(roles=["zipcode-reader"]),
        actions=[AuthzedAction.READ_ONLINE],
    )
    pushes = PushSource(
        name="zipcode_push",
        batch_source=FileSource(
            path=str(repo / "pushed.parquet"), timestamp_field="event_timestamp"
        ),
    )
    pushed = FeatureView(
        name="pushed_zipcodes",
        entities=[loan_repo.entities()[0]],
        schema=[Field(name="p_i64", dtype=Int64)],
        source=pushes,
    )
    pushers = Permission(
        name="pushers",
        types=[FeatureView],
        name_patterns=["pushed_zipcodes"],
        policy=RoleBasedPolicy(roles=["pusher"]),
        actions=[AuthzedAction.WRITE_ONLINE],
    )
    store.apply([readers("reader"), zipcode_readers, pushed, pushers])
    auth = {
        "type": "oidc",
        "client_id": CLIENT_ID,
        "auth_discovery_url": f"{issuer.url}/.well-known/openid-configuration",
    }
    ours_yaml = write_repo_yaml(
        repo,
        "ours.yaml",
        {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_server.address},
        auth=auth,
    )
    stock_yaml = write_repo_yaml(
        repo, "stock.yaml", {"type": "redis", "connection_string": redis_server.address}, auth=auth
    )
    return store, ours_yaml, stock_yaml


@pytest.fixture(scope="module")
def protected(redis_server, tmp_path_factory):
    """Ours and stock's serving the loan repo with OIDC auth and a reader permission (the
    registry not read again while the tests run: decisions are kept meanwhile)."""
    issuer = Issuer()
    repo = tmp_path_factory.mktemp("protected-repo")
    _, ours_yaml, stock_yaml = protect(repo, redis_server, issuer)
    metrics_port = free_port()
    ours = start_server(
        "feast-redis-rs", repo, ours_yaml, "--no-access-log", "--metrics",
        "--metrics-port", str(metrics_port), "--registry_ttl_sec", "3600",
    )  # fmt: skip
    ours.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    stock = start_server("feast", repo, stock_yaml, "--no-access-log")
    ours.repo, ours.stock_yaml = repo, stock_yaml
    yield issuer, ours, stock
    ours.stop()
    stock.stop()
    issuer.stop()


def post(server, token: str | None, request: dict = REQUEST) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return server.request(
        "POST", "/get-online-features", raw=json.dumps(request).encode(), headers=headers
    )


def test_tokens_get_feasts_answers(protected):
    issuer, ours, stock = protected
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "no token": None,
        "not a token": "garbage",
        "signed by another key": issuer.token(["reader"], key=forged),
        "without the permission": issuer.token(["writer"]),
        "a reader": issuer.token(["reader"]),
    }
    statuses = {}
    for case, token in cases.items():
        status, content = post(ours, token)
        stock_status, stock_content = post(stock, token)
        assert status == stock_status, (case, content, stock_content)
        statuses[case] = status
        if status == 200:
            assert columns(json.loads(content)) == columns(json.loads(stock_content))
    assert statuses["no token"] in (401, 403)
    assert statuses["signed by another key"] in (401, 403)
    assert statuses["without the permission"] == 403
    assert statuses["a reader"] == 200


def counters(server) -> dict[str, float]:
    """The server's count of requests answered by Feast's app, and of Feast's auth
    decisions made for the native path."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    pattern = r"^feast_redis_rs_(feast_fallbacks_total|auth_decisions_total) (\S+)$"
    return {name: float(value) for name, value in re.findall(pattern, text, re.M)}


def test_an_allowed_token_is_read_natively_on_one_decision(protected):
    """Feast decides once for a token and the features it asks for; the reads are then
    native (none goes to Feast's app) and equal stock's. A refusal is never kept: each
    refused request is Feast's app's to answer, with its 401 or 403."""
    issuer, ours, stock = protected
    reader = issuer.token(["reader"])
    expected = columns(json.loads(post(stock, reader)[1]))
    before = counters(ours)
    answers = [post(ours, reader) for _ in range(5)]
    assert [status for status, _ in answers] == [200] * 5
    assert all(columns(json.loads(content)) == expected for _, content in answers)
    after = counters(ours)
    assert after["feast_fallbacks_total"] == before["feast_fallbacks_total"]
    assert after["auth_decisions_total"] == before["auth_decisions_total"] + 1

    writer = issuer.token(["writer"])
    assert [post(ours, writer)[0] for _ in range(3)] == [post(stock, writer)[0]] * 3 == [403] * 3
    assert [post(ours, None)[0] for _ in range(2)] == [post(stock, None)[0]] * 2
    refused = counters(ours)
    assert refused["feast_fallbacks_total"] == after["feast_fallbacks_total"] + 5
    assert refused["auth_decisions_total"] == after["auth_decisions_total"]


PUSH = {
    "push_source_name": "zipcode_push",
    # Zipcodes of their own: the other tests read the loan repo's.
    "df": {"zipcode": [1, 2], "p_i64": [10, 20], "event_timestamp": ["2026-01-01T00:00:00Z"] * 2},
}


def pushed(server, token: str | None, redis_server) -> tuple[int, dict]:
    """``server``'s answer to ``PUSH`` by ``token``, and the hashes it wrote (then
    deleted, for the next server to write)."""
    client = redis_server.client()
    before = set(client.keys("*"))
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    status, _ = server.request("POST", "/push", raw=json.dumps(PUSH).encode(), headers=headers)
    written = {key: client.hgetall(key) for key in set(client.keys("*")) - before}
    if written:
        client.delete(*written)
    return status, written


def test_pushes_get_feasts_answers_and_an_allowed_one_is_written_natively(protected, redis_server):
    """WRITE_ONLINE on the views a push writes, decided once by Feast for the token:
    the push is then written natively, the same bytes as stock's; every refusal is
    Feast's app's (its 401 or 403, nothing written)."""
    issuer, ours, stock = protected
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pusher = issuer.token(["pusher"])
    cases = {
        "no token": None,
        "signed by another key": issuer.token(["pusher"], key=forged),
        "a reader only": issuer.token(["reader"]),
        "a pusher": pusher,
    }
    for case, token in cases.items():
        before = counters(ours)
        status, written = pushed(ours, token, redis_server)
        stock_status, stock_written = pushed(stock, token, redis_server)
        assert (status, written) == (stock_status, stock_written), case
        after = counters(ours)
        if case == "a pusher":
            assert status == 200 and len(written) == 2
            assert after["feast_fallbacks_total"] == before["feast_fallbacks_total"]
            assert after["auth_decisions_total"] == before["auth_decisions_total"] + 1
        else:
            assert status in (401, 403) and not written, case
            assert after["feast_fallbacks_total"] == before["feast_fallbacks_total"] + 1
    assert cases and pushed(ours, pusher, redis_server)[0] == 200
    assert counters(ours)["auth_decisions_total"] == after["auth_decisions_total"], "kept"
    # A read decision does not let a pusher read, nor a push decision a reader write.
    assert post(ours, pusher)[0] == post(stock, pusher)[0] == 403


def test_a_decision_covers_only_what_it_asked_for(protected):
    """A token allowed one view only: a decision kept for a read of it never lets the
    same token read another view, whatever else the request carries (an empty
    ``feature_service``, which Feast passes over, included)."""
    issuer, ours, stock = protected
    token = issuer.token(["zipcode-reader"])
    allowed = {"features": ["zipcode_features:z_i64"], "entities": {"zipcode": [76100]}}
    other = {"features": ["credit_history:c_i64"], "entities": {"dob_ssn": ["someone"]}}
    for extra in ({}, {"feature_service": ""}):
        for request, status in ((allowed, 200), (other, 403), (allowed, 200), (other, 403)):
            request = {**request, **extra}
            assert post(ours, token, request)[0] == post(stock, token, request)[0] == status


def test_a_decision_is_not_kept_past_its_tokens_expiry(protected):
    issuer, ours, stock = protected
    # exp is whole seconds, so a token's life may be a second shorter than asked: 4
    # leaves the two reads below at least 3 s on a loaded machine.
    lifetime = 4
    token = issuer.token(["reader"], lifetime=lifetime)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    before = counters(ours)
    assert post(ours, token)[0] == 200
    assert post(ours, token)[0] == 200
    assert time.time() < expires, "the reads took the token's whole life"
    assert counters(ours)["auth_decisions_total"] == before["auth_decisions_total"] + 1
    time.sleep(expires - time.time() + 0.5)
    # Expired, but within the 10 s Feast allows for clocks apart: Feast decides again,
    # and allows it, as stock does.
    assert post(ours, token)[0] == post(stock, token)[0] == 200
    assert counters(ours)["auth_decisions_total"] == before["auth_decisions_total"] + 2


def test_a_permission_removed_by_apply_stops_within_one_registry_ttl(redis_server, tmp_path):
    issuer = Issuer()
    store, ours_yaml, stock_yaml = protect(tmp_path, redis_server, issuer)
    ours = start_server("feast-redis-rs", tmp_path, ours_yaml, "--registry_ttl_sec", "1")
    stock = start_server("feast", tmp_path, stock_yaml, "--registry_ttl_sec", "1")
    try:
        reader = issuer.token(["reader"])
        assert post(ours, reader)[0] == post(stock, reader)[0] == 200
        store.apply([readers("auditor")])
        applied = time.monotonic()
        while post(ours, reader)[0] == 200:
            assert time.monotonic() - applied < 1 + 2, "the decision outlived the registry's ttl"
            time.sleep(0.05)
        assert post(ours, reader)[0] == 403
        time.sleep(1.5)
        assert post(stock, reader)[0] == 403
        # And a permission granted is honoured from the next refresh on.
        assert post(ours, issuer.token(["auditor"]))[0] == 200
    finally:
        ours.stop()
        stock.stop()
        issuer.stop()


def test_metrics_are_not_served_beside_the_authenticated_api(protected):
    issuer, ours, stock = protected
    assert post(ours, issuer.token(["reader"]))[0] == 200
    # On the API's port, /metrics is Feast's app's to answer, as on stock's.
    status = ours.request("GET", "/metrics")[0]
    assert status != 200 and status == stock.request("GET", "/metrics")[0]
    # On a port of their own, bound to loopback.
    with urllib.request.urlopen(ours.metrics_url, timeout=10) as response:
        text = response.read().decode()
    assert 'feast_redis_rs_requests_total{endpoint="/get-online-features",status="200"}' in text


def test_an_auth_type_feast_does_not_know_is_an_error_not_an_open_server(redis_server, tmp_path):
    repo = tmp_path / "repo"
    loan_repo.feature_store(repo, RedisOnlineStoreConfig(connection_string=redis_server.address))
    yaml_file = write_repo_yaml(
        repo,
        "odd.yaml",
        {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_server.address},
        auth={"type": "ldap"},
    )
    result = subprocess.run(
        [str(BIN / "feast-redis-rs"), "-c", str(repo), "-f", str(yaml_file), "serve", "-p", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot load the feature repo" in result.stderr and "ldap" in result.stderr
    assert "Traceback" not in result.stderr


def grpc_online_request() -> ServingService_pb2.GetOnlineFeaturesRequest:
    request = ServingService_pb2.GetOnlineFeaturesRequest(
        features=ServingService_pb2.FeatureList(val=REQUEST["features"])
    )
    request.entities["zipcode"].val.extend(
        ValueProto(int64_val=zipcode) for zipcode in REQUEST["entities"]["zipcode"]
    )
    return request


def test_grpc_calls_are_authenticated_by_their_bearer_token(protected, redis_server):
    """gRPC carries the token in its ``authorization`` metadata, as Feast's gRPC servers
    read it: no token, a bad or expired one is UNAUTHENTICATED, a token without the
    permission PERMISSION_DENIED (writes too, and nothing is written), a reader gets
    what stock ``feast listen`` (which checks nothing) answers on the same repo."""
    issuer, ours, _ = protected
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stock = start_stock_listen(ours.repo, ours.stock_yaml)
    channel = grpc.insecure_channel(ours.url.removeprefix("http://"))
    stub = GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel)

    def call(method, request, authorization: str | None):
        metadata = [("authorization", authorization)] if authorization else []
        try:
            return grpc.StatusCode.OK, method(request, metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            return error.code(), error.details()

    try:
        request = grpc_online_request()
        refused = {
            "no token": None,
            "not a bearer token": "Basic c2VjcmV0LXZhbHVl",
            "not a token": "Bearer garbage",
            "signed by another key": f"Bearer {issuer.token(['reader'], key=forged)}",
            "expired": f"Bearer {issuer.token(['reader'], lifetime=-60)}",
        }
        for case, authorization in refused.items():
            code, details = call(stub.GetOnlineFeatures, request, authorization)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (case, details)
            assert "c2VjcmV0LXZhbHVl" not in details
        code, details = call(stub.GetOnlineFeatures, request, f"Bearer {issuer.token(['writer'])}")
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
        assert "Permission error" in details
        reader = f"Bearer {issuer.token(['reader'])}"
        code, answer = call(stub.GetOnlineFeatures, request, reader)
        assert code == grpc.StatusCode.OK, answer
        expected = GrpcServer_pb2_grpc.GrpcFeatureServerStub(stock.channel).GetOnlineFeatures(
            request
        )
        # Stock orders a view's features as a Python set iterates them.
        assert by_name(answer) == by_name(expected)
        # The Go and Java servers' contract is checked the same way.
        serving = ServingServiceStub(channel)
        assert call(serving.GetOnlineFeatures, request, None)[0] == grpc.StatusCode.UNAUTHENTICATED
        code, serving_answer = call(serving.GetOnlineFeatures, request, reader)
        assert code == grpc.StatusCode.OK
        assert by_name(serving_answer) == by_name(expected)

        write = GrpcServer_pb2.WriteToOnlineStoreRequest(feature_view_name="zipcode_features")
        write.typed_features["zipcode"].int64_val = 1
        write.typed_features["z_i64"].int64_val = 41
        write.typed_features["event_timestamp"].unix_timestamp_val = 1_700_000_000
        keys = set(redis_server.client().keys())
        assert call(stub.WriteToOnlineStore, write, None)[0] == grpc.StatusCode.UNAUTHENTICATED
        code, details = call(stub.WriteToOnlineStore, write, reader)
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
        assert set(redis_server.client().keys()) == keys
    finally:
        channel.close()
        stock.stop()


def test_a_push_is_decided_before_its_columns_take_memory(protected, redis_server):
    """A push's `df` is read, and the dozen times its body it holds reserved, only once
    Feast allows the token: without a token, a push past ``--max-buffered-mb`` gets Feast's
    401 (as stock's) and leaves the budget alone; an allowed one is shed with a 503."""
    issuer, ours, stock = protected
    small = start_server(
        "feast-redis-rs", ours.repo, ours.repo / "ours.yaml", "--no-access-log",
        "--max-buffered-mb", "1", "--max-body-bytes", "500000",
    )  # fmt: skip
    try:
        rows = 5000
        df = {
            "zipcode": list(range(10, 10 + rows)),
            "p_i64": list(range(rows)),
            "event_timestamp": ["2026-01-01T00:00:00Z"] * rows,
        }
        body = json.dumps({"push_source_name": "zipcode_push", "df": df}).encode()
        assert 100_000 < len(body) < 500_000
        keys = redis_server.client().dbsize()
        anonymous = [server.request("POST", "/push", raw=body)[0] for server in (small, stock)]
        assert anonymous[0] == anonymous[1] in (401, 403)
        headers = {"Authorization": f"Bearer {issuer.token(['pusher'])}"}
        status, answer = small.request("POST", "/push", raw=body, headers=headers)
        assert status == 503 and b"--max-buffered-mb" in answer
        assert redis_server.client().dbsize() == keys
    finally:
        small.stop()

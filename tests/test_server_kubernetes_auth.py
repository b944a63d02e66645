"""A repo protected with Feast's Kubernetes auth, served from a "pod" whose API server is
a stand-in the tests start (``kubernetes_api``: TokenReview and RBAC role bindings over
HTTPS): ``feast-redis-rs serve`` answers every token as ``feast serve`` does, reads the
allowed natively, asks the API server once per token and question while the decision is
kept, and on every request with ``--auth-cache-seconds 0``."""

from __future__ import annotations

import json
import os
import re
import urllib.request

import pytest

from feast_redis_rs import RedisOnlineStoreConfig

from . import loan_repo
from .feature_servers import columns, start_server, write_repo_yaml
from .kubernetes_api import SERVER_NAMESPACE, KubernetesApi, service_account_token
from .redis_servers import free_port
from .test_server_auth import REQUEST, post, readers

ROLE = "feast-reader"


@pytest.fixture(scope="module")
def cluster(redis_server, tmp_path_factory):
    """The API server stand-in with its tokens and bindings; ours (decisions kept, and
    kept for no time) and stock's serving the loan repo with Kubernetes auth."""
    workdir = tmp_path_factory.mktemp("kubernetes-repo")
    api = KubernetesApi(workdir / "api")
    store = loan_repo.feature_store(
        workdir, RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    zipcodes = loan_repo.views(workdir)[0]
    store.write_to_online_store(zipcodes.name, loan_repo.frame(zipcodes))
    store.apply([readers(ROLE)])
    ours_yaml = write_repo_yaml(
        workdir,
        "ours.yaml",
        {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_server.address},
        auth={"type": "kubernetes"},
    )
    stock_yaml = write_repo_yaml(
        workdir,
        "stock.yaml",
        {"type": "redis", "connection_string": redis_server.address},
        auth={"type": "kubernetes"},
    )
    env = api.in_cluster_env(dict(os.environ))
    servers = {}
    for name, options in (("kept", ()), ("every request", ("--auth-cache-seconds", "0"))):
        metrics_port = free_port()
        server = start_server(
            "feast-redis-rs", workdir, ours_yaml, "--no-access-log", "--metrics",
            "--metrics-port", str(metrics_port), "--registry_ttl_sec", "3600", *options,
            env=env,
        )  # fmt: skip
        server.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        servers[name] = server
    stock = start_server("feast", workdir, stock_yaml, "--no-access-log", env=env)
    yield api, servers, stock
    for server in (*servers.values(), stock):
        server.stop()
    api.stop()


def service_account(api: KubernetesApi, namespace: str, name: str, role: str | None) -> str:
    """A service account's token, known to the API server, bound to ``role`` in the
    server's namespace if given."""
    token = service_account_token(namespace, name)
    api.add_token(
        token,
        f"system:serviceaccount:{namespace}:{name}",
        ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
    )
    if role is not None:
        api.bind(SERVER_NAMESPACE, role, "ServiceAccount", name, namespace)
    return token


def counters(server) -> dict[str, float]:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    pattern = r"^feast_redis_rs_(feast_fallbacks_total|auth_decisions_total) (\S+)$"
    return {name: float(value) for name, value in re.findall(pattern, text, re.M)}


def test_tokens_get_feasts_answers_and_the_allowed_are_read_natively(cluster):
    api, servers, stock = cluster
    api.add_token("alice-opaque-token", "alice", ["data-scientists"])
    api.bind(SERVER_NAMESPACE, ROLE, "Group", "data-scientists")
    cases = {
        "no token": None,
        "not a token the API server knows": "garbage",
        "a service account without the role": service_account(api, "team-a", "stranger", None),
        "a service account bound to the role": service_account(api, "team-a", "reader", ROLE),
        "a user whose group is bound to the role": "alice-opaque-token",
    }
    for server in servers.values():
        before = counters(server)
        statuses = {}
        for case, token in cases.items():
            status, content = post(server, token)
            stock_status, stock_content = post(stock, token)
            assert status == stock_status, (case, content, stock_content)
            if status == 200:
                assert columns(json.loads(content)) == columns(json.loads(stock_content))
            else:
                assert content == stock_content, case
            statuses[case] = status
        assert statuses == {
            "no token": 401,
            "not a token the API server knows": 401,
            "a service account without the role": 403,
            "a service account bound to the role": 200,
            "a user whose group is bound to the role": 200,
        }
        after = counters(server)
        # The three refused went to Feast's app; the two allowed were read natively.
        assert after["feast_fallbacks_total"] == before["feast_fallbacks_total"] + 3


def test_a_kept_decision_asks_the_api_server_once(cluster):
    api, servers, stock = cluster
    token = service_account(api, "team-b", "batch-scorer", ROLE)
    for server, decisions, reviews in ((servers["kept"], 1, 1), (servers["every request"], 5, 5)):
        before, reviewed = counters(server), api.token_reviews()
        assert [post(server, token)[0] for _ in range(5)] == [200] * 5
        after = counters(server)
        assert after["auth_decisions_total"] == before["auth_decisions_total"] + decisions
        assert after["feast_fallbacks_total"] == before["feast_fallbacks_total"]
        assert api.token_reviews() == reviewed + reviews
    # Stock asks on every request.
    reviewed = api.token_reviews()
    assert [post(stock, token)[0] for _ in range(5)] == [200] * 5
    assert api.token_reviews() == reviewed + 5


def test_a_binding_removed_stops_at_once_with_no_decision_kept(cluster):
    api, servers, stock = cluster
    token = service_account(api, "team-c", "temporary", ROLE)
    ours = servers["every request"]
    assert post(ours, token)[0] == post(stock, token)[0] == 200
    with api._lock:
        api.role_bindings = [
            b for b in api.role_bindings if b["subjects"][0].get("name") != "temporary"
        ]
    assert post(ours, token)[0] == post(stock, token)[0] == 403
    assert post(ours, token, {**REQUEST, "full_feature_names": True})[0] == 403

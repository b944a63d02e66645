"""Auto-pipelining across a process' threads (``auto_pipelining: true``): threads whose
reads to a node overlap share one connection and its writes, each getting its own
answer, equal to stock Feast's, on every deployment; a shared connection killed under
load costs no request."""

from __future__ import annotations

import pytest

from . import loan_repo
from .conftest import DEPLOYMENTS
from .test_server_pipelining import concurrently, connections_killed

THREADS = 8


def read_all(store, rows: list[dict], features: list[str]) -> list[dict]:
    return [
        store.get_online_features(features=features, entity_rows=[row]).to_dict() for row in rows
    ]


def hammer(store, rows, features, expected, seconds: float) -> list:
    """THREADS threads reading the rows in turn for `seconds`; returns what differed."""

    def answer(index: int) -> dict:
        return store.get_online_features(features=features, entity_rows=[rows[index]]).to_dict()

    return concurrently(answer, expected, seconds, THREADS)


def stats(store) -> dict:
    online_store = store._get_provider().online_store
    return online_store._get_client(store.config.online_store).pipelining_stats()


@pytest.fixture
def repos(deployment, tmp_path):
    """The loan repo written by stock Feast, read by stock Feast and by this store with
    auto-pipelining across threads."""
    stock = loan_repo.feature_store(tmp_path / "stock", deployment.stock())
    for view in loan_repo.views(tmp_path / "stock"):
        stock.write_to_online_store(view.name, loan_repo.frame(view))
    ours = loan_repo.feature_store(tmp_path / "ours", deployment.ours(auto_pipelining=True))
    rows = loan_repo.entity_rows()
    features = loan_repo.feature_refs()
    expected = read_all(stock, rows, features)
    found = [v for answer in expected for column in answer.values() for v in column]
    assert sum(v is not None for v in found) > len(found) / 2, "the data was not written"
    return ours, rows, features, expected


@pytest.mark.parametrize("deployment", DEPLOYMENTS, indirect=True)
def test_threads_in_flight_together_share_a_connection_and_get_stock_answers(repos):
    ours, rows, features, expected = repos
    # One at a time: each alone, on the thread's own connection.
    assert read_all(ours, rows, features) == expected
    assert stats(ours)["pipelines"] == 0

    assert hammer(ours, rows, features, expected, seconds=3) == []
    shared = stats(ours)
    assert shared["pipelines"] > 100, shared
    assert shared["writes"] <= shared["pipelines"], shared


@pytest.mark.parametrize("deployment", ["standalone"], indirect=True)
def test_shared_connections_killed_under_load_cost_no_request(repos, deployment):
    ours, rows, features, expected = repos
    with connections_killed(deployment.master_clients()[0], every=0.4, times=5):
        wrong = hammer(ours, rows, features, expected, seconds=3)
    assert wrong == []
    assert stats(ours)["pipelines"] > 0

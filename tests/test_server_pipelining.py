"""Auto-pipelining in ``feast-redis-rs serve``: requests in flight together share one
connection per Redis node and its writes, on every deployment, each getting its own
answer; a connection killed under load costs no request; a stalled Redis times the
requests on it out and the server recovers; broken replies on a shared connection are
clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time

import pytest

from feast_redis_rs import RedisOnlineStoreConfig

from . import loan_repo
from .conftest import DEPLOYMENTS
from .feature_servers import columns, start_server, write_repo_yaml
from .test_hostile_server import HOSTILE_REPLIES, HostileServer

WORKERS = 2
CLIENTS = 12


def request_bodies() -> list[dict]:
    """Requests for different entities, so that replies handed to the wrong request
    would show: one row each, and one of every row."""
    rows = loan_repo.entity_rows()
    features = [ref for ref in loan_repo.feature_refs() if not ref.endswith(("_raw", "_raw_list"))]
    bodies = [
        {"features": features, "entities": {"zipcode": [r["zipcode"]], "dob_ssn": [r["dob_ssn"]]}}
        for r in rows
    ]
    every_row = {
        "zipcode": [r["zipcode"] for r in rows],
        "dob_ssn": [r["dob_ssn"] for r in rows],
    }
    return [*bodies, {"features": features, "entities": every_row}]


def online_store(deployment, **settings) -> dict:
    return {
        "type": "feast_redis_rs.RedisOnlineStore",
        "redis_type": deployment.redis_type,
        "connection_string": deployment.connection_string,
        "sentinel_master": deployment.sentinel_master,
        **settings,
    }


def write_repo(path, config: RedisOnlineStoreConfig):
    store = loan_repo.feature_store(path, config)
    for view in loan_repo.views(path):
        store.write_to_online_store(view.name, loan_repo.frame(view))
    return store


def metric(server, name: str) -> int:
    status, text = server.request("GET", "/metrics")
    assert status == 200
    return int(re.findall(rf"^feast_redis_rs_{name} (\d+)$", text.decode(), re.M)[0])


def hammer(server, bodies, expected, seconds: float, clients: int = CLIENTS) -> list:
    """`clients` threads sending the bodies in turn (each from a different one) for
    `seconds`; returns what differed from `expected`."""

    def answer(index: int):
        status, body = server.post("/get-online-features", bodies[index])
        return (status, columns(body)) if status == 200 else (status, body)

    return concurrently(answer, [(200, e) for e in expected], seconds, clients)


def concurrently(answer, expected: list, seconds: float, clients: int) -> list:
    """`clients` threads asking `answer(index)` for each index of `expected` in turn
    (each from a different one) for `seconds`; returns `(index, answer)` of each that
    differed."""
    wrong: list = []
    deadline = time.monotonic() + seconds

    def client(offset: int) -> None:
        k = offset
        while time.monotonic() < deadline and not wrong:
            index = k % len(expected)
            found = answer(index)
            if found != expected[index]:
                wrong.append((index, found))
            k += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return wrong


@contextlib.contextmanager
def connections_killed(killer, every: float, times: int):
    """Every client connection but `killer`'s killed (`CLIENT KILL`) `times` times,
    `every` seconds, while the block runs; `killer` is closed after."""

    def kill_repeatedly() -> None:
        for _ in range(times):
            time.sleep(every)
            killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    killing = threading.Thread(target=kill_repeatedly)
    killing.start()
    try:
        yield
    finally:
        killing.join()
        killer.close()


def connections_received(deployment) -> int:
    total = 0
    for client in deployment.master_clients():
        total += client.info("stats")["total_connections_received"]
        client.close()
    return total


@pytest.mark.parametrize("deployment", DEPLOYMENTS, indirect=True)
def test_requests_in_flight_together_share_a_connection_and_its_writes(deployment, tmp_path):
    write_repo(tmp_path, deployment.ours())
    yaml_file = write_repo_yaml(tmp_path, "served.yaml", online_store(deployment))
    server = start_server("feast-redis-rs", tmp_path, yaml_file, "--metrics", "-w", str(WORKERS))
    try:
        bodies = request_bodies()
        # One at a time: each alone, on its thread's own connection.
        expected = []
        for body in bodies:
            status, answer = server.post("/get-online-features", body)
            assert status == 200, answer
            expected.append(columns(answer))
        found = [v for column in expected[-1].values() for v in column["values"]]
        assert sum(v is not None for v in found) > len(found) / 2, "the data was not written"
        before = connections_received(deployment)

        assert hammer(server, bodies, expected, seconds=4) == []

        pipelines, writes = (
            metric(server, "redis_pipelines_total"),
            metric(server, "redis_writes_total"),
        )
        assert pipelines > 100, pipelines
        assert writes < pipelines, "no write carried two requests' pipelines"
        # Per node: the shared connection, and this test's own to read the count. A
        # connection per request in flight would be CLIENTS per node.
        opened = connections_received(deployment) - before
        assert opened <= 2 * len(deployment.masters), opened
        assert metric(server, "redis_errors_total") == 0
    finally:
        server.stop()


@pytest.fixture
def served(redis_server, tmp_path):
    """The loan repo on the session's Redis, served with a short command timeout."""
    redis_server.client().flushall()
    write_repo(tmp_path, RedisOnlineStoreConfig(connection_string=redis_server.address))
    yaml_file = write_repo_yaml(
        tmp_path,
        "served.yaml",
        {
            "type": "feast_redis_rs.RedisOnlineStore",
            "connection_string": redis_server.address,
            "command_timeout_seconds": 0.5,
        },
    )
    server = start_server("feast-redis-rs", tmp_path, yaml_file, "--metrics", "-w", str(WORKERS))
    bodies = request_bodies()
    expected = [columns(server.post("/get-online-features", body)[1]) for body in bodies]
    yield server, bodies, expected
    server.stop()


def test_connections_killed_under_load_cost_no_request(served, redis_server):
    server, bodies, expected = served
    with connections_killed(redis_server.client(), every=0.5, times=5):
        wrong = hammer(server, bodies, expected, seconds=3.5)
    assert wrong == []
    assert metric(server, "redis_errors_total") == 0
    assert metric(server, "redis_writes_total") < metric(server, "redis_pipelines_total")


def test_a_stalled_redis_times_requests_out_and_the_server_recovers(served, redis_server):
    server, bodies, expected = served
    answers: list = []

    def client(body) -> None:
        started = time.monotonic()
        status, answer = server.post("/get-online-features", body)
        answers.append((status, answer, time.monotonic() - started))

    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        threads = [
            threading.Thread(target=client, args=(bodies[i % len(bodies)],)) for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert len(answers) == 8
    for status, answer, took in answers:
        assert status == 500, answer
        assert f"Redis at {redis_server.address} did not answer within 500ms" in json.dumps(answer)
        assert took < 3, took
    # The stalled connections are dropped; new ones answer at once.
    assert hammer(server, bodies, expected, seconds=1) == []


@pytest.mark.parametrize(
    "payload",
    [HOSTILE_REPLIES[name] for name in ("garbage", "truncated-then-closed", "silence")],
    ids=["garbage", "truncated-then-closed", "silence"],
)
def test_broken_replies_on_a_shared_connection_are_clear_errors(payload, tmp_path, redis_server):
    # The registry is applied with a healthy Redis; the server reads from the hostile one.
    loan_repo.feature_store(
        tmp_path, RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    hostile = HostileServer(payload)
    try:
        yaml_file = write_repo_yaml(
            tmp_path,
            "hostile.yaml",
            {
                "type": "feast_redis_rs.RedisOnlineStore",
                "connection_string": hostile.address,
                "command_timeout_seconds": 0.5,
                "retries": 0,
            },
        )
        server = start_server(
            "feast-redis-rs", tmp_path, yaml_file, "--metrics", "-w", str(WORKERS)
        )
        try:
            answers: list = []
            body = request_bodies()[-1]

            def client() -> None:
                started = time.monotonic()
                status, answer = server.post("/get-online-features", body)
                answers.append((status, answer, time.monotonic() - started))

            threads = [threading.Thread(target=client) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert len(answers) == 8
            for status, answer, took in answers:
                assert status == 500, answer
                assert f"Redis at {hostile.address}" in json.dumps(answer)
                assert took < 3, took
            assert metric(server, "redis_pipelines_total") > 0
            assert server.request("GET", "/health")[0] == 200
        finally:
            server.stop()
    finally:
        hostile.stop()

"""``feast-redis-rs serve`` over its life: a registry refresh that brings a new view,
SIGTERM with requests in flight, Redis restarted under load, keys expiring by TTL, HTTPS,
flat memory under 64 connections."""

from __future__ import annotations

import http.client
import importlib
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from feast import FeatureView, Field, FileSource
from feast.types import Int64

from feast_redis_rs import RedisOnlineStoreConfig

from . import loan_repo
from .feature_servers import columns, start_server, write_repo_yaml
from .redis_servers import make_tls_files, start_redis
from .test_server_pipelining import metric

ZIP_REQUEST = {
    "features": ["zipcode_features:z_i64", "zipcode_features:z_text"],
    "entities": {"zipcode": loan_repo.ZIPCODES[:5]},
}


def served_repo(path, redis_address: str):
    """The loan repo with its zipcode data written, and a yaml for this store."""
    store = loan_repo.feature_store(path, RedisOnlineStoreConfig(connection_string=redis_address))
    zipcodes = loan_repo.views(path)[0]
    store.write_to_online_store(zipcodes.name, loan_repo.frame(zipcodes))
    yaml_file = write_repo_yaml(
        path,
        "ours.yaml",
        {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_address,
         "connect_timeout_seconds": 1, "command_timeout_seconds": 2, "retries": 1},
    )  # fmt: skip
    return store, yaml_file


@pytest.fixture
def redis(tmp_path):
    """A Redis of the test's own."""
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_a_refreshed_registry_serves_a_new_view(tmp_path, redis):
    store, yaml_file = served_repo(tmp_path / "repo", redis.address)
    server = start_server("feast-redis-rs", tmp_path / "repo", yaml_file, "-r", "1")
    try:
        new_view = FeatureView(
            name="late_view",
            entities=[loan_repo.entities()[0]],
            ttl=timedelta(days=1),
            schema=[Field(name="late", dtype=Int64)],
            source=FileSource(
                path=str(tmp_path / "late.parquet"), timestamp_field="event_timestamp"
            ),
        )
        store.apply([new_view])
        store.write_to_online_store(
            "late_view",
            loan_repo.frame(loan_repo.views(tmp_path)[0])[["zipcode", "event_timestamp"]].assign(
                late=7
            ),
        )
        request = {"features": ["late_view:late"], "entities": {"zipcode": [76100]}}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, answer = server.post("/get-online-features", request)
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, answer
        assert columns(answer)["late"]["values"] == [7]
    finally:
        server.stop()


def test_an_answer_kept_by_the_near_cache_lasts_until_its_registry_changes(tmp_path, redis):
    store, _ = served_repo(tmp_path / "repo", redis.address)
    yaml_file = write_repo_yaml(
        tmp_path / "repo",
        "cached.yaml",
        {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis.address,
         "near_cache": {"max_entries": 100}},
    )  # fmt: skip
    server = start_server("feast-redis-rs", tmp_path / "repo", yaml_file, "-r", "1", "--metrics")
    try:
        first = server.post("/get-online-features", ZIP_REQUEST)
        assert first[0] == 200
        assert server.post("/get-online-features", ZIP_REQUEST) == first
        assert metric(server, "near_cache_answers_reused_total") == 1
        # Refreshes (every second) that find the registry unchanged keep it.
        time.sleep(2.5)
        assert server.post("/get-online-features", ZIP_REQUEST) == first
        assert metric(server, "near_cache_answers_reused_total") == 2
        # The view dropped from the registry: its kept answer must go with it.
        store.delete_feature_view(loan_repo.views(tmp_path)[0].name)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, answer = server.post("/get-online-features", ZIP_REQUEST)
            if status != 200:
                break
            time.sleep(0.5)
        assert status != 200, answer
        assert "zipcode_features" in json.dumps(answer)
    finally:
        server.stop()


def test_sigterm_lets_requests_in_flight_finish(tmp_path, redis):
    _, yaml_file = served_repo(tmp_path / "repo", redis.address)
    server = start_server("feast-redis-rs", tmp_path / "repo", yaml_file)
    try:
        assert server.post("/get-online-features", ZIP_REQUEST)[0] == 200
        answers: list[int] = []
        # Redis holds every command for 1.5 s: the requests below are in flight meanwhile.
        redis.client().execute_command("CLIENT", "PAUSE", "1500", "ALL")
        threads = [
            threading.Thread(
                target=lambda: answers.append(server.post("/get-online-features", ZIP_REQUEST)[0])
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        assert server.process.wait(timeout=30) == 0
        assert answers == [200] * 4
        with pytest.raises(OSError):
            server.request("GET", "/health", timeout=2)
    finally:
        server.stop()  # a no-op once it has exited


def test_redis_restarted_under_load_fails_only_during_the_outage(tmp_path):
    redis = start_redis(tmp_path / "redis")
    port = redis.port
    _, yaml_file = served_repo(tmp_path / "repo", redis.address)
    server = start_server(
        "feast-redis-rs", tmp_path / "repo", yaml_file, "--metrics", "--no-access-log"
    )
    answers: list[tuple[float, int, object]] = []
    running = threading.Event()
    running.set()

    def load() -> None:
        while running.is_set():
            status, answer = server.post("/get-online-features", ZIP_REQUEST)
            answers.append((time.monotonic(), status, answer))

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1)
        stopped = time.monotonic()
        redis.stop()
        time.sleep(1)
        redis = start_redis(tmp_path / "redis-again", port=port)
        served_repo(tmp_path / "repo-again", redis.address)
        back = time.monotonic()
        time.sleep(2)
    finally:
        running.clear()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()
        redis.stop()
    failures = [(at, status, answer) for at, status, answer in answers if status != 200]
    assert failures, "requests during the outage must fail"
    # Errors only inside the outage (and the in-flight requests at its edges: the client's
    # connect timeout is 1 s), each a 500 naming the Redis address.
    assert all(stopped <= at <= back + 2 for at, _, _ in failures), (stopped, back, failures[-1])
    assert all(status == 500 and f"127.0.0.1:{port}" in answer for _, status, answer in failures)
    recovered = [status for at, status, _ in answers if at > back + 1]
    assert recovered and set(recovered) == {200}
    assert len([a for a in answers if a[0] < stopped]) > 10


def test_ttl_expiry_answers_equal_stock(tmp_path, redis_server):
    repo = tmp_path / "repo"
    store = loan_repo.feature_store(
        repo, RedisOnlineStoreConfig(connection_string=redis_server.address, key_ttl_seconds=2)
    )
    redis_server.client().flushall()
    zipcodes = loan_repo.views(repo)[0]
    store.write_to_online_store(zipcodes.name, loan_repo.frame(zipcodes))
    ours = start_server("feast-redis-rs", repo, write_repo_yaml(repo, "ours.yaml", {
        "type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_server.address,
        "key_ttl_seconds": 2}), "--no-access-log")  # fmt: skip
    stock = start_server("feast", repo, write_repo_yaml(repo, "stock.yaml", {
        "type": "redis", "connection_string": redis_server.address, "key_ttl_seconds": 2}),
        "--no-access-log")  # fmt: skip
    try:
        time.sleep(2.5)  # the keys expire
        status, answer = ours.post("/get-online-features", ZIP_REQUEST)
        stock_status, expected = stock.post("/get-online-features", ZIP_REQUEST)
        assert (status, stock_status) == (200, 200)
        assert columns(answer) == columns(expected)
        assert columns(answer)["z_i64"]["values"] == [None] * 5
        assert redis_server.client().dbsize() == 0
    finally:
        ours.stop()
        stock.stop()


def test_https_with_a_test_ca(tmp_path, redis):
    tls = make_tls_files(tmp_path / "tls")
    _, yaml_file = served_repo(tmp_path / "repo", redis.address)
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    server = start_server(
        "feast-redis-rs", tmp_path / "repo", yaml_file,
        "--cert", str(tls.server_cert), "--key", str(tls.server_key),
        "--tls-handshake-timeout", "1", ssl_context=context,
    )  # fmt: skip
    try:
        request = urllib.request.Request(
            server.url + "/get-online-features",
            data=json.dumps(ZIP_REQUEST).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert response.status == 200
            assert columns(json.loads(response.read()))["z_i64"]["statuses"][0] == "PRESENT"
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(server.url + "/health", timeout=10)
        # Feast's app sees the request as https (Starlette's slash redirect says so).
        port = int(server.url.rsplit(":", 1)[1])
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        connection.request("GET", "/health/")
        redirect = connection.getresponse()
        assert redirect.status == 307
        assert redirect.getheader("location").startswith("https://")
        # A client that never starts its handshake is closed at the handshake timeout.
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        started = time.monotonic()
        assert silent.recv(1) == b""
        assert time.monotonic() - started < 3
    finally:
        server.stop()


def test_64_connections_for_a_while_with_flat_memory(tmp_path, redis):
    _, yaml_file = served_repo(tmp_path / "repo", redis.address)
    server = start_server("feast-redis-rs", tmp_path / "repo", yaml_file, "--no-access-log")
    try:
        expected = columns(server.post("/get-online-features", ZIP_REQUEST)[1])
        failures: list[object] = []
        counts = [0] * 64

        def client(index: int, seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                status, answer = server.post("/get-online-features", ZIP_REQUEST)
                if status != 200 or columns(answer) != expected:
                    failures.append((status, answer))
                    return
                counts[index] += 1

        def load(seconds: float) -> None:
            threads = [threading.Thread(target=client, args=(i, seconds)) for i in range(64)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)

        load(3)
        warmed = rss_kb(server.process.pid)
        load(6)
        assert not failures
        assert sum(counts) > 500
        assert rss_kb(server.process.pid) - warmed < 8_000, (warmed, rss_kb(server.process.pid))
    finally:
        server.stop()


def test_materialize_endpoints_write_what_stock_feast_serve_writes(tmp_path, redis):
    repo = tmp_path / "repo"
    _, yaml_file = served_repo(repo, redis.address)
    zipcodes = loan_repo.views(repo)[0]
    loan_repo.frame(zipcodes).to_parquet(repo / "zipcode_features.parquet")
    stock_yaml = write_repo_yaml(
        repo, "stock.yaml", {"type": "redis", "connection_string": redis.address}
    )
    ours = start_server("feast-redis-rs", repo, yaml_file, "--no-access-log")
    stock = start_server("feast", repo, stock_yaml, "--no-access-log")
    client = redis.client()
    window = {
        "start_ts": (loan_repo.BASE_TIME - timedelta(days=1)).isoformat(),
        "end_ts": (loan_repo.BASE_TIME + timedelta(days=3)).isoformat(),
        "feature_views": ["zipcode_features"],
    }
    try:
        dumps, statuses = {}, {}
        for name, server in (("ours", ours), ("stock", stock)):
            client.flushall()
            statuses[name] = server.request("POST", "/materialize", window)[0]
            dumps[name] = {key: client.hgetall(key) for key in client.keys()}
        assert statuses == {"ours": 200, "stock": 200}
        assert len(dumps["ours"]) == len(loan_repo.ZIPCODES)
        assert dumps["ours"] == dumps["stock"]
        incremental = {"end_ts": window["end_ts"], "feature_views": ["zipcode_features"]}
        assert (
            ours.request("POST", "/materialize-incremental", incremental)[0]
            == stock.request("POST", "/materialize-incremental", incremental)[0]
            == 200
        )
    finally:
        ours.stop()
        stock.stop()


@pytest.mark.parametrize("cores, workers", [("0", 1), ("0,1", 2)])
def test_workers_minus_one_is_one_per_core_the_server_may_run_on(tmp_path, redis, cores, workers):
    """`-w -1` counts the cores of the server's CPU affinity (a cpuset, `taskset`), not
    the machine's: more threads than cores cost throughput."""
    _, yaml_file = served_repo(tmp_path, redis.address)
    server = start_server(
        "feast-redis-rs", tmp_path, yaml_file, "--no-access-log", "-w", "-1",
        prefix=("taskset", "-c", cores),
    )  # fmt: skip
    try:
        assert f"with {workers} worker threads" in server.log.read_text()
    finally:
        server.stop()


@pytest.fixture
def cpu_cgroup(tmp_path):
    """A cgroup of its own under the CPU controller (v1's, or v2's when it has one):
    `limit(cpus)` sets its CPU quota, `prefix` runs a command in it."""
    v2 = Path("/sys/fs/cgroup/unified")
    if not (v2 / "cgroup.controllers").exists():
        v2 = Path("/sys/fs/cgroup")
    controllers = v2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        root, version = v2, 2
    else:
        root, version = Path("/sys/fs/cgroup/cpu"), 1
    group = root / f"feast-redis-rs-test-{os.getpid()}-{tmp_path.name}"
    try:
        group.mkdir()
    except OSError as error:
        pytest.skip(f"cannot make a cgroup at {group}: {error}")

    def limit(cpus: float) -> None:
        period = 100_000
        if version == 2:
            (group / "cpu.max").write_text(f"{int(cpus * period)} {period}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(period))
            (group / "cpu.cfs_quota_us").write_text(str(int(cpus * period)))

    prefix = ("sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh")
    try:
        yield limit, prefix
    finally:
        group.rmdir()


@pytest.mark.parametrize("cpus, quota_cores", [(1.0, 1), (0.5, 1), (1.5, 2)])
def test_workers_by_default_are_as_many_as_the_cgroups_cpu_quota_allows(
    tmp_path, redis, cpu_cgroup, cpus, quota_cores
):
    """A container's CPU limit is a cgroup's quota: by default the server starts one
    worker per core of it (rounded up), not one per core of the machine."""
    workers = min(quota_cores, len(os.sched_getaffinity(0)))
    limit, prefix = cpu_cgroup
    limit(cpus)
    _, yaml_file = served_repo(tmp_path, redis.address)
    server = start_server("feast-redis-rs", tmp_path, yaml_file, "--no-access-log", prefix=prefix)
    try:
        assert f"with {workers} worker threads" in server.log.read_text()
    finally:
        server.stop()


def test_a_start_that_fails_on_the_registry_exits_with_its_error_named_and_no_panic(
    tmp_path, redis
):
    """An on-demand view whose transformation's module the server cannot import (it was
    applied from a module only the applying process had): the server exits non-zero with
    Python's error, and none of its threads panics as the interpreter goes away."""
    store, yaml_file = served_repo(tmp_path, redis.address)
    module_dir = tmp_path / "only_here"
    module_dir.mkdir()
    (module_dir / "udfs_only_here.py").write_text(
        "import pandas as pd\n\n\n"
        "def doubled(features):\n"
        "    return pd.DataFrame({'doubled': features['rate'] * 2})\n"
    )
    sys.path.insert(0, str(module_dir))
    try:
        udfs = importlib.import_module("udfs_only_here")
        store.apply(
            loan_repo.on_demand_view(tmp_path, "unloadable", "rate", "doubled", udfs.doubled)
        )
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("udfs_only_here", None)
    with pytest.raises(RuntimeError, match="serve exited") as exited:
        start_server("feast-redis-rs", tmp_path, yaml_file).stop()
    output = str(exited.value)
    assert (
        f"Error: cannot read the feature views, on-demand views and services of the registry "
        f"of {tmp_path}: ModuleNotFoundError: No module named 'udfs_only_here'"
    ) in output
    assert "Traceback" not in output
    assert "panicked" not in output

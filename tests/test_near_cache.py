"""The near cache (``near_cache:``): entity hashes kept in the process and evicted by
Redis' invalidations. A writer in another process never leaves a reader with a value
older than the last write completed before the read began, past the invalidation delay
(measured and printed); nothing stale is read after the listener's connection is killed,
Redis restarts or is flushed, a replica is promoted or slots move; memory stays within
its bound under a flood of keys; a server that refuses ``CLIENT TRACKING`` is named at
start, and ``ttl_only`` serves within its stated bound."""

from __future__ import annotations

import bisect
import json
import multiprocessing
import resource
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from feast.infra.online_stores.redis import RedisOnlineStore as StockStore
from feast.infra.online_stores.redis import RedisOnlineStoreConfig as StockConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from feast_redis_rs import RedisOnlineStore, RedisOnlineStoreConfig
from feast_redis_rs.errors import RedisResponseError

from . import loan_repo
from .feature_servers import columns, start_server, write_repo_yaml
from .redis_servers import RedisServer, redis_cli_binary, start_redis
from .test_cluster_failover import role, wait_until
from .test_server_pipelining import metric, request_bodies, write_repo

VIEW = loan_repo.views(Path("."))[1]
ENTITIES = 50
KEYS = [
    EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=f"applicant-{n}")])
    for n in range(ENTITIES)
]
# Past this, a value read is stale beyond any invalidation delay (they take well under
# a millisecond on this host; the bound leaves room for a loaded CI machine).
INVALIDATION_BOUND_SECONDS = 0.25
# Time for the cache to learn of a disturbance that comes without an invalidation (a
# connection lost): the listener's read of the end of its stream.
SETTLE_SECONDS = 0.1


def round_rows(number: int):
    """Round `number`: every entity's `c_i64` is the round, a second newer each round."""
    when = loan_repo.BASE_TIME + timedelta(seconds=number)
    return [(k, {"c_i64": Value(int64_val=number)}, when, None) for k in KEYS]


class Cached:
    """This store with a near cache, and a stock store writing to the same Redis."""

    def __init__(
        self,
        redis_type: str,
        connection_string: str,
        key_ttl_seconds: int | None = None,
        **near_cache,
    ):
        settings = dict(
            redis_type=redis_type,
            connection_string=connection_string,
            key_ttl_seconds=key_ttl_seconds,
        )
        self.config = loan_repo.repo_config(
            RedisOnlineStoreConfig(
                **settings,
                connect_timeout_seconds=1,
                command_timeout_seconds=2,
                near_cache=near_cache or {},
            )
        )
        self.stock_config = loan_repo.repo_config(StockConfig(**settings))
        self.store = RedisOnlineStore()
        self.stock = StockStore()

    def read(self) -> list[int]:
        got = self.store.online_read(self.config, VIEW, KEYS, ["c_i64"])
        return [v["c_i64"].int64_val if v else 0 for _, v in got]

    def write(self, number: int) -> None:
        self.stock.online_write_batch(self.stock_config, VIEW, round_rows(number), None)

    def stats(self) -> dict[str, int]:
        return self.store._get_client(self.config.online_store).near_cache_stats()

    def read_when_answered(self, seconds: float = 10) -> list[int]:
        """A read, retried while the deployment recovers from a disturbance."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.read()
            except (ConnectionError, TimeoutError, RedisResponseError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def wait_for_invalidations(self) -> None:
        """Waits, at most the invalidation bound, for the cache to drop what a write just
        changed: a read is only promised the write completed before it past that delay
        (on a loaded machine the listener's thread may run a few ms after the writer).
        Invalidations that never come leave the entries, and the next read stale."""
        deadline = time.monotonic() + INVALIDATION_BOUND_SECONDS
        while self.stats()["entries"] and time.monotonic() < deadline:
            time.sleep(0.001)

    def write_when_answered(self, number: int, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.write(number)
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline:
                    raise
                self.stock = StockStore()
                time.sleep(0.05)

    def fill(self, seconds: float = 10) -> None:
        """Reads until one read is answered from the cache alone. Every key Redis tracks
        for the cache is then an entry, so the entries gone means a write's
        invalidations all came: a key tracked without an entry (its fill refused by a
        flush) would be invalidated unseen, and maybe only after the next read had
        registered its fill, refusing it."""
        deadline = time.monotonic() + seconds
        while True:
            hits = self.stats()["hits"]
            self.read_when_answered()
            if self.stats()["hits"] == hits + ENTITIES:
                return
            assert time.monotonic() < deadline, f"the cache did not fill: {self.stats()}"

    def cached_round(self, number: int) -> None:
        """Round `number` written, read once into the cache and once from it."""
        if self.config.online_store.near_cache.invalidation == "tracking":
            self.fill()
        self.write_when_answered(number)
        self.wait_for_invalidations()
        assert self.read_when_answered() == [number] * ENTITIES
        hits = self.stats()["hits"]
        assert self.read() == [number] * ENTITIES
        stats = self.stats()
        assert stats["hits"] == hits + ENTITIES, f"the second read was not from the cache: {stats}"


def write_rounds(redis_type: str, connection_string: str, pause: float, seconds: float, out):
    """Another process' writer: a round every `pause` seconds for `seconds`, with stock
    Feast; sends each round's completion time (`time.monotonic`, the same clock in every
    process here)."""
    cached = Cached(redis_type, connection_string)
    done = []
    deadline = time.monotonic() + seconds
    number = 1
    while time.monotonic() < deadline:
        cached.write(number)
        done.append((number, time.monotonic()))
        number += 1
        time.sleep(pause)
    out.put(done)


def replication_settled(nodes) -> bool:
    """Every replica linked to its master and as far as it: a sync still to come would
    empty a node, and a flush drops every entry (the rounds' second reads would miss)."""
    for node in nodes:
        info = node.client().info("replication")
        if info["role"] != "slave":
            continue
        if info["master_link_status"] != "up" or info["master_sync_in_progress"]:
            return False
        master = next(n for n in nodes if n.port == int(info["master_port"]))
        if master.client().info("replication")["master_repl_offset"] != info["slave_repl_offset"]:
            return False
    return True


def stale_lags(reads: list[tuple[float, list[int]]], done: list[tuple[int, float]]) -> list[float]:
    """For each value read that is older than the last round completed before its read
    began: how long before the read the round after it had completed."""
    finished = [t for _, t in done]
    completed_at = dict(done)
    lags = []
    for started, values in reads:
        last = bisect.bisect_left(finished, started)  # rounds 1..last completed before
        for value in values:
            if value < last:
                lags.append(started - completed_at[value + 1])
    return lags


@pytest.mark.parametrize("deployment", ["standalone", "cluster"], indirect=True)
def test_no_read_is_older_than_the_last_write_before_it_past_the_invalidation_delay(deployment):
    deployment.flush()
    cached = Cached(deployment.redis_type, deployment.connection_string)
    results = multiprocessing.get_context("spawn").Queue()
    writer = multiprocessing.get_context("spawn").Process(
        target=write_rounds,
        args=(deployment.redis_type, deployment.connection_string, 0.02, 4.0, results),
    )
    reads: list[tuple[float, list[int]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                started = time.monotonic()
                reads.append((started, cached.read()))
        except BaseException as error:
            errors.append(error)

    writer.start()
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        done = results.get(timeout=60)
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=30)
        writer.join(timeout=30)
    assert errors == []
    assert len(done) > 40, len(done)
    lags = sorted(stale_lags(reads, done))
    stats = cached.stats()
    looked_up = stats["hits"] + stats["misses"]
    print(
        f"\n{deployment.name}: {len(reads)} reads of {ENTITIES} keys, {len(done)} rounds; "
        f"hits {stats['hits'] / looked_up:.0%}, invalidations {stats['invalidations']}; "
        f"values behind a completed write: {len(lags)}"
        + (
            f", by p50 {lags[len(lags) // 2] * 1e6:.0f} µs, p99 "
            f"{lags[int(len(lags) * 0.99)] * 1e6:.0f} µs, max {lags[-1] * 1e6:.0f} µs"
            if lags
            else ""
        )
    )
    assert stats["hits"] > looked_up / 2, "the reads did not go through the cache"
    assert stats["invalidations"] >= len(done) / 2
    assert max(lags, default=0) < INVALIDATION_BOUND_SECONDS, lags[-10:]
    assert cached.read() == [done[-1][0]] * ENTITIES


def listener_connections(server: RedisServer) -> list[dict]:
    return [c for c in server.client().client_list() if "P" in c["flags"]]


def test_nothing_stale_after_the_invalidation_connection_is_killed(redis_server):
    redis_server.client().flushall()
    cached = Cached("redis", redis_server.address)
    cached.cached_round(1)
    [listener] = listener_connections(redis_server)
    redis_server.client().client_kill_filter(_id=listener["id"])
    cached.write(2)  # its invalidation has nobody to reach
    time.sleep(SETTLE_SECONDS)
    assert cached.read() == [2] * ENTITIES
    assert cached.stats()["flushes"] >= 1
    # A new listener took over: the cache fills and is invalidated again.
    cached.cached_round(3)
    assert len(listener_connections(redis_server)) == 1


def test_nothing_stale_after_redis_restarts_or_is_flushed(tmp_path):
    server = start_redis(tmp_path / "restarted")
    try:
        cached = Cached("redis", server.address)
        cached.cached_round(1)
        server.stop()
        server = start_redis(tmp_path / "restarted", port=server.port)
        # The restarted Redis is empty: a value served now could only be the cache's.
        assert cached.read_when_answered() == [0] * ENTITIES
        cached.cached_round(2)
        server.client().flushall()
        time.sleep(SETTLE_SECONDS)
        assert cached.read() == [0] * ENTITIES
        assert cached.stats()["flushes"] >= 2
    finally:
        server.stop()


def test_nothing_stale_after_a_replica_is_promoted_or_slots_move(replicated_cluster):
    nodes = replicated_cluster
    cached = Cached("redis_cluster", ",".join(n.address for n in nodes))
    cached.cached_round(1)

    replica = next(n for n in nodes if role(n) == "slave")
    replica.client().execute_command("CLUSTER", "FAILOVER")
    wait_until(lambda: role(replica) == "master", 30, "the failover")
    wait_until(lambda: replication_settled(nodes), 30, "the demoted master's sync")
    cached.write_when_answered(2)
    time.sleep(SETTLE_SECONDS)
    assert cached.read_when_answered() == [2] * ENTITIES

    cached.cached_round(3)
    masters = [n for n in nodes if role(n) == "master"]
    source, target = masters[0], masters[1]
    ids = [m.client().execute_command("CLUSTER", "MYID").decode() for m in (source, target)]
    slots = sum(
        end - start + 1
        for start, end, owner, *_ in source.client().execute_command("CLUSTER", "SLOTS")
        if owner[1] == source.port
    )
    subprocess.run(
        [redis_cli_binary(), "--cluster", "reshard", source.address,
         "--cluster-from", ids[0], "--cluster-to", ids[1],
         "--cluster-slots", str(slots), "--cluster-yes"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    # Every key of the source moved; its round-3 values were invalidated as they left.
    assert source.client().dbsize() == 0
    # A master left without slots becomes its receiver's replica, and its full sync
    # empties it: Redis sends a flush's invalidation, and every entry is dropped.
    wait_until(lambda: role(source) == "slave", 30, "the emptied master's migration")
    wait_until(lambda: replication_settled(nodes), 30, "the emptied master's sync")
    cached.write_when_answered(4)
    time.sleep(SETTLE_SECONDS)
    assert cached.read_when_answered() == [4] * ENTITIES
    cached.cached_round(5)


def test_memory_stays_within_the_bound_under_a_flood_of_keys(redis_server):
    redis_server.client().flushall()
    bound = 4 * 1024 * 1024
    cached = Cached("redis", redis_server.address, max_bytes=bound)
    cached.read()

    def read_flood(start: int) -> None:
        keys = [
            EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=f"flood-{n:032}")])
            for n in range(start, start + 2000)
        ]
        cached.store.online_read(cached.config, VIEW, keys, None)

    # The first batch's peak (~22 MB here: what a first read of 2,000 keys sets up, the
    # cache's 4 MB aside) is counted out; run alone, the test would otherwise measure it.
    read_flood(-2000)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    flood = 200_000
    for start in range(0, flood, 2000):
        read_flood(start)
    stats = cached.stats()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert stats["misses"] >= flood
    assert stats["bytes"] <= bound
    assert stats["evictions"] >= flood - stats["entries"] > 0
    # Unbounded, the entries alone would take ~200 bytes each: 40 MB.
    assert grown_kib < 24 * 1024, grown_kib


@pytest.fixture(params=["tracking", "channel"])
def refusing_server(request, tmp_path):
    """A Redis whose only user may not run CLIENT TRACKING (as ElastiCache for Redis OSS
    7.1 refuses it), or may not subscribe to the invalidation channel."""
    server = start_redis(tmp_path / "refusing", password="admin-s3cret")
    server.client().acl_setuser(
        "app", enabled=True, passwords=["+app-s3cret"], keys=["*"],
        channels=["*"] if request.param == "tracking" else ["other"],
        commands=["+@all", "-client|tracking"] if request.param == "tracking" else ["+@all"],
    )  # fmt: skip
    yield server
    server.stop()


def test_a_server_refusing_client_tracking_is_named_at_start(refusing_server):
    connection = f"{refusing_server.address},username=app,password=app-s3cret"
    cached = Cached("redis", connection)
    with pytest.raises(RedisResponseError) as refused:
        cached.read()
    message = str(refused.value)
    assert f"__redis__:invalidate, which Redis at {refusing_server.address} refuses" in message
    assert "near_cache.invalidation: ttl_only" in message
    assert "app-s3cret" not in message


def test_ttl_only_serves_entries_within_the_stated_bound(refusing_server):
    connection = f"{refusing_server.address},username=app,password=app-s3cret"
    cached = Cached("redis", connection, invalidation="ttl_only", max_staleness_seconds=0.5)
    cached.cached_round(1)
    cached.write(2)
    assert cached.read() == [1] * ENTITIES, "ttl_only serves its entries until they are due"
    time.sleep(0.6)
    assert cached.read() == [2] * ENTITIES


def test_ttl_only_needs_a_stated_staleness_bound():
    with pytest.raises(ValueError, match=r"set near_cache\.max_staleness_seconds"):
        RedisOnlineStoreConfig(near_cache={"invalidation": "ttl_only"})


def test_an_entry_does_not_outlive_its_key(redis_server):
    redis_server.client().flushall()
    cached = Cached("redis", redis_server.address, key_ttl_seconds=1)
    cached.cached_round(1)
    time.sleep(1.1)
    # Redis deletes an expired key when it is next read (or sampled): the cache must not
    # have served it meanwhile.
    assert cached.read() == [0] * ENTITIES


def test_only_the_views_named_are_cached(redis_server):
    redis_server.client().flushall()
    cached = Cached("redis", redis_server.address, feature_views=["zipcode_features"])
    cached.write(1)
    assert cached.read() == [1] * ENTITIES
    assert cached.read() == [1] * ENTITIES
    assert cached.stats()["hits"] == cached.stats()["misses"] == 0


def newer_frames(path: Path, shift: int) -> dict:
    """Every loan view's rows again, `shift` days newer, numbers `shift` higher."""
    frames = {}
    for view in loan_repo.views(path):
        frame = loan_repo.frame(view)
        frame["event_timestamp"] += timedelta(days=shift)
        for column in frame.columns:
            if frame[column].dtype.kind in "if" and column not in ("zipcode",):
                frame[column] += shift
        frames[view.name] = frame
    return frames


def test_the_server_answers_through_the_cache_as_without_it(redis_server, tmp_path):
    redis_server.client().flushall()
    writer = write_repo(tmp_path, RedisOnlineStoreConfig(connection_string=redis_server.address))
    plain = {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_server.address}
    servers = [
        start_server(
            "feast-redis-rs", tmp_path, write_repo_yaml(tmp_path, name, store), "--metrics"
        )
        for name, store in (
            ("plain.yaml", plain),
            ("cached.yaml", {**plain, "near_cache": {"max_entries": 10_000}}),
        )
    ]
    try:
        bodies = request_bodies()

        def answers(server) -> list:
            return [columns(server.post("/get-online-features", body)[1]) for body in bodies]

        texts = [json.dumps(body) for body in bodies]
        repeats = len(texts) - len(set(texts))
        one_row = sum(len(body["entities"]["zipcode"]) == 1 for body in bodies)
        expected = answers(servers[0])

        def reused() -> float:
            return metric(servers[1], "near_cache_answers_reused_total")

        assert answers(servers[1]) == expected
        assert reused() == repeats
        # Sent again, each body is answered with the answer kept for it (a 1-row one
        # surely; answers over 64 KiB are not kept).
        assert answers(servers[1]) == expected
        again = reused() - repeats
        assert one_row <= again <= len(bodies)
        assert metric(servers[1], "near_cache_answers") == again - repeats
        hits = metric(servers[1], "near_cache_hits_total")
        assert hits >= metric(servers[1], "near_cache_misses_total") > 0
        assert metric(servers[1], "near_cache_entries") > 0
        for name, frame in newer_frames(tmp_path, shift=7).items():
            writer.write_to_online_store(name, frame)
        time.sleep(SETTLE_SECONDS)
        changed = answers(servers[0])
        assert changed != expected
        # No kept answer outlives a write to one of its keys.
        before = reused()
        assert answers(servers[1]) == changed
        # Only answers none of whose keys were written (absent entities) were reused.
        after = reused()
        assert after - before < again / 2
        assert metric(servers[1], "near_cache_invalidations_total") > 0
        assert answers(servers[1]) == changed
        assert reused() == after + again
    finally:
        for server in servers:
            server.stop()


def test_the_answers_kept_stay_within_a_quarter_of_the_cache_bytes(redis_server, tmp_path):
    redis_server.client().flushall()
    write_repo(tmp_path, RedisOnlineStoreConfig(connection_string=redis_server.address))
    max_bytes = 100_000
    store = {
        "type": "feast_redis_rs.RedisOnlineStore",
        "connection_string": redis_server.address,
        "near_cache": {"max_bytes": max_bytes},
    }
    server = start_server(
        "feast-redis-rs", tmp_path, write_repo_yaml(tmp_path, "cached.yaml", store), "--metrics"
    )
    try:
        refs = [ref for ref in loan_repo.feature_refs() if not ref.endswith(("_raw", "_raw_list"))]
        # Distinct bodies for one entity: the kept answers flood, the entries do not.
        row = loan_repo.entity_rows()[0]
        for n in range(1, len(refs) + 1):
            for features in (refs[:n], refs[-n:], refs[:n][::-1]):
                body = {
                    "features": features,
                    "entities": {"zipcode": [row["zipcode"]], "dob_ssn": [row["dob_ssn"]]},
                }
                status, _ = server.post("/get-online-features", body)
                assert status == 200
                assert metric(server, "near_cache_answer_bytes") <= max_bytes // 4
        assert metric(server, "near_cache_answers") > 0
        assert metric(server, "near_cache_bytes") <= max_bytes
    finally:
        server.stop()


def test_the_server_does_not_start_on_a_server_refusing_client_tracking(refusing_server, tmp_path):
    connection = f"{refusing_server.address},username=app,password=app-s3cret"
    write_repo(tmp_path, RedisOnlineStoreConfig(connection_string=connection))
    store = {
        "type": "feast_redis_rs.RedisOnlineStore",
        "connection_string": connection,
        "near_cache": {},
    }
    with pytest.raises(RuntimeError) as failed:
        start_server("feast-redis-rs", tmp_path, write_repo_yaml(tmp_path, "cached.yaml", store))
    log = str(failed.value)
    assert f"__redis__:invalidate, which Redis at {refusing_server.address} refuses" in log
    assert "app-s3cret" not in log


def test_a_flood_of_bodies_sent_once_leaves_the_hot_answer_kept(redis_server, tmp_path):
    """A client sending distinct bodies (a scan, or an attacker) fills the memo, but a
    full memo lets in only bodies sent before: the answer asked for again and again
    stays kept. With least-recently-used alone it would be pushed out before each turn."""
    redis_server.client().flushall()
    write_repo(tmp_path, RedisOnlineStoreConfig(connection_string=redis_server.address))
    store = {
        "type": "feast_redis_rs.RedisOnlineStore",
        "connection_string": redis_server.address,
        "near_cache": {"max_bytes": 40_000},
    }
    server = start_server(
        "feast-redis-rs", tmp_path, write_repo_yaml(tmp_path, "cached.yaml", store), "--metrics"
    )
    try:
        refs = [ref for ref in loan_repo.feature_refs() if not ref.endswith(("_raw", "_raw_list"))]
        row = loan_repo.entity_rows()[0]
        entities = {"zipcode": [row["zipcode"]], "dob_ssn": [row["dob_ssn"]]}
        hot = {"features": refs, "entities": entities}
        pairs = [[a, b] for a in refs for b in refs if a != b]
        status, expected = server.post("/get-online-features", hot)
        assert status == 200
        sent = hot_reused = 0
        for n, features in enumerate(pairs):
            body = {"features": features, "entities": entities}
            assert server.post("/get-online-features", body)[0] == 200
            if n % 20 == 19:
                before = metric(server, "near_cache_answers_reused_total")
                assert server.post("/get-online-features", hot) == (200, expected)
                sent += 1
                hot_reused += metric(server, "near_cache_answers_reused_total") - before
        answers = metric(server, "near_cache_answers")
        assert 0 < answers < 20, "the memo holds a few answers: the flood filled it"
        assert metric(server, "near_cache_answer_bytes") <= 40_000 // 4
        assert sent >= 10 and hot_reused >= sent * 3 // 4, (hot_reused, sent)
    finally:
        server.stop()

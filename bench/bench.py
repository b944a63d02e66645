"""`make bench`: stock Feast's Redis store and feast_redis_rs side by side, in one run,
on one Redis and one data set shaped like the loan demo (2 feature views, 15 features,
57,477 rows). Prints a table of stock/ours ratios and writes bench/results.json and
docs/results.png (the documentation site shows it).

The two stores are measured in alternating blocks, never in strict alternation: Feast
keeps process-wide caches that two FeatureStores thrash when interleaved call by call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig as StockConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.types import Int64, String
from feast.value_type import ValueType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feast_redis_rs import RedisOnlineStoreConfig, _native, encoding  # noqa: E402
from tests.redis_servers import start_redis  # noqa: E402

PROJECT = "credit_scoring"
# The Zipf-like law of the near cache's bench: after 4,000 requests, ~9 keys in 10 of
# the next ones were asked for before.
ZIPF_EXPONENT = 1.4
ZIPCODE_FEATURES = [
    "city",
    "state",
    "location_type",
    "tax_returns_filed",
    "population",
    "total_wages",
]
CREDIT_FEATURES = [
    "credit_card_due", "mortgage_due", "student_loan_due", "vehicle_loan_due", "hard_pulls",
    "missed_payments_2y", "missed_payments_1y", "missed_payments_6m", "bankruptcies",
]  # fmt: skip
EVENT_TIME = datetime(2020, 4, 26, 18, 1, 4, tzinfo=timezone.utc)
MATERIALIZE_ROUNDS = 3


def machine() -> str:
    """The machine a bench ran on, as its results name it."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def make_data(data_dir: Path, zipcodes: int, applicants: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(7)
    zips = np.sort(rng.choice(np.arange(501, 99951), size=zipcodes, replace=False))
    cities = [f"CITY {i % 9000}" for i in range(zipcodes)]
    pd.DataFrame(
        {
            "zipcode": zips,
            "city": cities,
            "state": rng.choice(["TX", "CA", "NY", "PA", "OH", "FL"], size=zipcodes),
            "location_type": rng.choice(["PRIMARY", "ACCEPTABLE", "NOT ACCEPTABLE"], size=zipcodes),
            "tax_returns_filed": rng.integers(0, 40_000, size=zipcodes),
            "population": rng.integers(0, 80_000, size=zipcodes),
            "total_wages": rng.integers(0, 3_000_000_000, size=zipcodes),
            "event_timestamp": EVENT_TIME,
        }
    ).to_parquet(data_dir / "zipcode_table.parquet")
    births = rng.integers(0, 20_000, size=applicants)
    dob_ssn = [
        f"{(datetime(1940, 1, 1) + timedelta(days=int(b))):%Y%m%d}_{i % 10_000:04d}"
        for i, b in enumerate(births)
    ]
    dob_ssn = list(dict.fromkeys(dob_ssn))
    n = len(dob_ssn)
    credit = {"dob_ssn": dob_ssn, "event_timestamp": EVENT_TIME}
    for name in CREDIT_FEATURES:
        credit[name] = rng.integers(0, 100_000, size=n)
    pd.DataFrame(credit).to_parquet(data_dir / "credit_history.parquet")
    return zips, dob_ssn


def repo_objects(data_dir: Path) -> list:
    zipcode = Entity(name="zipcode", join_keys=["zipcode"], value_type=ValueType.INT64)
    dob_ssn = Entity(name="dob_ssn", join_keys=["dob_ssn"], value_type=ValueType.STRING)
    zipcode_view = FeatureView(
        name="zipcode_features",
        entities=[zipcode],
        ttl=timedelta(days=3650),
        schema=[
            Field(name=n, dtype=String if n in ("city", "state", "location_type") else Int64)
            for n in ZIPCODE_FEATURES
        ],
        source=FileSource(
            path=str(data_dir / "zipcode_table.parquet"), timestamp_field="event_timestamp"
        ),
    )
    credit_view = FeatureView(
        name="credit_history",
        entities=[dob_ssn],
        ttl=timedelta(days=3650),
        schema=[Field(name=n, dtype=Int64) for n in CREDIT_FEATURES],
        source=FileSource(
            path=str(data_dir / "credit_history.parquet"), timestamp_field="event_timestamp"
        ),
    )
    return [zipcode, dob_ssn, zipcode_view, credit_view]


def feature_store(path: Path, online_store, data_dir: Path, **repo) -> FeatureStore:
    path.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project=PROJECT,
        provider="local",
        registry=str(path / "registry.db"),
        online_store=online_store,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        **repo,
    )
    store = FeatureStore(config=config)
    store.apply(repo_objects(data_dir))
    return store


FEATURES = [f"zipcode_features:{f}" for f in ZIPCODE_FEATURES] + [
    f"credit_history:{f}" for f in CREDIT_FEATURES
]


def entity_rows(zips, applicants, n: int, offset: int) -> list[dict]:
    return [
        {"zipcode": int(zips[(offset + i * 7919) % len(zips)]),
         "dob_ssn": applicants[(offset + i * 104729) % len(applicants)]}
        for i in range(n)
    ]  # fmt: skip


def time_block(call, requests: list) -> list[float]:
    out = []
    for request in requests:
        started = time.perf_counter()
        call(request)
        out.append(time.perf_counter() - started)
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def request_mix(zips, applicants, size: int, total: int, rounds: int) -> list[list[dict]]:
    """The distinct requests of `size` rows that a measure cycles through: a block's
    worth, each over other entities (the floors read the same ones)."""
    block = max(1, total // rounds)
    return [entity_rows(zips, applicants, size, k * size) for k in range(block)]


def measure_reads(stores: dict, zips, applicants, iterations: dict, rounds: int) -> dict:
    """p50/p99 of `iterations[size]` requests of each size per store, in `rounds`
    alternating blocks."""
    results = {}
    for size, total in iterations.items():
        requests = request_mix(zips, applicants, size, total, rounds)
        latencies = {name: [] for name in stores}
        for store in stores.values():  # warm-up, out of the measurement
            store.get_online_features(features=FEATURES, entity_rows=requests[0]).to_dict()
        for _ in range(rounds):
            for name, store in stores.items():

                def call(rows, store=store):
                    store.get_online_features(features=FEATURES, entity_rows=rows).to_dict()

                latencies[name] += time_block(call, requests)
        results[size] = {
            name: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99), "n": len(v)}
            for name, v in latencies.items()
        }
    return results


def zipf_rows(zips, applicants, total: int, seed: int = 7) -> list[list[dict]]:
    """`total` 1-row requests whose entities follow a Zipf-like law: a few are asked for
    often, most rarely, as real traffic does; which ones, at random."""
    rng = np.random.default_rng(seed)
    zip_rank = rng.permutation(len(zips))
    applicant_rank = rng.permutation(len(applicants))
    picks = (rng.zipf(ZIPF_EXPONENT, size=(total, 2)) - 1) % np.array([len(zips), len(applicants)])
    return [
        [{"zipcode": int(zips[zip_rank[z]]), "dob_ssn": applicants[applicant_rank[a]]}]
        for z, a in picks
    ]


def measure_near_cache(
    stores: dict, cached_client, warm_up: list, requests: list, rounds: int
) -> dict:
    """p50/p99 of `requests` (1 row each, a Zipf-like mix) per store, in `rounds`
    alternating blocks after `warm_up` (others of the same mix), and the cache's hit rate
    over them: what a cache holds after a while of such traffic."""
    for store in stores.values():
        for rows in warm_up:
            store.get_online_features(features=FEATURES, entity_rows=rows).to_dict()
    before = cached_client.near_cache_stats()
    latencies = {name: [] for name in stores}
    block = max(1, len(requests) // rounds)
    for k in range(rounds):
        mix = requests[k * block : (k + 1) * block]
        for name, store in stores.items():

            def call(rows, store=store):
                store.get_online_features(features=FEATURES, entity_rows=rows).to_dict()

            latencies[name] += time_block(call, mix)
    after = cached_client.near_cache_stats()
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    result = {
        name: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99), "n": len(v)}
        for name, v in latencies.items()
    }
    return {"stores": result, "hit_rate": hits / (hits + misses)}


def floor_reads(rows: list[dict]) -> list[tuple[list[bytes], list[bytes]]]:
    """The `(keys, fields)` each view's HMGETs read for the request `rows`."""
    zip_keys = [
        encoding.redis_key(
            PROJECT, EntityKey(join_keys=["zipcode"], entity_values=[Value(int64_val=r["zipcode"])])
        )
        for r in rows
    ]
    credit_keys = [
        encoding.redis_key(
            PROJECT,
            EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=r["dob_ssn"])]),
        )
        for r in rows
    ]
    return [
        (zip_keys, [encoding.mmh3_field(f"zipcode_features:{f}") for f in ZIPCODE_FEATURES]
         + [b"_ts:zipcode_features"]),
        (credit_keys, [encoding.mmh3_field(f"credit_history:{f}") for f in CREDIT_FEATURES]
         + [b"_ts:credit_history"]),
    ]  # fmt: skip


def measure_client_floor(client, mix: list, repeats: int) -> dict:
    """This store's client alone: each request's HMGETs in one batch, nothing decoded."""
    assert all(_native.pipelined_hmget(client, reads) > 0 for reads in mix), "no data read"
    latencies = time_block(
        lambda i: _native.pipelined_hmget(client, mix[i % len(mix)]), range(repeats)
    )
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


def resp_command(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def resp_replies_end(buf: bytes, count: int) -> int | None:
    """Where `count` complete replies (arrays of bulk strings or nils) end in `buf`."""
    at = 0
    for _ in range(count):
        stack = [1]
        while stack:
            line_end = buf.find(b"\r\n", at)
            if line_end < 0:
                return None
            kind, n = buf[at : at + 1], int(buf[at + 1 : line_end])
            at = line_end + 2
            stack[-1] -= 1
            if kind == b"$" and n >= 0:
                at += n + 2
                if at > len(buf):
                    return None
            elif kind == b"*" and n > 0:
                stack.append(n)
            while stack and stack[-1] == 0:
                stack.pop()
    return at if at <= len(buf) else None


def measure_socket_floor(host: str, port: int, mix: list, repeats: int, spin: bool = False) -> dict:
    """The physical floor, outside this store (like `redis-benchmark -c 1`): the same
    HMGETs written at once to a plain socket, then their replies' bytes read, not parsed.
    With `spin`, the reads do not block but are retried until the bytes are there (as
    this store waits for small replies): the thread never sleeps, so no wake-up is paid."""
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        exchanges = []  # (request bytes, reply size)
        for reads in mix:
            request = b"".join(
                resp_command(b"HMGET", key, *fields) for keys, fields in reads for key in keys
            )
            count = sum(len(keys) for keys, _ in reads)
            sock.sendall(request)
            first = b""
            while (size := resp_replies_end(first, count)) is None:
                first += sock.recv(1 << 20)
            exchanges.append((request, size))
        buffer = bytearray(max(size for _, size in exchanges))
        flags = socket.MSG_DONTWAIT if spin else 0

        def exchange(i):
            request, size = exchanges[i % len(exchanges)]
            sock.sendall(request)
            view, got = memoryview(buffer), 0
            while got < size:
                try:
                    got += sock.recv_into(view[got:], 0, flags)
                except BlockingIOError:
                    pass

        latencies = time_block(exchange, range(repeats))
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


def redis_execution_ms(redis, call, repeats: int) -> float:
    """Redis' own time per `call(i)`: the microseconds `INFO commandstats` counts for
    HMGET."""
    call(0)
    redis.config_resetstat()
    for i in range(repeats):
        call(i)
    stats = redis.info("commandstats")["cmdstat_hmget"]
    return stats["usec"] / repeats / 1000


def redis_write_seconds(redis) -> float:
    """Redis' own time for the commands run since the last CONFIG RESETSTAT, as `INFO
    commandstats` counts it; a script's calls are inside its EVALSHA's time, so only the
    commands a client sent count."""
    stats = redis.info("commandstats")
    sent = ("cmdstat_evalsha", "cmdstat_hset", "cmdstat_hmget", "cmdstat_expire")
    if "cmdstat_evalsha" in stats:
        sent = ("cmdstat_evalsha",)
    return sum(stats[name]["usec"] for name in sent if name in stats) / 1e6


def measure_threads(store, zips, applicants, threads: int, seconds: float) -> float:
    """Requests per second of `threads` threads each reading 100-row requests."""
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(index: int) -> None:
        k = index
        while time.perf_counter() < stop:
            rows = entity_rows(zips, applicants, 100, k * 100)
            store.get_online_features(features=FEATURES, entity_rows=rows).to_dict()
            done[index] += 1
            k += threads

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def pyplot():
    """matplotlib's pyplot, drawing to files (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart(results: dict, path: Path) -> None:
    plt = pyplot()
    sizes = list(results["reads"])
    stock = [results["reads"][s]["stock"]["p50_ms"] for s in sizes]
    ours = [results["reads"][s]["ours"]["p50_ms"] for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(sizes))
    left.bar(x - 0.2, stock, 0.4, label="stock Feast")
    left.bar(x + 0.2, ours, 0.4, label="feast-redis-rs")
    left.set_xticks(x, [f"{s} rows" for s in sizes])
    left.set_yscale("log")
    left.set_ylabel("get_online_features(...).to_dict() p50, ms")
    left.legend()
    m = results["materialize"]
    right.bar(["stock Feast", "feast-redis-rs"], [m["stock_s"], m["ours_s"]])
    right.set_ylabel(f"materialize {m['rows']} rows, s")
    fig.suptitle(results["machine"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="a smaller run, to check the script")
    args = parser.parse_args()
    zipcodes, applicants_n = (2_000, 2_000) if args.quick else (28_844, 28_633)
    # Enough requests per size that two runs agree on the p50 (1 row: 2,000).
    iterations = {1: 200, 100: 100, 1000: 20} if args.quick else {1: 2000, 100: 500, 1000: 100}

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        unix_socket = tmp_path / "redis" / "redis.sock"
        server = start_redis(tmp_path / "redis", "--unixsocket", str(unix_socket))
        try:
            data_dir = tmp_path / "data"
            data_dir.mkdir()
            zips, applicants = make_data(data_dir, zipcodes, applicants_n)
            rows = len(zips) + len(applicants)
            stock = feature_store(
                tmp_path / "stock", StockConfig(connection_string=server.address), data_dir
            )
            ours = feature_store(
                tmp_path / "ours",
                RedisOnlineStoreConfig(connection_string=server.address),
                data_dir,
                batch_engine={"type": "feast_redis_rs.RedisComputeEngine"},
            )
            over_socket = f"{server.address},unix_socket_path={unix_socket}"
            ours_unix = feature_store(
                tmp_path / "ours_unix",
                RedisOnlineStoreConfig(connection_string=over_socket),
                data_dir,
            )
            stores = {"stock": stock, "ours": ours}
            start, end = EVENT_TIME - timedelta(days=1), EVENT_TIME + timedelta(days=1)
            redis = server.client()
            runs: dict[str, list[float]] = {name: [] for name in stores}
            redis_s: dict[str, list[float]] = {name: [] for name in stores}
            for _ in range(MATERIALIZE_ROUNDS):
                for name, store in stores.items():
                    redis.flushall()
                    redis.config_resetstat()
                    started = time.perf_counter()
                    store.materialize(start, end)
                    runs[name].append(time.perf_counter() - started)
                    redis_s[name].append(redis_write_seconds(redis))
                    assert redis.dbsize() == rows
            materialize = {"rows": rows, "rounds": MATERIALIZE_ROUNDS}
            materialize.update({f"{name}_s": float(np.median(t)) for name, t in runs.items()})
            materialize.update(
                {f"{name}_redis_s": float(np.median(t)) for name, t in redis_s.items()}
            )

            reads = measure_reads(
                {**stores, "ours_unix": ours_unix}, zips, applicants, iterations, args.rounds
            )
            client = ours._get_provider().online_store._get_client(ours.config.online_store)
            floor = {}
            for size, total in iterations.items():
                requests = request_mix(zips, applicants, size, total, args.rounds)
                hmgets = [floor_reads(rows) for rows in requests]
                floor[size] = {
                    "redis_execution_ms": redis_execution_ms(
                        redis,
                        lambda i, requests=requests: ours.get_online_features(
                            features=FEATURES, entity_rows=requests[i % len(requests)]
                        ).to_dict(),
                        min(total, 200),
                    ),
                    "socket": measure_socket_floor(server.host, server.port, hmgets, total),
                    "socket_spinning": measure_socket_floor(
                        server.host, server.port, hmgets, total, spin=True
                    ),
                    "client": measure_client_floor(client, hmgets, total),
                }
            cached = feature_store(
                tmp_path / "ours_cached",
                RedisOnlineStoreConfig(connection_string=server.address, near_cache={}),
                data_dir,
            )
            cached_client = cached._get_provider().online_store._get_client(
                cached.config.online_store
            )
            mix = zipf_rows(zips, applicants, 4000 + iterations[1])
            near_cache = measure_near_cache(
                {"stock": stock, "ours": ours, "ours_cached": cached},
                cached_client,
                mix[:4000],
                mix[4000:],
                args.rounds,
            )
            one = measure_threads(ours, zips, applicants, 1, 3.0)
            four = measure_threads(ours, zips, applicants, 4, 3.0)
        finally:
            server.stop()

    results = {
        "machine": machine(),
        "materialize": materialize,
        "reads": reads,
        "floor": floor,
        "threads_100_rows_rps": {"1": one, "4": four},
        "near_cache": near_cache,
    }
    out = ROOT / "bench"
    (out / "results.json").write_text(json.dumps(results, indent=2))
    chart(results, ROOT / "docs" / "results.png")

    print(f"\nMachine: {results['machine']}; {rows} rows, 2 views, 15 features\n")
    print("| measure | stock Feast | feast-redis-rs | stock / ours |")
    print("|---|---|---|---|")
    for size, r in reads.items():
        s, o = r["stock"]["p50_ms"], r["ours"]["p50_ms"]
        print(f"| get_online_features {size} rows, p50 | {s:.2f} ms | {o:.2f} ms | {s / o:.1f}x |")
        s, o = r["stock"]["p99_ms"], r["ours"]["p99_ms"]
        print(f"| get_online_features {size} rows, p99 | {s:.2f} ms | {o:.2f} ms | {s / o:.1f}x |")
    m = materialize
    print(
        f"| materialize {rows} rows, median of {m['rounds']} | {m['stock_s']:.2f} s "
        f"| {m['ours_s']:.2f} s | {m['stock_s'] / m['ours_s']:.1f}x |"
    )
    print(
        f"| Redis' own time materializing | {m['stock_redis_s']:.2f} s "
        f"| {m['ours_redis_s']:.2f} s (the newest-wins script) | - |"
    )
    print(
        f"| 4 threads x 100-row requests | - | {four:.0f} req/s "
        f"| {four / one:.2f}x one thread ({one:.0f} req/s) |"
    )
    n = near_cache["stores"]
    for stat in ("p50_ms", "p99_ms"):
        s, o, c = n["stock"][stat], n["ours"][stat], n["ours_cached"][stat]
        print(
            f"| 1 row, Zipf-like mix, near cache ({near_cache['hit_rate']:.0%} hits), {stat[:3]} "
            f"| {s:.3f} ms | {c:.3f} ms ({o:.3f} ms uncached) | {s / c:.1f}x |"
        )
    for size, r in reads.items():
        o, u = r["ours"]["p50_ms"], r["ours_unix"]["p50_ms"]
        print(f"| {size} rows over a Unix socket, p50 | - | {u:.2f} ms | {o / u:.2f}x TCP's |")

    print("\nFloors (p50; ours = get_online_features(...).to_dict() over TCP):\n")
    print("| rows | Redis' own time | bare socket exchange (spinning) "
          "| this store's client alone | ours | ours / Redis' time | ours / socket |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for size, f in floor.items():
        o, e, b = reads[size]["ours"]["p50_ms"], f["redis_execution_ms"], f["socket"]["p50_ms"]
        spun = f["socket_spinning"]["p50_ms"]
        print(
            f"| {size} | {e:.3f} ms | {b:.3f} ms ({spun:.3f} ms) | {f['client']['p50_ms']:.3f} ms "
            f"| {o:.3f} ms | {o / e:.1f}x | {o / b:.1f}x |"
        )
    print(f"\nWrote {out / 'results.json'} and {ROOT / 'docs' / 'results.png'}")


if __name__ == "__main__":
    main()

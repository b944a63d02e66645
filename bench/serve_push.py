"""`make bench`'s push section: the bench's loan-shaped repo plus a push source feeding
a view of the credit history's features, pushed to through stock `feast serve` and
`feast-redis-rs serve`, one Redis, in one run: `/push` bodies of 1 and 100 rows, each
body pushed once (its rows newer than any before, so every push writes), the servers
taking turns block by block, each on applicants of its own. Every answer must be a 200
and ours must write every push natively (its fallback counter stays at 0). Writes
bench/results_push.json and prints a table of ratios (throughput: rows written per
second by one client sending one push at a time).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from feast import FeatureStore, FeatureView, Field, FileSource, PushSource
from feast.types import Int64

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve import (  # noqa: E402
    OURS,
    STOCK,
    Client,
    bench_repo,
    latency_results,
    latency_rows,
    latency_stats,
    save_results,
    section_arguments,
    stock_and_ours,
)

from bench import CREDIT_FEATURES, EVENT_TIME  # noqa: E402  (bench/bench.py, beside this script)

SOURCE = "credit_push"
VIEW = "credit_pushed"


def add_push_source(repo: Path) -> None:
    store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / "ours.yaml")
    credit = store.get_feature_view("credit_history")
    source = PushSource(
        name=SOURCE,
        batch_source=FileSource(path=credit.batch_source.path, timestamp_field="event_timestamp"),
    )
    store.apply(
        [
            source,
            FeatureView(
                name=VIEW,
                entities=[store.get_entity("dob_ssn")],
                ttl=timedelta(days=3650),
                schema=[Field(name=name, dtype=Int64) for name in CREDIT_FEATURES],
                source=source,
            ),
        ]
    )


def push_bodies(applicants: list[str], rows: int, count: int, day: int = 1) -> list[bytes]:
    """``count`` pushes of ``rows`` rows each, of ``applicants`` in turn, each body's event
    time a second past the one before (from ``day`` days past the bench's data)."""
    bodies = []
    for k in range(count):
        who = [applicants[(k * rows + i) % len(applicants)] for i in range(rows)]
        when = (EVENT_TIME + timedelta(days=day, seconds=k)).isoformat()
        df = {"dob_ssn": who, "event_timestamp": [when] * rows}
        for f, name in enumerate(CREDIT_FEATURES):
            df[name] = [(k * 31 + i * 7 + f) % 100_000 for i in range(rows)]
        bodies.append(json.dumps({"push_source_name": SOURCE, "df": df}).encode())
    return bodies


def measure_pushes(ports: dict, bodies: dict[str, dict], block: int) -> dict:
    """Each server's latency per row count over its own bodies, pushed one at a time,
    the servers taking turns every ``block`` pushes."""
    latency: dict[int, dict] = {}
    for rows in (1, 100):
        clients = {name: Client(port, path="/push") for name, port in ports.items()}
        for name, client in clients.items():  # warm-up, out of the measurement
            for body in bodies[name]["warm-up"]:
                client.request(body)
        seconds: dict[str, list[float]] = {name: [] for name in ports}
        count = len(bodies[STOCK][rows])
        for start in range(0, count, block):
            for name, client in clients.items():
                for body in bodies[name][rows][start : start + block]:
                    started = time.perf_counter()
                    client.request(body)  # raises on any answer but a 200
                    seconds[name].append(time.perf_counter() - started)
        for client in clients.values():
            client.close()
        latency[rows] = {name: latency_stats(v) for name, v in seconds.items()}
    return latency


def main() -> None:
    args = section_arguments(__doc__)
    block = 20 if args.quick else 200

    with bench_repo(args.quick) as (tmp_path, _, repo, _, applicants):
        add_push_source(repo)
        half = len(applicants) // 2
        own = {STOCK: applicants[:half], OURS: applicants[half:]}
        bodies = {
            name: {
                "warm-up": push_bodies(who, 1, 20, day=0),
                **{rows: push_bodies(who, rows, block * args.rounds) for rows in (1, 100)},
            }
            for name, who in own.items()
        }
        latency, fallbacks = stock_and_ours(
            repo, tmp_path, lambda ports: measure_pushes(ports, bodies, block)
        )
    assert fallbacks == 0, f"{fallbacks} pushes went to Feast's app"

    throughput = {
        rows: {name: rows * 1e3 / stats["mean_ms"] for name, stats in by_server.items()}
        for rows, by_server in latency.items()
    }
    results = latency_results(
        args.rounds,
        block,
        latency,
        request=f"POST /push to push source {SOURCE} (view {VIEW}: the credit history's "
        f"{len(CREDIT_FEATURES)} int64 features), each push's rows newer than those stored",
        rows_per_second=throughput,
        fallbacks=fallbacks,
    )
    save_results(results, "results_push.json")
    print(f"| | {STOCK} | {OURS} | ours vs stock |")
    print("|---|---|---|---|")
    for label, _, _, (stock, ours) in latency_rows(latency, (STOCK, OURS)):
        print(f"| {label} | {stock:.3f} ms | {ours:.3f} ms | {stock / ours:.1f}x |")
    for rows, by_server in throughput.items():
        stock, ours = by_server[STOCK], by_server[OURS]
        label = f"{rows} row{'s' if rows > 1 else ''} rows/s"
        print(f"| {label} | {stock:,.0f} | {ours:,.0f} | {ours / stock:.1f}x |")


if __name__ == "__main__":
    main()

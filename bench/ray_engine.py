"""`make bench`, materialization on Ray: Feast's Ray engine (`ray.engine`) writing with stock
Feast's store against `feast_redis_rs.RedisRayComputeEngine` with this store, in one run, on
a local Ray and one Redis, both with `write_concurrency: 2`: the loan-shaped views of
bench.py (57,477 rows, median of 3 rounds) and a generated view of 2,000,000 rows (1,000,000
applicants, two rows each), and the peak resident memory of Ray's worker processes for
500,000 and 2,000,000 rows (a fresh Ray per run, its workers warmed up by importing Feast);
this engine alone also at 4,000,000 rows, to show its peak does not grow with the view.
Prints a table and writes bench/results_ray.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from feast import Entity, FeatureView, Field, FileSource
from feast.infra.online_stores.redis import RedisOnlineStoreConfig as StockConfig
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import EVENT_TIME, feature_store, make_data  # noqa: E402 (bench/bench.py)
from feast_redis_rs import BUILD_PROFILE, RedisOnlineStoreConfig  # noqa: E402
from tests.redis_servers import start_redis  # noqa: E402

ENGINES = {
    "stock": {"type": "ray.engine", "write_concurrency": 2},
    "ours": {"type": "feast_redis_rs.RedisRayComputeEngine", "write_concurrency": 2},
}
ROUNDS = 3
APPLICANT = Entity(name="applicant", join_keys=["applicant"], value_type=ValueType.STRING)


def big_view(data_dir: Path, rows: int) -> FeatureView:
    """``rows`` rows of ``rows // 2`` applicants (the later row of each must win)."""
    path = data_dir / f"big_{rows}.parquet"
    if not path.exists():
        rng = np.random.default_rng(11)
        index = np.arange(rows)
        pq.write_table(
            pa.table(
                {
                    "applicant": pa.array([f"applicant-{i}" for i in index % (rows // 2)]),
                    "event_timestamp": pa.array(
                        EVENT_TIME.timestamp() * 1e6 + index, pa.int64()
                    ).cast(pa.timestamp("us", tz="UTC")),
                    **{f"amount_{k}": rng.integers(0, 10**9, rows) for k in range(4)},
                    "ratio": rng.random(rows),
                    "segment": pa.array([f"segment {i % 97}" for i in index]),
                }
            ),
            path,
        )
    return FeatureView(
        name=f"big_{rows}",
        entities=[APPLICANT],
        ttl=timedelta(days=36500),
        schema=[Field(name=f"amount_{k}", dtype=Int64) for k in range(4)]
        + [Field(name="ratio", dtype=Float64), Field(name="segment", dtype=String)],
        source=FileSource(path=str(path), timestamp_field="event_timestamp"),
    )


class WorkerMemory:
    """The largest peak resident size (VmHWM) of Ray's worker processes while running."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    cmdline = (status.parent / "cmdline").read_bytes()
                    if not cmdline.startswith(b"ray::") or cmdline.startswith(b"ray::IDLE"):
                        continue
                    for line in status.read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            kb = int(line.split()[1])
                            self.peak_bytes = max(self.peak_bytes, kb * 1024)
                except (OSError, ValueError):
                    continue


@ray.remote
def _import_the_engines() -> None:
    import feast.infra.compute_engines.ray.nodes  # noqa: F401

    import feast_redis_rs.ray_engine  # noqa: F401

    time.sleep(1)  # so that each task of the warm-up lands on a worker of its own


def fresh_ray() -> None:
    """A new local Ray whose workers have imported Feast (~7 s here, as on a cluster whose
    workers are up), which both engines would otherwise pay in their first tasks."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    ray.get([_import_the_engines.remote() for _ in range(int(ray.cluster_resources()["CPU"]))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, to check the script")
    args = parser.parse_args()
    loan_sizes = (2_000, 2_000) if args.quick else (28_844, 28_633)
    big_sizes = (20_000, 80_000) if args.quick else (500_000, 2_000_000)
    # This engine alone (ray.engine would take minutes and over 10 GB a worker): its peak
    # memory at twice the largest size above.
    ours_only = 160_000 if args.quick else 4_000_000
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "build": BUILD_PROFILE,
        "write_concurrency": 2,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        server = start_redis(tmp_path / "redis")
        redis = server.client()
        try:
            data_dir = tmp_path / "data"
            data_dir.mkdir()
            zips, applicants = make_data(data_dir, *loan_sizes)
            loan_rows = len(zips) + len(applicants)
            onlines = {
                "stock": StockConfig(connection_string=server.address),
                "ours": RedisOnlineStoreConfig(connection_string=server.address),
            }
            views = {rows: big_view(data_dir, rows) for rows in (*big_sizes, ours_only)}
            stores = {
                name: feature_store(
                    tmp_path / name, onlines[name], data_dir, batch_engine=ENGINES[name]
                )
                for name in ENGINES
            }
            for store in stores.values():
                store.apply([APPLICANT, *views.values()])
            start, end = EVENT_TIME - timedelta(days=1), EVENT_TIME + timedelta(days=30)

            def materialize(name: str, view_names: list[str], expected_keys: int) -> float:
                redis.flushall()
                started = time.perf_counter()
                stores[name].materialize(start, end, feature_views=view_names)
                elapsed = time.perf_counter() - started
                assert redis.dbsize() == expected_keys, (name, redis.dbsize(), expected_keys)
                return elapsed

            fresh_ray()
            loan = {name: [] for name in ENGINES}
            for _ in range(ROUNDS):
                for name in ENGINES:
                    loan[name].append(
                        materialize(name, ["zipcode_features", "credit_history"], loan_rows)
                    )
            results["loan"] = {"rows": loan_rows, "rounds": ROUNDS} | {
                f"{name}_s": float(np.median(times)) for name, times in loan.items()
            }

            results["big"] = {}
            for rows, view in views.items():
                for name in ENGINES if rows in big_sizes else ["ours"]:
                    fresh_ray()
                    with WorkerMemory() as memory:
                        seconds = materialize(name, [view.name], rows // 2)
                    results["big"][f"{name}_{rows}"] = {
                        "rows": rows,
                        "seconds": seconds,
                        "worker_peak_mb": memory.peak_bytes / 2**20,
                    }
        finally:
            ray.shutdown()
            redis.close()
            server.stop()

    loan = results["loan"]
    print(f"\nMaterialization on Ray ({results['machine']}, {BUILD_PROFILE} build)\n")
    print("| measure | ray.engine + stock store | RedisRayComputeEngine | stock/ours |")
    print("|---|---|---|---|")
    print(
        f"| loan views, {loan['rows']} rows, median of {loan['rounds']} | {loan['stock_s']:.2f} s "
        f"| {loan['ours_s']:.2f} s | {loan['stock_s'] / loan['ours_s']:.1f}x |"
    )
    for rows in big_sizes:
        stock, ours = results["big"][f"stock_{rows}"], results["big"][f"ours_{rows}"]
        print(
            f"| {rows:,} rows | {stock['seconds']:.1f} s | {ours['seconds']:.1f} s "
            f"| {stock['seconds'] / ours['seconds']:.1f}x |"
        )
    for rows in big_sizes:
        stock, ours = results["big"][f"stock_{rows}"], results["big"][f"ours_{rows}"]
        print(
            f"| peak RSS of a Ray worker, {rows:,} rows | {stock['worker_peak_mb']:.0f} MB "
            f"| {ours['worker_peak_mb']:.0f} MB | |"
        )
    ours = results["big"][f"ours_{ours_only}"]
    print(
        f"| {ours_only:,} rows: time, peak RSS of a Ray worker | (not run) "
        f"| {ours['seconds']:.1f} s, {ours['worker_peak_mb']:.0f} MB | |"
    )
    if not args.quick:
        (ROOT / "bench" / "results_ray.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

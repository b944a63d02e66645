"""The soak: 8 threads mixing reads and writes through one FeatureStore on one Redis, and
threads that come and go (each reads once and exits), for a while. Each second it notes
the process's RSS and open file descriptors and the p99 of the operations of that
second; it prints them as JSON. `tests/test_soak.py` runs it in a process of its own
(short in `make test`, 10 minutes with `make soak`) and judges the numbers.

    python -m tests.soak --seconds 20 --address 127.0.0.1:6390 --data-dir /tmp/soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from feast_redis_rs import RedisOnlineStore, RedisOnlineStoreConfig

from . import loan_repo

WORKERS = 8
KEYS_PER_WORKER = 200
READ_BATCH = 50
WRITE_BATCH = 20
CHURN_THREADS_PER_SECOND = 20


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def key(worker: int, n: int) -> EntityKey:
    return EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=f"soak-{worker}-{n}")])


class Soak:
    def __init__(self, address: str, data_dir: Path):
        store = loan_repo.feature_store(data_dir, RedisOnlineStoreConfig(connection_string=address))
        self.config = store.config
        self.view = store.get_feature_view(loan_repo.views(data_dir)[1].name)
        self.online = RedisOnlineStore()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # Held while a short-lived thread lives: fds are counted between them, so that a
        # count is of what stays, not of a thread's connection in passing.
        self.churning = threading.Lock()
        self.samples: list[float] = []
        self.errors: list[str] = []
        self.operations = 0
        # The newest value each worker wrote, per key: what the end's read must find.
        self.written: dict[tuple[int, int], int] = {}

    def record(self, seconds: float) -> None:
        with self.lock:
            self.samples.append(seconds)
            self.operations += 1

    def work(self, worker: int) -> None:
        rng = random.Random(worker)
        version = 0
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                if rng.random() < 0.7:
                    numbers = rng.sample(range(KEYS_PER_WORKER), READ_BATCH)
                    got = self.online.online_read(
                        self.config, self.view, [key(worker, n) for n in numbers], ["c_i64"]
                    )
                    assert len(got) == READ_BATCH
                else:
                    version += 1
                    when = loan_repo.BASE_TIME + timedelta(seconds=version)
                    numbers = rng.sample(range(KEYS_PER_WORKER), WRITE_BATCH)
                    rows = [
                        (key(worker, n), {"c_i64": Value(int64_val=version)}, when, None)
                        for n in numbers
                    ]
                    self.online.online_write_batch(self.config, self.view, rows, None)
                    for n in numbers:
                        self.written[(worker, n)] = version
                self.record(time.perf_counter() - started)
        except Exception as error:  # reported, and the soak fails
            self.errors.append(f"worker {worker}: {type(error).__name__}: {error}")

    def churn(self) -> None:
        """Threads that use the store once and exit, as a server's idle workers do."""
        while not self.stop.wait(1 / CHURN_THREADS_PER_SECOND):
            with self.churning:
                thread = threading.Thread(target=self.read_once)
                thread.start()
                thread.join()

    def read_once(self) -> None:
        try:
            started = time.perf_counter()
            self.online.online_read(self.config, self.view, [key(0, 0)], ["c_i64"])
            self.record(time.perf_counter() - started)
        except Exception as error:
            self.errors.append(f"short-lived thread: {type(error).__name__}: {error}")

    def run(self, seconds: float) -> dict:
        threads = [threading.Thread(target=self.work, args=(w,)) for w in range(WORKERS)]
        threads.append(threading.Thread(target=self.churn))
        for thread in threads:
            thread.start()
        per_second = []
        started = time.monotonic()
        for tick in range(1, int(seconds) + 1):
            # On the clock, not after a second of sleep: the work between ticks is not lost.
            time.sleep(max(0.0, started + tick - time.monotonic()))
            if self.errors:
                break
            with self.lock:
                samples, self.samples = self.samples, []
                operations, self.operations = self.operations, 0
            with self.churning:
                fds = open_fds()
            per_second.append({
                "rss_kb": rss_kb(), "fds": fds, "operations": operations,
                "p99_ms": float(np.percentile(samples, 99) * 1000) if samples else None,
            })  # fmt: skip
        self.stop.set()
        for thread in threads:
            thread.join(timeout=60)
        return {"per_second": per_second, "errors": self.errors, "lost": self.lost_writes()}

    def lost_writes(self) -> int:
        """Keys whose stored value is not the newest one written to them."""
        keys = list(self.written)
        got = self.online.online_read(
            self.config, self.view, [key(w, n) for w, n in keys], ["c_i64"]
        )
        return sum(
            1
            for k, (_, values) in zip(keys, got, strict=True)
            if values is None or values["c_i64"].int64_val != self.written[k]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(Soak(args.address, args.data_dir).run(args.seconds)))


if __name__ == "__main__":
    main()

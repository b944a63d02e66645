"""Threads that come and go: a thread that used the store leaves nothing behind when it
exits (no connection, no file descriptor of its I/O runtime, no memory that grows with
the number of threads), as with stock Feast's store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

THREAD_PROBE = """
import os
import sys
import threading
from pathlib import Path

import redis

from feast_redis_rs import RedisOnlineStoreConfig
from tests import loan_repo

path, address = Path(sys.argv[1]), sys.argv[2]
store = loan_repo.feature_store(path, RedisOnlineStoreConfig(connection_string=address))
rows = loan_repo.entity_rows()[:3]
refs = loan_repo.feature_refs()[:4]
server = redis.Redis.from_url(f"redis://{address}")


def read_in_a_thread(count):
    for _ in range(count):
        answers = []
        thread = threading.Thread(
            target=lambda: answers.append(store.get_online_features(refs, rows).to_dict())
        )
        thread.start()
        thread.join()
        assert len(answers) == 1 and len(answers[0]["zipcode"]) == 3


def fds():
    return len(os.listdir("/proc/self/fd"))


def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def clients():
    return server.info("clients")["connected_clients"]


clients()
read_in_a_thread(200)
print(fds(), rss_kb(), clients())
read_in_a_thread(2000)
print(fds(), rss_kb(), clients())
"""


def test_short_lived_threads_leave_no_connections_fds_or_memory(redis_server, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", THREAD_PROBE, str(tmp_path), redis_server.address],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (fds_before, rss_before, clients_before), (fds_after, rss_after, clients_after) = (
        map(int, line.split()) for line in result.stdout.split("\n")[-3:-1]
    )
    # Each thread used to keep an epoll and an eventfd (here: fds 413 -> 4,413, RSS +26 MB).
    assert fds_after - fds_before <= 8, (fds_before, fds_after)
    assert clients_after - clients_before <= 1, (clients_before, clients_after)
    assert rss_after - rss_before < 4_000, (rss_before, rss_after)

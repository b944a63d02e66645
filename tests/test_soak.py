"""The soak (`tests/soak.py`) in a process of its own against a Redis of the test's own:
8 threads mixing reads and writes and threads that come and go. After a warm-up quarter,
RSS and open file descriptors stay within 10% of where they were, the per-second p99 of
the last quarter stays within 1.5x of the second's, no call fails and no write is lost.
20 seconds in `make test`; `make soak` (FEAST_REDIS_RS_SOAK_SECONDS=600) runs ten minutes."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from .redis_servers import start_redis

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("FEAST_REDIS_RS_SOAK_SECONDS", "20"))


@pytest.mark.timeout(SECONDS + 360)
def test_soak_keeps_memory_fds_and_latency_flat(tmp_path):
    server = start_redis(tmp_path / "redis")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.soak", "--seconds", str(SECONDS),
             "--address", server.address, "--data-dir", str(tmp_path / "repo")],
            cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 300, check=False,
        )  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    soak = json.loads(result.stdout.strip().splitlines()[-1])
    (tmp_path / "soak.json").write_text(json.dumps(soak, indent=1))  # to look at after
    assert soak["errors"] == []
    assert soak["lost"] == 0
    seconds = soak["per_second"]
    assert len(seconds) == int(SECONDS)
    assert all(second["operations"] > 0 for second in seconds)
    quarter = len(seconds) // 4
    warm, rest = seconds[quarter - 1], seconds[quarter:]
    assert max(s["rss_kb"] for s in rest) <= warm["rss_kb"] * 1.10, (warm, rest)
    assert max(s["fds"] for s in rest) <= warm["fds"] * 1.10, (warm, rest)
    early = statistics.median(s["p99_ms"] for s in seconds[quarter : 2 * quarter])
    late = statistics.median(s["p99_ms"] for s in seconds[-quarter:])
    assert late <= 1.5 * early, (early, late)

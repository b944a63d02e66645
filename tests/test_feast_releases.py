"""The Feast releases the package accepts: older than supported refused at import,
newer than tested warned about once and run."""

from __future__ import annotations

import subprocess
import sys

IMPORT_UNDER = """
import warnings
import feast
feast.__version__ = {version!r}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from feast_redis_rs import RedisOnlineStore
print(len(caught), *(str(w.message) for w in caught), sep="\\n")
"""


def import_under(version: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", IMPORT_UNDER.format(version=version)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_feast_older_than_supported_is_refused_at_import_naming_both_versions():
    result = import_under("0.59.2")
    assert result.returncode != 0
    assert "ImportError: feast-redis-rs supports Feast 0.60 to 0.67; Feast 0.59.2 is installed" in (
        result.stderr
    )
    assert "pip install 'feast[redis]>=0.60,<0.68'" in result.stderr


def test_a_feast_newer_than_tested_is_warned_about_once_and_runs():
    result = import_under("0.68.1")
    assert result.returncode == 0, result.stderr
    count, message = result.stdout.splitlines()[:2]
    assert count == "1"
    assert "tested with Feast 0.60 to 0.67; Feast 0.68.1 is newer: it runs" in message


def test_a_supported_feast_imports_without_a_word():
    result = import_under("0.63.0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "0"

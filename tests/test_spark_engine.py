"""``feast_redis_rs.RedisSparkComputeEngine`` on a real Spark (``pyspark`` in ``local[2]``
mode, Java 17): the loan views and a view with every dtype, nulls and several rows per
entity, materialized into standalone Redis and into the 3-master cluster, give the keys,
fields and values Feast's own engines give with stock Feast's store; Feast's
``spark.engine`` with this store's ``online_write_batch`` too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from feast_redis_rs import RedisSparkComputeEngine

from . import engine_runs

SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    # A killed Python worker fails its task once and Spark runs it again.
    "spark.task.maxFailures": "2",
}
OURS = {"type": "feast_redis_rs.RedisSparkComputeEngine", "spark_conf": SPARK_CONF}
FEASTS = {"type": "spark.engine", "spark_conf": SPARK_CONF}


@pytest.fixture(scope="module")
def local_spark():
    # Spark's Python workers run this interpreter (its default is whatever python3 is first
    # on PATH), so they import this build of feast_redis_rs.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = SparkSession.builder.appName("feast-redis-rs tests")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    yield session
    session.stop()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["standalone", "cluster"])
def test_materializes_the_bytes_of_feasts_engines(local_spark, started_deployments, name, tmp_path):
    engine_runs.assert_engines_write_feasts_bytes(
        started_deployments(name), "Spark", FEASTS, OURS, RedisSparkComputeEngine, tmp_path
    )


def test_a_failed_write_fails_the_job(local_spark, tmp_path):
    engine_runs.a_write_to_a_closed_port_fails_the_job(OURS, tmp_path)


def _writer_pids() -> list[int]:
    """Spark's Python workers: the processes its ``pyspark.daemon`` forks for tasks."""
    daemons, workers = set(), {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"pyspark.daemon" not in (proc / "cmdline").read_bytes():
                continue
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        daemons.add(int(proc.name))
        workers[int(proc.name)] = parent
    return [pid for pid, parent in workers.items() if parent in daemons]


@pytest.mark.timeout(900)
def test_a_worker_killed_mid_write_then_a_rerun_converge(
    local_spark, started_deployments, tmp_path
):
    engine_runs.kill_a_worker_mid_write_then_rerun(
        started_deployments("cluster"), OURS, tmp_path, _writer_pids
    )


def test_a_worker_keeps_one_connection_for_the_job(local_spark, started_deployments, tmp_path):
    """Feast's write step opens a connection for every Arrow batch (4 here: Spark cuts
    batches of 10,000 rows); a worker of this engine opens one for all of its batches."""
    deployment = started_deployments("standalone")
    assert engine_runs.connections_opened_materializing(deployment, FEASTS, tmp_path / "f") >= 4
    assert engine_runs.connections_opened_materializing(deployment, OURS, tmp_path / "o") <= 2

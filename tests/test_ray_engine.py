"""``feast_redis_rs.RedisRayComputeEngine`` on a real Ray (``ray.init`` on this machine, 2
CPUs): the loan views and a view with every dtype, nulls and several rows per entity,
materialized into standalone Redis and into the 3-master cluster, give the keys, fields and
values Feast's own engines give with stock Feast's store; Feast's ``ray.engine`` with this
store's ``online_write_batch`` too."""

from __future__ import annotations

import logging
from pathlib import Path

import feast
import pytest
import ray

from feast_redis_rs import RedisRayComputeEngine, _feast

from . import engine_runs

# Two write tasks at once (Feast's option for it before 0.63: max_workers).
OURS = {
    "type": "feast_redis_rs.RedisRayComputeEngine",
    "write_concurrency" if _feast.FEAST >= (0, 63) else "max_workers": 2,
}
FEASTS = {"type": "ray.engine"}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    yield
    ray.shutdown()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["standalone", "cluster"])
def test_materializes_the_bytes_of_feasts_engines(local_ray, started_deployments, name, tmp_path):
    engine_runs.assert_engines_write_feasts_bytes(
        started_deployments(name), "Ray", FEASTS, OURS, RedisRayComputeEngine, tmp_path
    )


def test_a_failed_write_fails_the_job(local_ray, tmp_path):
    """Feast's Ray write step logs a failed batch on the worker and reports success; this
    engine's job fails with the store's error."""
    engine_runs.a_write_to_a_closed_port_fails_the_job(OURS, tmp_path)


def _writer_pids() -> list[int]:
    """The Ray worker processes running this engine's write tasks (Ray titles a worker
    after the task it runs)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::") and (b"_write_block" in title or b"_write_latest" in title):
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.timeout(600)
def test_a_worker_killed_mid_write_then_a_rerun_converge(local_ray, started_deployments, tmp_path):
    engine_runs.kill_a_worker_mid_write_then_rerun(
        started_deployments("cluster"), OURS, tmp_path, _writer_pids
    )


def test_a_worker_keeps_one_connection_for_the_job(local_ray, started_deployments, tmp_path):
    """This engine writes 20 blocks of 2,000 rows in tasks on (at most) 2 Ray workers, each
    of which opens one connection for the job."""
    deployment = started_deployments("standalone")
    assert engine_runs.connections_opened_materializing(deployment, OURS, tmp_path) <= 2


def test_a_feast_and_ray_pair_that_cannot_run_is_named():
    """Feast before 0.67 names Ray Data's shuffle strategy in a way Ray 2.59 refuses: the
    engine says so with both versions and what to install, before Ray's own error."""
    assert _feast.ray_refusal(ray.__version__) is None, "the installed pair runs"
    if _feast.FEAST >= (0, 67):
        assert _feast.ray_refusal("2.60.0") is None
        return
    assert _feast.ray_refusal("2.58.1") is None
    refusal = _feast.ray_refusal("2.59.0")
    assert refusal is not None
    assert f"Feast {feast.__version__}" in refusal and "Ray 2.59.0 is installed" in refusal
    assert "ray[data]>=2.58,<2.59" in refusal

"""``feast_redis_rs.RedisRayComputeEngine`` on a real Ray (``ray.init`` on this machine, 2
CPUs): the loan views and a view with every dtype, nulls and several rows per entity,
materialized into standalone Redis and into the 3-master cluster, give the keys, fields and
values Feast's own engines give with stock Feast's store; Feast's ``ray.engine`` with this
store's ``online_write_batch`` too."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from feast import FeatureView, Field, FileSource
from feast.types import Int64, String

from feast_redis_rs import RedisOnlineStore, RedisOnlineStoreConfig, RedisRayComputeEngine

from . import loan_repo
from .redis_servers import free_port
from .test_write_arrow import arrow_view, typed_table

OURS = {"type": "feast_redis_rs.RedisRayComputeEngine", "write_concurrency": 2}
FEASTS = {"type": "ray.engine"}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    yield
    ray.shutdown()


def _materialize(deployment, online, engine: dict | None, path):
    """Every view materialized into an emptied ``deployment``; its hashes by key."""
    deployment.flush()
    repo = {"batch_engine": engine} if engine else {}
    store = loan_repo.feature_store(path, online, **repo)
    every_dtype = arrow_view(path)
    # Feast's Ray engine drops rows older than now - ttl (its local engine doesn't).
    every_dtype.ttl = timedelta(days=3650)
    store.apply([every_dtype])
    for view in loan_repo.views(path):
        loan_repo.frame(view).to_parquet(path / f"{view.name}.parquet")
    typed_table(40, nan_in_lists=False).to_pandas().to_parquet(path / "arrow_view.parquet")
    store.materialize(
        loan_repo.BASE_TIME - timedelta(days=1), loan_repo.BASE_TIME + timedelta(days=3)
    )
    return store, deployment.dump()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["standalone", "cluster"])
def test_materializes_the_bytes_of_feasts_engines(local_ray, started_deployments, name, tmp_path):
    deployment = started_deployments(name)
    runs = {
        "Feast's local engine, stock store": (deployment.stock(), None),
        "Feast's Ray engine, stock store": (deployment.stock(), FEASTS),
        "Feast's Ray engine, this store": (deployment.ours(), FEASTS),
        "this Ray engine, this store": (deployment.ours(), OURS),
    }
    dumps = {}
    for run, (online, engine) in runs.items():
        store, dumps[run] = _materialize(
            deployment, online, engine, tmp_path / run.replace(" ", "_")
        )
    provider = store._get_provider()
    assert isinstance(provider.batch_engine, RedisRayComputeEngine)
    assert isinstance(provider.online_store, RedisOnlineStore)
    reference = dumps.pop("Feast's local engine, stock store")
    assert len(reference) == 90 + 21
    for run, dump in dumps.items():
        assert dump == reference, run


def test_a_failed_write_fails_the_job(local_ray, tmp_path):
    """Feast's Ray write step logs a failed batch on the worker and reports success; this
    engine's job fails with the store's error."""
    port = free_port()
    online = RedisOnlineStoreConfig(
        connection_string=f"127.0.0.1:{port}", connect_timeout_seconds=1, retries=0
    )
    store = loan_repo.feature_store(tmp_path, online, batch_engine=OURS)
    view = store.get_feature_view("credit_history")
    loan_repo.frame(view).to_parquet(tmp_path / "credit_history.parquet")
    with pytest.raises(Exception, match=f"127.0.0.1:{port}"):
        store.materialize(
            loan_repo.BASE_TIME - timedelta(days=1),
            loan_repo.BASE_TIME + timedelta(days=3),
            feature_views=["credit_history"],
        )


def _many_applicants(path: Path, entities: int) -> FeatureView:
    """A view of ``entities`` applicants, two rows each (the later one must win)."""
    view = FeatureView(
        name="many_applicants",
        entities=[loan_repo.entities()[1]],
        ttl=timedelta(days=3650),
        schema=[Field(name="score", dtype=Int64), Field(name="note", dtype=String)],
        source=FileSource(path=str(path / "many.parquet"), timestamp_field="event_timestamp"),
    )
    rows = np.arange(2 * entities)
    pq.write_table(
        pa.table(
            {
                "dob_ssn": pa.array([f"applicant-{i % entities}" for i in rows]),
                "event_timestamp": pa.array(
                    [loan_repo.BASE_TIME + timedelta(seconds=int(i)) for i in rows],
                    pa.timestamp("us", tz="UTC"),
                ),
                "score": pa.array(rows, pa.int64()),
                "note": pa.array([f"row {i}" for i in rows]),
            }
        ),
        path / "many.parquet",
    )
    return view


def _writer_pids() -> list[int]:
    """The Ray worker processes running this engine's write tasks (Ray titles a worker
    after the task it runs)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::") and b"_write_block" in title:
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.timeout(600)
def test_a_worker_killed_mid_write_then_a_rerun_converge(local_ray, started_deployments, tmp_path):
    deployment = started_deployments("cluster")
    window = (loan_repo.BASE_TIME - timedelta(days=1), loan_repo.BASE_TIME + timedelta(days=30))

    def feature_store(path: Path, online, engine):
        store = loan_repo.feature_store(
            path, online, **({"batch_engine": engine} if engine else {})
        )
        store.apply([_many_applicants(path, 40_000)])
        return store

    deployment.flush()
    reference_store = feature_store(tmp_path / "reference", deployment.stock(), None)
    reference_store.materialize(*window, feature_views=["many_applicants"])
    reference = deployment.dump()
    assert len(reference) == 40_000

    deployment.flush()
    store = feature_store(tmp_path / "ours", deployment.ours(write_batch_size=2_000), OURS)
    killed: list[int] = []

    def kill_a_writer_once_writes_land() -> None:
        raw = deployment.raw()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _writer_pids()
            if pids and raw.dbsize() > 0:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.01)
        raw.close()

    killer = threading.Thread(target=kill_a_writer_once_writes_land)
    killer.start()
    try:
        store.materialize(*window, feature_views=["many_applicants"])
    except Exception:
        pass  # Ray retries a killed worker's task (seen: it finishes), or the job fails.
    killer.join()
    assert killed, "no write task was seen writing"
    store.materialize(*window, feature_views=["many_applicants"])
    assert deployment.dump() == reference

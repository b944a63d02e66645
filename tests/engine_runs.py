"""Materialization runs shared by the tests of the distributed engines (Ray, Spark): every
view of the loan repo into an emptied deployment, and a view of many applicants to kill a
worker in the middle of."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import FeatureView, Field, FileSource
from feast.types import Int64, String

from feast_redis_rs import RedisOnlineStore, RedisOnlineStoreConfig

from . import loan_repo
from .redis_servers import free_port
from .test_write_arrow import arrow_view, typed_table

# Feast's local engine's dump of every view: 90 loan rows and 21 keys of the every-dtype view.
EVERY_VIEW_KEYS = 90 + 21


def materialize_every_view(deployment, online, engine: dict | None, path: Path):
    """Every view materialized into an emptied ``deployment``; the store, and its hashes
    by key."""
    deployment.flush()
    repo = {"batch_engine": engine} if engine else {}
    store = loan_repo.feature_store(path, online, **repo)
    every_dtype = arrow_view(path)
    # Feast's Ray engine drops rows older than now - ttl (its local and Spark engines don't).
    every_dtype.ttl = timedelta(days=3650)
    store.apply([every_dtype])
    for view in loan_repo.views(path):
        loan_repo.frame(view).to_parquet(path / f"{view.name}.parquet")
    typed_table(40, nan_in_lists=False).to_pandas().to_parquet(path / "arrow_view.parquet")
    store.materialize(
        loan_repo.BASE_TIME - timedelta(days=1), loan_repo.BASE_TIME + timedelta(days=3)
    )
    return store, deployment.dump()


def assert_engines_write_feasts_bytes(
    deployment, engine_name: str, feasts: dict, ours: dict, engine_class: type, path: Path
) -> None:
    """Every view materialized four ways into ``deployment`` gives the same hashes: Feast's
    local engine with stock Feast's store (the reference), Feast's engine ``feasts`` with
    stock's store and with this store, and this engine ``ours`` with this store. The last
    run's engine is an ``engine_class`` that, used, pickles (its store without its
    connection)."""
    runs = {
        "Feast's local engine, stock store": (deployment.stock(), None),
        f"Feast's {engine_name} engine, stock store": (deployment.stock(), feasts),
        f"Feast's {engine_name} engine, this store": (deployment.ours(), feasts),
        f"this {engine_name} engine, this store": (deployment.ours(), ours),
    }
    dumps = {}
    for run, (online, engine) in runs.items():
        store, dumps[run] = materialize_every_view(
            deployment, online, engine, path / run.replace(" ", "_").replace("'", "")
        )
    provider = store._get_provider()
    assert isinstance(provider.batch_engine, engine_class)
    assert isinstance(provider.online_store, RedisOnlineStore)
    engine = pickle.loads(pickle.dumps(provider.batch_engine))
    assert isinstance(engine, engine_class)
    assert isinstance(engine.online_store, RedisOnlineStore)
    reference = dumps.pop("Feast's local engine, stock store")
    assert len(reference) == EVERY_VIEW_KEYS
    for run, dump in dumps.items():
        assert dump == reference, run


MANY_APPLICANTS_WINDOW = (
    loan_repo.BASE_TIME - timedelta(days=1),
    loan_repo.BASE_TIME + timedelta(days=30),
)


def many_applicants(path: Path, entities: int) -> FeatureView:
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


def kill_a_worker_mid_write_then_rerun(
    deployment, engine: dict, path: Path, writer_pids: Callable[[], list[int]]
) -> None:
    """Many applicants materialized through ``engine`` while one of ``writer_pids()`` is
    SIGKILLed once writes land, then again: the deployment ends with the bytes Feast's local
    engine and stock Feast's store write."""

    def feature_store(path: Path, online, engine):
        store = loan_repo.feature_store(
            path, online, **({"batch_engine": engine} if engine else {})
        )
        store.apply([many_applicants(path, 40_000)])
        return store

    deployment.flush()
    reference_store = feature_store(path / "reference", deployment.stock(), None)
    reference_store.materialize(*MANY_APPLICANTS_WINDOW, feature_views=["many_applicants"])
    reference = deployment.dump()
    assert len(reference) == 40_000

    deployment.flush()
    store = feature_store(path / "ours", deployment.ours(write_batch_size=2_000), engine)
    killed: list[int] = []

    def kill_a_writer_once_writes_land() -> None:
        raw = deployment.raw()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = writer_pids()
            if pids and raw.dbsize() > 0:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.01)
        raw.close()

    killer = threading.Thread(target=kill_a_writer_once_writes_land)
    killer.start()
    try:
        store.materialize(*MANY_APPLICANTS_WINDOW, feature_views=["many_applicants"])
    except Exception:
        pass  # The engine retries a killed worker's task, or the job fails: both are fine.
    killer.join()
    assert killed, "no worker was seen writing"
    assert 0 < deployment.raw().dbsize() <= 40_000
    store.materialize(*MANY_APPLICANTS_WINDOW, feature_views=["many_applicants"])
    assert deployment.dump() == reference


def a_write_to_a_closed_port_fails_the_job(engine: dict, path: Path) -> None:
    """Materializing through ``engine`` into a port nothing listens on raises an error that
    names the address."""
    port = free_port()
    online = RedisOnlineStoreConfig(
        connection_string=f"127.0.0.1:{port}", connect_timeout_seconds=1, retries=0
    )
    store = loan_repo.feature_store(path, online, batch_engine=engine)
    view = store.get_feature_view("credit_history")
    loan_repo.frame(view).to_parquet(path / "credit_history.parquet")
    with pytest.raises(Exception, match=f"127.0.0.1:{port}"):
        store.materialize(
            loan_repo.BASE_TIME - timedelta(days=1),
            loan_repo.BASE_TIME + timedelta(days=3),
            feature_views=["credit_history"],
        )


def connections_opened_materializing(deployment, engine: dict, path: Path) -> int:
    """The connections standalone ``deployment`` receives while 40,000 applicants (two rows
    each) are materialized through ``engine`` with this store, in batches of 2,000 rows."""
    deployment.flush()
    store = loan_repo.feature_store(
        path, deployment.ours(write_batch_size=2_000), batch_engine=engine
    )
    store.apply([many_applicants(path, 40_000)])
    raw = deployment.raw()
    before = raw.info("stats")["total_connections_received"]
    store.materialize(*MANY_APPLICANTS_WINDOW, feature_views=["many_applicants"])
    opened = raw.info("stats")["total_connections_received"] - before
    assert raw.dbsize() == 40_000
    raw.close()
    return opened

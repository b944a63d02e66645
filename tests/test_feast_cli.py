"""Feast end to end through its CLI and public API with this store in
``feature_store.yaml`` (and ``RedisComputeEngine`` as its batch engine): ``feast apply``,
``feast materialize``, ``feast materialize-incremental``, ``get_online_features``, push,
and ``feast serve`` answering ``/get-online-features`` -- with the same bytes in Redis as
stock Feast."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pandas as pd
import yaml
from feast import FeatureStore

from . import loan_repo
from .redis_servers import free_port

FEAST = str(Path(sys.executable).with_name("feast"))

FEATURES_PY = """
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

applicant = Entity(name="dob_ssn", join_keys=["dob_ssn"], value_type=ValueType.STRING)
credit_source = FileSource(path="{data}", timestamp_field="event_timestamp")
credit_push = PushSource(name="credit_push", batch_source=credit_source)
credit_history = FeatureView(
    name="credit_history",
    entities=[applicant],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="credit_card_due", dtype=Int64),
        Field(name="mortgage_due", dtype=Float64),
        Field(name="city", dtype=String),
    ],
    source=credit_push,
)
"""


def make_repo(path: Path, online_store: dict, data: Path, batch_engine: str | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "features.py").write_text(FEATURES_PY.format(data=data))
    settings = {
        "project": loan_repo.PROJECT,
        "provider": "local",
        "registry": str(path / "registry.db"),
        "offline_store": {"type": "file"},
        "online_store": online_store,
        "entity_key_serialization_version": 3,
    }
    if batch_engine:
        settings["batch_engine"] = {"type": batch_engine}
    (path / "feature_store.yaml").write_text(yaml.safe_dump(settings))
    return path


def credit_rows(start_hours: int, amount: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dob_ssn": loan_repo.APPLICANTS,
            "event_timestamp": [
                loan_repo.BASE_TIME + timedelta(hours=start_hours + i % 3)
                for i in range(len(loan_repo.APPLICANTS))
            ],
            "credit_card_due": [amount + i for i in range(len(loan_repo.APPLICANTS))],
            "mortgage_due": [amount * 1.5 + i for i in range(len(loan_repo.APPLICANTS))],
            "city": [f"city {i}" for i in range(len(loan_repo.APPLICANTS))],
        }
    )


def feast(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [FEAST, "--chdir", str(repo), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def read(repo: Path) -> dict:
    return (
        FeatureStore(repo_path=str(repo))
        .get_online_features(
            features=["credit_history:credit_card_due", "credit_history:city"],
            entity_rows=[{"dob_ssn": a} for a in [*loan_repo.APPLICANTS, "nobody"]],
        )
        .to_dict()
    )


def materialize_flow(repo: Path, data: Path) -> dict:
    credit_rows(0, 1000).to_parquet(data)
    feast(repo, "apply")
    end = loan_repo.BASE_TIME + timedelta(hours=5)
    feast(repo, "materialize", "2021-01-01T00:00:00", end.strftime("%Y-%m-%dT%H:%M:%S"))
    first = read(repo)
    assert first["credit_card_due"][:3] == [1000, 1001, 1002]
    assert first["credit_card_due"][-1] is None

    pd.concat([credit_rows(0, 1000), credit_rows(10, 5000)]).to_parquet(data)
    later = loan_repo.BASE_TIME + timedelta(hours=20)
    feast(repo, "materialize-incremental", later.strftime("%Y-%m-%dT%H:%M:%S"))
    second = read(repo)
    assert second["credit_card_due"][:3] == [5000, 5001, 5002]

    store = FeatureStore(repo_path=str(repo))
    pushed = credit_rows(30, 9000).head(2)
    store.push("credit_push", pushed)
    third = read(repo)
    assert third["credit_card_due"][:3] == [9000, 9001, 5002]
    return third


def online_settings(deployment, online_type: str) -> dict:
    return {
        "type": online_type,
        "redis_type": deployment.redis_type,
        "connection_string": deployment.connection_string,
        "sentinel_master": deployment.sentinel_master,
    }


def test_cli_flow_matches_stock(started_deployments, tmp_path):
    deployment = started_deployments("standalone")
    results = []
    for name, online_type, engine in (
        ("stock", "redis", None),
        ("ours", "feast_redis_rs.RedisOnlineStore", "feast_redis_rs.RedisComputeEngine"),
    ):
        deployment.flush()
        repo = make_repo(
            tmp_path / name,
            online_settings(deployment, online_type),
            tmp_path / f"{name}.parquet",
            engine,
        )
        answer = materialize_flow(repo, tmp_path / f"{name}.parquet")
        results.append((answer, deployment.dump()))
    assert results[0] == results[1]


def test_cli_flow_on_a_cluster(started_deployments, tmp_path):
    deployment = started_deployments("cluster")
    deployment.flush()
    online = online_settings(deployment, "feast_redis_rs.RedisOnlineStore")
    repo = make_repo(
        tmp_path / "ours", online, tmp_path / "ours.parquet", "feast_redis_rs.RedisComputeEngine"
    )
    materialize_flow(repo, tmp_path / "ours.parquet")
    assert all(client.dbsize() > 0 for client in deployment.master_clients())


def test_feast_serve_answers_from_our_store(redis_server, redis_db, tmp_path):
    online = {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_server.address}
    repo = make_repo(tmp_path / "repo", online, tmp_path / "data.parquet")
    expected = materialize_flow(repo, tmp_path / "data.parquet")
    port = free_port()
    server = subprocess.Popen(
        [FEAST, "--chdir", str(repo), "serve", "-p", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        body = json.dumps(
            {
                "features": ["credit_history:credit_card_due", "credit_history:city"],
                "entities": {"dob_ssn": [*loan_repo.APPLICANTS, "nobody"]},
            }
        ).encode()
        answers = [post_when_up(port, body) for _ in range(4)]
        for answer in answers:
            names = answer["metadata"]["feature_names"]
            columns = {
                n: [v for v in r["values"]] for n, r in zip(names, answer["results"], strict=True)
            }
            assert columns["credit_card_due"] == expected["credit_card_due"]
            assert columns["city"] == expected["city"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def post_when_up(port: int, body: bytes, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/get-online-features",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except (ConnectionError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def test_version_names_the_build_profile():
    """A debug build reads several times slower: `--version` says which this is."""
    import feast_redis_rs

    result = subprocess.run(
        [str(Path(sys.executable).parent / "feast-redis-rs"), "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    expected = f"feast-redis-rs {feast_redis_rs.__version__} ({feast_redis_rs.BUILD_PROFILE} build)"
    assert result.stdout.strip() == expected
    assert feast_redis_rs.BUILD_PROFILE in ("debug", "release")

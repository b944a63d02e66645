"""The behaviours of Feast's Redis store, ported to ours and checked against the stock
store on the same Redis: timestamp dedup, TTL, chunked writes and progress, deletes on
``update``/``teardown``, versioned views, pre-computed vectors, the async paths."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from feast import FeatureStore, FeatureView, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStore as StockStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from feast_redis_rs import RedisOnlineStore, _feast, encoding

from . import loan_repo
from .feast_release import needs_feast

PROJECT = loan_repo.PROJECT


def repo_config(online_store, tmp_path, version: int = 3, versioning: bool = False) -> RepoConfig:
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry={
            "path": str(tmp_path / "registry.db"),
            "enable_online_feature_view_versioning": versioning,
        },
        online_store=online_store,
        entity_key_serialization_version=version,
    )


def credit_view(tmp_path) -> FeatureView:
    return loan_repo.views(tmp_path)[1]


def row(applicant: str, minutes: int, amount: int):
    key = EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=applicant)])
    values = {"c_i64": Value(int64_val=amount), "c_text": Value(string_val=f"v{amount}")}
    return key, values, loan_repo.BASE_TIME + timedelta(minutes=minutes), None


# Batches written one after the other: equal and older event times must be skipped
# (against the stored value and against earlier rows of the same batch).
DEDUP_BATCHES = [
    [row("a", 10, 1), row("b", 10, 1)],
    [row("a", 10, 2), row("b", 9, 2), row("c", 5, 2)],
    [row("a", 11, 3), row("a", 12, 4), row("a", 11, 5), row("c", 5, 6), row("c", 4, 7)],
    [row("b", 20, 8), row("b", 19, 9), row("b", 20, 10)],
]


def run_scenario(store, config, view, batches) -> list[int]:
    calls: list[int] = []
    for batch in batches:
        store.online_write_batch(config, view, batch, calls.append)
    return calls


@pytest.mark.parametrize(
    "settings",
    [
        {},
        pytest.param({"skip_dedup": True}, marks=needs_feast(63, "The Redis store's skip_dedup")),
        {"key_ttl_seconds": 600},
        {"write_batch_size": 2},
    ],
    ids=["dedup", "skip_dedup", "ttl", "small-chunks"],
)
def test_writes_match_stock(deployment, tmp_path, settings):
    view = credit_view(tmp_path)
    stock_settings = {k: v for k, v in settings.items() if k != "write_batch_size"}
    stock_config = repo_config(deployment.stock(**stock_settings), tmp_path)
    run_scenario(StockStore(), stock_config, view, DEDUP_BATCHES)
    expected = deployment.dump()
    raw = deployment.raw()
    stock_ttls = {key: raw.ttl(key) for key in expected}

    deployment.flush()
    config = repo_config(deployment.ours(**settings), tmp_path)
    calls = run_scenario(RedisOnlineStore(), config, view, DEDUP_BATCHES)
    assert deployment.dump() == expected
    assert sum(calls) == sum(len(b) for b in DEDUP_BATCHES)
    if "write_batch_size" in settings and _feast.IN_BATCH_ORDERING:
        assert calls == [2, 2, 1, 2, 2, 1, 2, 1]
    elif "write_batch_size" in settings:
        # Before Feast 0.66 an entity's rows of a batch share a chunk.
        assert calls == [2, 2, 1, 3, 2, 3]
    ttls = {key: raw.ttl(key) for key in expected}
    if "key_ttl_seconds" in settings:
        assert all(590 <= t <= 600 for t in ttls.values()), ttls
    assert {k: t > 0 for k, t in ttls.items()} == {k: t > 0 for k, t in stock_ttls.items()}


def test_dedup_keeps_the_latest_row(redis_server, redis_db, tmp_path):
    view = credit_view(tmp_path)
    config = repo_config(loan_repo_online(redis_server), tmp_path)
    store = RedisOnlineStore()
    run_scenario(store, config, view, DEDUP_BATCHES)
    keys = [row(a, 0, 0)[0] for a in "abc"]
    got = store.online_read(config, view, keys, ["c_i64"])
    if _feast.IN_BATCH_ORDERING:
        # A row must be newer than the stored one and than earlier rows of its batch.
        assert [values["c_i64"].int64_val for _, values in got] == [4, 8, 2]
        assert [ts.minute for ts, _ in got] == [12, 20, 5]
    else:
        # Before Feast 0.66 each row is checked against what was stored before its batch:
        # of a batch's rows for one entity that pass, the last written wins.
        assert [values["c_i64"].int64_val for _, values in got] == [5, 10, 2]
        assert [ts.minute for ts, _ in got] == [11, 20, 5]


def loan_repo_online(redis_server, **settings):
    from feast_redis_rs import RedisOnlineStoreConfig

    return RedisOnlineStoreConfig(connection_string=redis_server.address, **settings)


def applied_views(store, tmp_path) -> tuple[FeatureView, FeatureView]:
    """credit_history and a second view on the same entity, as the registry has them
    (only applied views know their join keys)."""
    credit = loan_repo.views(tmp_path)[1]
    extra = FeatureView(
        name="credit_extra",
        entities=[loan_repo.entities()[1]],
        schema=[credit.schema[0]],
        source=credit.batch_source,
    )
    store.apply([extra])
    return store.get_feature_view("credit_history"), store.get_feature_view("credit_extra")


def test_update_and_teardown_delete_like_stock(deployment, tmp_path):
    results = []
    for name, online in (("stock", deployment.stock()), ("ours", deployment.ours())):
        deployment.flush()
        feature_store = loan_repo.feature_store(tmp_path / name, online)
        credit, extra = applied_views(feature_store, tmp_path / name)
        config = feature_store.config
        store = feature_store._get_provider().online_store
        store.online_write_batch(config, credit, [row(a, 1, 1) for a in "abcd"], None)
        key, _, event_time, _ = row("a", 1, 1)
        store.online_write_batch(
            config, extra, [(key, {"c_i32": Value(int32_val=5)}, event_time, None)], None
        )
        store.update(config, [credit], [extra], [], [], partial=False)
        after_update = deployment.dump()
        store.teardown(config, [extra], [])
        results.append((after_update, deployment.dump()))
    assert results[0] == results[1]
    after_update, after_teardown = results[1]
    # "a" keeps the other view's field and timestamp; b, c, d held only the deleted view.
    assert len(after_update) == 1
    assert len(next(iter(after_update.values()))) == 2
    assert after_teardown == {}


def test_full_scan_for_deletion_off_keeps_data(redis_server, redis_db, tmp_path):
    view = credit_view(tmp_path)
    config = repo_config(loan_repo_online(redis_server, full_scan_for_deletion=False), tmp_path)
    store = RedisOnlineStore()
    store.online_write_batch(config, view, [row("a", 1, 1)], None)
    store.update(config, [view], [], [], [], partial=False)
    assert redis_db.dbsize() == 1


@needs_feast(63, "Versioned online feature views")
def test_versioned_views_match_stock(deployment, tmp_path):
    view = credit_view(tmp_path)
    view.current_version_number = 2
    outputs = []
    for store, online in (
        (StockStore(), deployment.stock()),
        (RedisOnlineStore(), deployment.ours()),
    ):
        deployment.flush()
        config = repo_config(online, tmp_path, versioning=True)
        store.online_write_batch(config, view, [row("a", 1, 7)], None)
        read = store.online_read(config, view, [row("a", 0, 0)[0]], ["c_i64"])
        outputs.append((deployment.dump(), read))
    assert outputs[0] == outputs[1]
    fields = next(iter(outputs[1][0].values()))
    assert b"_ts:credit_history_v2" in fields


def test_async_paths_match_sync(deployment, tmp_path):
    ours = loan_repo.feature_store(tmp_path / "ours", deployment.ours())
    view = ours.get_feature_view("credit_history")
    frame = loan_repo.frame(view)

    async def scenario():
        await ours.write_to_online_store_async("credit_history", frame)
        return await ours.get_online_features_async(
            features=[f"credit_history:{f.name}" for f in view.features],
            entity_rows=[{"dob_ssn": a} for a in [*loan_repo.APPLICANTS, "nobody"]],
        )

    response = asyncio.run(scenario())
    written_async = deployment.dump()
    deployment.flush()
    ours.write_to_online_store("credit_history", frame)
    assert deployment.dump() == written_async
    sync = ours.get_online_features(
        features=[f"credit_history:{f.name}" for f in view.features],
        entity_rows=[{"dob_ssn": a} for a in [*loan_repo.APPLICANTS, "nobody"]],
    )
    assert response.proto == sync.proto

    keys = [row(a, 0, 0)[0] for a in loan_repo.APPLICANTS[:3]]
    provider = ours._get_provider()
    online = provider.online_store
    got = asyncio.run(online.online_read_async(ours.config, view, keys, None))
    assert got == online.online_read(ours.config, view, keys, None)


@needs_feast(64, "Pre-computed feature services")
def test_precomputed_vectors_match_stock(redis_server, redis_db, tmp_path):
    from feast import FeatureService

    answers = []
    for name, online in (
        ("stock", loan_repo_stock(redis_server)),
        ("ours", loan_repo_online(redis_server)),
    ):
        redis_db.flushall()
        store = loan_repo.feature_store(tmp_path / name, online)
        views = loan_repo.views(tmp_path / name)
        service = FeatureService(name="precomputed", features=views[:2], precompute_online=True)
        store.apply([service])
        for view in views[:2]:
            store.write_to_online_store(view.name, loan_repo.frame(view))
        store.precompute_feature_service("precomputed")
        response = store.get_online_features(
            features=store.get_feature_service("precomputed"),
            entity_rows=loan_repo.entity_rows()[:-2],
            # Feast 0.67 stores pre-computed vectors under full names only.
            full_feature_names=True,
        )
        answers.append((response.to_dict(), sorted(redis_db.keys())))
    assert answers[0] == answers[1]
    assert answers[1][0]["zipcode_features__z_i64"][0] is not None


def loan_repo_stock(redis_server):
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig as StockConfig

    return StockConfig(connection_string=redis_server.address)


def test_version_2_data_is_deleted_unlike_stock(redis_server, redis_db, tmp_path):
    """Stock Feast scans with the version 3 prefix whatever the config says, so its
    deletes miss version 2 keys; ours use the configured version."""
    remaining = {}
    for name, online in (
        ("stock", loan_repo_stock(redis_server)),
        ("ours", loan_repo_online(redis_server)),
    ):
        redis_db.flushall()
        feature_store = loan_repo.feature_store(tmp_path / name, online, version=2)
        credit, _ = applied_views(feature_store, tmp_path / name)
        store = feature_store._get_provider().online_store
        store.online_write_batch(feature_store.config, credit, [row("a", 1, 1)], None)
        store.update(feature_store.config, [credit], [], [], [], partial=False)
        remaining[name] = redis_db.dbsize()
    assert remaining == {"stock": 1, "ours": 0}


def test_on_demand_views_and_version_metadata_match_stock(redis_server, redis_db, tmp_path):
    from feast import Field, RequestSource
    from feast.on_demand_feature_view import on_demand_feature_view
    from feast.types import Float64, Int64

    # The views' versions in the response metadata arrived in Feast 0.62.
    version_metadata = (
        {"include_feature_view_version_metadata": True} if _feast.VERSION_METADATA else {}
    )
    answers = []
    for name, online in (
        ("stock", loan_repo_stock(redis_server)),
        ("ours", loan_repo_online(redis_server)),
    ):
        redis_db.flushall()
        store = loan_repo.feature_store(tmp_path / name, online)
        credit = store.get_feature_view("credit_history")
        application = RequestSource(
            name="application", schema=[Field(name="loan_amnt", dtype=Int64)]
        )

        @on_demand_feature_view(
            sources=[credit, application],
            schema=[Field(name="due_per_loan", dtype=Float64)],
        )
        def debt_ratio(inputs: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({"due_per_loan": inputs["c_i64"] / inputs["loan_amnt"]})

        store.apply([debt_ratio])
        store.write_to_online_store("credit_history", loan_repo.frame(credit))
        applicants = [*loan_repo.APPLICANTS[:6], "nobody"]
        for full_names in (False, True):
            response = store.get_online_features(
                features=[
                    "debt_ratio:due_per_loan",
                    "credit_history:c_i64",
                    "zipcode_features:z_text",
                ],
                entity_rows=[
                    {"dob_ssn": a, "zipcode": loan_repo.ZIPCODES[i], "loan_amnt": 1000 + i}
                    for i, a in enumerate(applicants)
                ],
                full_feature_names=full_names,
                **version_metadata,
            )
            answers.append((name, full_names, response.proto, response.to_dict()))
    stock, ours = answers[:2], answers[2:]
    assert [a[2:] for a in ours] == [a[2:] for a in stock]
    if version_metadata:
        assert len(ours[0][2].metadata.feature_view_metadata) == 2
    assert ours[0][3]["due_per_loan"][0] is not None


@pytest.mark.parametrize("deployment", ["standalone", "cluster"], indirect=True)
def test_deletes_never_reach_another_project(deployment, tmp_path):
    """`preprod` and `a_prod` end in `prod`, `prod_b` starts with it: deleting `prod`'s
    view, its entities, or tearing it down leaves their keys byte for byte."""
    store = RedisOnlineStore()

    def applied(project: str) -> tuple[RepoConfig, FeatureView]:
        feature_store = FeatureStore(
            config=RepoConfig(
                project=project,
                provider="local",
                registry=str(tmp_path / f"{project}.db"),
                online_store=deployment.ours(),
                offline_store={"type": "file"},
                entity_key_serialization_version=3,
            )
        )
        feature_store.apply([loan_repo.entities()[1], credit_view(tmp_path)])
        return feature_store.config, feature_store.get_feature_view("credit_history")

    repos = {project: applied(project) for project in ("prod", "preprod", "a_prod", "prod_b")}
    for config, view in repos.values():
        store.online_write_batch(config, view, [row(a, 1, 1) for a in "ab"], None)
    prod_keys = {encoding.redis_key("prod", row(a, 1, 1)[0]) for a in "ab"}
    assert prod_keys <= set(deployment.dump())
    others = {k: v for k, v in deployment.dump().items() if k not in prod_keys}
    assert len(others) == 6

    config, view = repos["prod"]
    store.update(config, [view], [], [], [], partial=False)
    assert deployment.dump() == others
    store.online_write_batch(config, view, [row("a", 2, 2)], None)
    assert store.delete_entity_values(config, ["dob_ssn"]) == 1
    assert deployment.dump() == others
    store.online_write_batch(config, view, [row("a", 3, 3)], None)
    store.teardown(config, [view], [])
    assert deployment.dump() == others


def test_a_row_with_thousands_of_features_is_written_whole(redis_server, redis_db, tmp_path):
    """More field/value arguments than Lua's `unpack` takes at once (~8,000): the newest-
    row script writes them in slices, and a newer row still replaces an older one."""
    from feast import Field
    from feast.types import Int64

    credit = credit_view(tmp_path)
    wide = FeatureView(
        name="wide",
        entities=[loan_repo.entities()[1]],
        schema=[Field(name=f"f{i}", dtype=Int64) for i in range(5000)],
        source=credit.batch_source,
    )
    config = repo_config(loan_repo_online(redis_server), tmp_path)
    store = RedisOnlineStore()
    key, _, event_time, _ = row("a", 1, 1)
    for minutes, offset in ((2, 1000), (1, 0)):
        values = {f"f{i}": Value(int64_val=i + offset) for i in range(5000)}
        store.online_write_batch(
            config, wide, [(key, values, event_time + timedelta(minutes=minutes), None)], None
        )
    ((_, read),) = store.online_read(config, wide, [key])
    assert read == {f"f{i}": Value(int64_val=i + 1000) for i in range(5000)}


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATER = datetime(2021, 8, 25, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("stored", "new", "written"),
    [
        (Timestamp(seconds=-86400), EPOCH - timedelta(days=1, seconds=-1), True),
        (Timestamp(seconds=-86400), EPOCH - timedelta(days=2), False),
        (Timestamp(seconds=-1, nanos=999_999_000), EPOCH, True),
        (Timestamp(seconds=-1, nanos=999_999_000), EPOCH - timedelta(microseconds=1), False),
        (Timestamp(), EPOCH - timedelta(days=400), True),
        (Timestamp(seconds=int(LATER.timestamp()), nanos=500_000_000), LATER, False),
        (
            Timestamp(seconds=int(LATER.timestamp()), nanos=500_000_000),
            LATER + timedelta(milliseconds=600),
            True,
        ),
        (Timestamp(seconds=int(LATER.timestamp())), LATER, False),
        (Timestamp(seconds=2**35), LATER, False),
        (Timestamp(seconds=-(2**35)), EPOCH - timedelta(days=365 * 100), True),
    ],
)
def test_a_row_is_written_only_over_an_older_stored_time(
    stored, new, written, redis_server, redis_db, tmp_path
):
    """The newest-row check, on the server, reads any stored `google.protobuf.Timestamp`
    (negative seconds, nanos, the epoch's empty encoding) and writes only a newer row."""
    config = repo_config(loan_repo_online(redis_server), tmp_path)
    view, store = credit_view(tmp_path), RedisOnlineStore()
    key, values, _, _ = row("a", 0, 1)
    store.online_write_batch(config, view, [(key, values, LATER, None)], None)
    redis_key = encoding.redis_key(PROJECT, key)
    redis_db.hset(redis_key, encoding.timestamp_field(view.name), stored.SerializeToString())
    _, newer, _, _ = row("a", 0, 2)
    store.online_write_batch(config, view, [(key, newer, new, None)], None)
    ((_, read),) = store.online_read(config, view, [key], ["c_i64"])
    assert read["c_i64"].int64_val == (2 if written else 1)
    expected = Timestamp()
    expected.FromDatetime(new) if written else expected.MergeFrom(stored)
    stored_now = redis_db.hget(redis_key, encoding.timestamp_field(view.name))
    assert Timestamp.FromString(stored_now) == expected

"""``RedisOnlineStore.write_arrow``: Arrow rows straight into Redis from Rust, with the
bytes stock Feast's ``online_write_batch`` stores for the rows its own
``_convert_arrow_to_proto`` makes of the same data; columns of other Arrow types than
this path maps go through Feast's conversion and still match."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import BatchFeatureView, FeatureView, Field, FileSource, PushSource, utils
from feast.infra.online_stores.redis import RedisOnlineStore as StockStore
from feast.infra.online_stores.redis import RedisOnlineStoreConfig as StockConfig
from feast.types import Array, Bool, Float64, Int64, String

from feast_redis_rs import (
    RedisComputeEngine,
    RedisOnlineStore,
    RedisOnlineStoreConfig,
    RedisProvider,
    _feast,
    _native,
)
from feast_redis_rs.plans import ViewSpec

from . import loan_repo
from .feast_release import needs_feast

UTC_US = pa.timestamp("us", tz="UTC")


def arrow_view(data_dir) -> FeatureView:
    dtypes = {n: d for n, d in loan_repo.DTYPES.items() if n != "when_list"}
    return FeatureView(
        name="arrow_view",
        entities=[loan_repo.entities()[1]],
        ttl=timedelta(days=1),
        schema=[Field(name=f"a_{n}", dtype=d) for n, d in dtypes.items()],
        source=FileSource(
            path=str(data_dir / "arrow_view.parquet"), timestamp_field="event_timestamp"
        ),
    )


def typed_table(rows: int, start_minutes: int = 0, nan_in_lists: bool = True) -> pa.Table:
    """Every column with the Arrow type of its dtype, nulls, NaN, empty and null lists.
    (A NaN inside a list comes back as a null item from a pandas round trip.)"""
    base = loan_repo.BASE_TIME
    ints = list(range(rows))

    def nullable(values):
        return [None if i % 5 == 3 else v for i, v in enumerate(values)]

    def lists(values):
        return [
            None if i % 4 == 1 else ([] if i % 4 == 2 else [v, v]) for i, v in enumerate(values)
        ]

    columns = {
        "dob_ssn": pa.array([f"applicant-{i % (rows // 2 + 1)}" for i in ints]),
        "event_timestamp": pa.array(
            [base + timedelta(minutes=start_minutes + (i * 7) % 11, microseconds=i) for i in ints],
            UTC_US,
        ),
        "a_i32": pa.array([i - 3 for i in ints], pa.int32()),
        "a_i64": pa.array([i * 2**33 for i in ints], pa.int64()),
        "a_f32": pa.array(
            nullable([float("nan") if i == 1 else i / 3 for i in ints]), pa.float32()
        ),
        "a_f64": pa.array(
            nullable([float("nan") if i == 2 else i * 1.5 for i in ints]), pa.float64()
        ),
        "a_text": pa.array(nullable([f"t{i}é" for i in ints])),
        "a_raw": pa.array(nullable([bytes([i % 256, 0]) for i in ints]), pa.binary()),
        "a_flag": pa.array(nullable([i % 2 == 0 for i in ints])),
        "a_when": pa.array(
            nullable([base - timedelta(days=i, microseconds=7) for i in ints]), UTC_US
        ),
        "a_i32_list": pa.array(lists([i for i in ints]), pa.list_(pa.int32())),
        "a_i64_list": pa.array(lists([i * 2**40 for i in ints]), pa.list_(pa.int64())),
        "a_f32_list": pa.array(lists([i / 7 for i in ints]), pa.list_(pa.float32())),
        "a_f64_list": pa.array(
            lists([float("nan") if i == 3 and nan_in_lists else i / 9 for i in ints]),
            pa.list_(pa.float64()),
        ),
        "a_text_list": pa.array(lists([f"x{i}" for i in ints]), pa.list_(pa.string())),
        "a_raw_list": pa.array(lists([bytes([i % 256]) for i in ints]), pa.list_(pa.binary())),
        "a_flag_list": pa.array(lists([i % 3 == 0 for i in ints]), pa.list_(pa.bool_())),
    }
    return pa.table(columns)


def stores(redis_server, tmp_path):
    stock = loan_repo.feature_store(
        tmp_path / "stock", StockConfig(connection_string=redis_server.address)
    )
    ours = loan_repo.feature_store(
        tmp_path / "ours",
        RedisOnlineStoreConfig(
            connection_string=redis_server.address, write_batch_size=7, key_ttl_seconds=300
        ),
    )
    for store in (stock, ours):
        store.apply([arrow_view(tmp_path)])
    return stock, ours


def native_plan(ours, view: FeatureView) -> _native.ViewPlan:
    """The plan ``write_arrow`` builds for ``arrow_view``, for calling the native client."""
    return _native.ViewPlan(
        ViewSpec(
            project=ours.config.project,
            entity_key_serialization_version=3,
            view="arrow_view",
            join_keys=[("dob_ssn", "STRING")],
            features=[(f.name, f.dtype.to_value_type().name) for f in view.features],
            timestamp_column="event_timestamp",
            key_ttl_seconds=None,
            skip_dedup=False,
            in_batch_ordering=_feast.IN_BATCH_ORDERING,
            near_cache=False,
        )
    )


def dump(redis_db) -> dict:
    return {key: redis_db.hgetall(key) for key in redis_db.keys()}


def test_typed_arrow_rows_match_stock_bytes(redis_server, redis_db, tmp_path):
    stock, ours = stores(redis_server, tmp_path)
    view = ours.get_feature_view("arrow_view")
    tables = [typed_table(40), typed_table(40, start_minutes=5)]
    join_keys = {c.name: c.dtype.to_value_type() for c in view.entity_columns}

    stock_config = stock.config.model_copy(
        update={
            "online_store": StockConfig(connection_string=redis_server.address, key_ttl_seconds=300)
        }
    )
    for table in tables:
        rows = utils._convert_arrow_to_proto(table, view, join_keys)
        StockStore().online_write_batch(stock_config, view, rows, None)
    expected = dump(redis_db)
    assert len(expected) == 21

    redis_db.flushall()
    online = ours._get_provider().online_store
    client = online._get_client(ours.config.online_store)
    plan = native_plan(ours, view)
    native = client.write_arrow(plan, tables[0].to_batches()[0])
    assert native is not None, "a typed batch must take the Arrow path"
    redis_db.flushall()
    calls = []
    for table in tables:
        online.write_arrow(ours.config, view, table, calls.append)
    assert dump(redis_db) == expected
    if _feast.IN_BATCH_ORDERING:
        assert calls == [7, 7, 7, 7, 7, 5] * 2
    else:
        # Before Feast 0.66 an entity's rows of a batch share a chunk: whole entities,
        # at most 7 rows a chunk here (no entity has more).
        assert sum(calls) == 80
        assert all(0 < c <= 7 for c in calls), calls
    assert all(0 < redis_db.ttl(key) <= 300 for key in expected)

    # As docs/engines.md shows it: a store of its own, from the repo's config.
    redis_db.flushall()
    for table in tables:
        RedisOnlineStore().write_arrow(ours.config, view, table)
    assert dump(redis_db) == expected


def test_event_times_that_cannot_be_written_right_are_refused(redis_server, redis_db, tmp_path):
    """Numbers as event times (Feast's conversion reads any integer as nanoseconds, so
    epoch seconds would be stored as 1970) and nulls: a ValueError naming the column, the
    view (and the row), with nothing written; the same seconds as an Arrow timestamp are
    written as stock Feast writes them."""
    stock, ours = stores(redis_server, tmp_path)
    view = ours.get_feature_view("arrow_view")
    online = ours._get_provider().online_store
    table = typed_table(12)
    index = table.schema.get_field_index("event_timestamp")
    times = table.column(index).to_pylist()
    seconds = [int(t.timestamp()) for t in times]
    refused = {
        "int64": (pa.array(seconds, pa.int64()), "is int64; give it an Arrow timestamp type"),
        "double": (pa.array(seconds, pa.float64()), "is double; give it an Arrow timestamp"),
        "null": (pa.array([*times[:7], None, *times[8:]], UTC_US), "is null at row 7"),
    }
    for column, message in refused.values():
        with pytest.raises(ValueError, match=message) as raised:
            online.write_arrow(
                ours.config, view, table.set_column(index, "event_timestamp", column)
            )
        assert "'event_timestamp' of view 'arrow_view'" in str(raised.value)
        assert redis_db.dbsize() == 0

    as_seconds = table.set_column(
        index, "event_timestamp", pa.array(seconds, pa.timestamp("s", tz="UTC"))
    )
    online.write_arrow(ours.config, view, as_seconds)
    written = dump(redis_db)
    redis_db.flushall()
    join_keys = {c.name: c.dtype.to_value_type() for c in view.entity_columns}
    rows = utils._convert_arrow_to_proto(as_seconds, view, join_keys)
    StockStore().online_write_batch(
        stock.config.model_copy(
            update={"online_store": StockConfig(connection_string=redis_server.address)}
        ),
        view, rows, None,
    )  # fmt: skip
    assert written == dump(redis_db) and len(written) > 0


def test_untyped_columns_fall_back_to_feasts_conversion(redis_server, redis_db, tmp_path):
    stock, ours = stores(redis_server, tmp_path)
    for view in loan_repo.views(tmp_path):
        frame = loan_repo.frame(view)
        redis_db.flushall()
        stock.write_to_online_store(view.name, frame)
        expected = dump(redis_db)
        redis_db.flushall()
        registered = ours.get_feature_view(view.name)
        ours._get_provider().online_store.write_arrow(
            ours.config, registered, pa.Table.from_pandas(frame)
        )
        assert dump(redis_db) == expected, view.name


def test_redis_compute_engine_materializes_like_stock(redis_server, redis_db, tmp_path, caplog):
    engine = {"type": "feast_redis_rs.RedisComputeEngine"}
    caplog.set_level(logging.INFO, logger="feast_redis_rs.online_store")
    caplog.set_level(logging.DEBUG, logger="feast_redis_rs.compute_engine")
    dumps = {}
    for name, online, repo in (
        ("stock", StockConfig(connection_string=redis_server.address), {}),
        (
            "ours",
            RedisOnlineStoreConfig(connection_string=redis_server.address),
            {"batch_engine": engine},
        ),
    ):
        redis_db.flushall()
        store = loan_repo.feature_store(tmp_path / name, online, **repo)
        store.apply([arrow_view(tmp_path / name)])
        for view in loan_repo.views(tmp_path / name):
            loan_repo.frame(view).to_parquet(tmp_path / name / f"{view.name}.parquet")
        typed_table(40, nan_in_lists=False).to_pandas().to_parquet(
            tmp_path / name / "arrow_view.parquet"
        )
        caplog.clear()
        store.materialize(
            loan_repo.BASE_TIME - timedelta(days=1), loan_repo.BASE_TIME + timedelta(days=3)
        )
        dumps[name] = dump(redis_db)
        streamed = [
            r.getMessage() for r in caplog.records if r.name == "feast_redis_rs.compute_engine"
        ]
        assert [m.split()[0] for m in streamed] == (["streamed"] * 4 if name == "ours" else [])
    assert isinstance(store._get_provider().batch_engine, RedisComputeEngine)
    # The loan frames hold ints with nulls (float64 in Arrow): Feast's conversion; the
    # typed view goes straight from Arrow.
    fallbacks = {r.args[0] for r in caplog.records if r.msg.startswith("write_arrow:")}
    assert fallbacks == {"zipcode_features", "credit_history", "loan_features"}
    assert len(dumps["ours"]) == 90 + 21
    assert dumps["ours"] == dumps["stock"]


@pytest.mark.parametrize(
    ("validated", "log_line"),
    [
        (False, "streamed mapped_view from "),
        pytest.param(
            True, "read ", marks=needs_feast(61, "Batch feature views' enable_validation")
        ),
    ],
    ids=["streamed", "local-engine-plan"],
)
def test_parquet_read_keeps_the_local_engines_rows(
    redis_server, redis_db, tmp_path, caplog, validated, log_line
):
    """Field mapping, tz-naive times, a created-timestamp tie-break, nulls, rows outside
    the window, two files and batches smaller than an entity's rows: the pyarrow read
    (streamed for a plain view; in Feast's plan for a validated batch view) picks the
    rows and writes the bytes Feast's local engine does."""
    caplog.set_level(logging.DEBUG, logger="feast_redis_rs.compute_engine")
    base = loan_repo.BASE_TIME.replace(tzinfo=None)
    rows = 60
    # Feast's local engine maps a join key's column from 0.64 (before, it fails on one).
    entity_column = "applicant" if _feast.FEAST >= (0, 64) else "dob_ssn"
    frame = pa.table(
        {
            entity_column: [f"a{i % 20}" for i in range(rows)],
            "ts": pa.array(
                [base + timedelta(hours=(i * 7) % 5) for i in range(rows)], pa.timestamp("ns")
            ),
            "created": pa.array(
                [base + timedelta(seconds=(i * 13) % 17) for i in range(rows)], pa.timestamp("us")
            ),
            "score_raw": pa.array([None if i % 9 == 4 else i for i in range(rows)], pa.int64()),
            "label": [f"l{i}" for i in range(rows)],
        }
    )
    dumps = {}
    for name, online, repo in (
        ("stock", StockConfig(connection_string=redis_server.address), {}),
        (
            "ours",
            RedisOnlineStoreConfig(connection_string=redis_server.address, write_batch_size=7),
            {"batch_engine": {"type": "feast_redis_rs.RedisComputeEngine"}},
        ),
    ):
        redis_db.flushall()
        directory = tmp_path / name / "mapped"
        directory.mkdir(parents=True)
        store = loan_repo.feature_store(tmp_path / name, online, **repo)
        pq.write_table(frame.slice(0, 25), directory / "part-0.parquet")
        pq.write_table(frame.slice(25), directory / "part-1.parquet")
        view_type = BatchFeatureView if validated else FeatureView
        view = view_type(
            name="mapped_view",
            entities=[loan_repo.entities()[1]],
            ttl=timedelta(days=1),
            schema=[Field(name="score", dtype=Int64), Field(name="label", dtype=String)],
            source=FileSource(
                path=str(directory),
                timestamp_field="ts",
                created_timestamp_column="created",
                field_mapping={"score_raw": "score", entity_column: "dob_ssn"},
            ),
            **({"online": True, "enable_validation": True} if validated else {}),
        )
        store.apply([view])
        caplog.clear()
        store.materialize(
            loan_repo.BASE_TIME + timedelta(hours=1),
            loan_repo.BASE_TIME + timedelta(hours=3),
            feature_views=["mapped_view"],
        )
        dumps[name] = dump(redis_db)
        reads = [
            r.getMessage() for r in caplog.records if r.name == "feast_redis_rs.compute_engine"
        ]
        assert [m.startswith(log_line) for m in reads] == ([True] if name == "ours" else [])
    in_window = {i % 20 for i in range(rows) if 1 <= (i * 7) % 5 <= 3}
    assert len(dumps["ours"]) == len(in_window) < 20
    assert dumps["ours"] == dumps["stock"]


MEMORY_PROBE = """
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from feast import FeatureView, Field, FileSource
from feast.types import String

from feast_redis_rs import RedisOnlineStoreConfig
from tests import loan_repo

path, address = Path(sys.argv[1]), sys.argv[2]
store = loan_repo.feature_store(
    path,
    RedisOnlineStoreConfig(connection_string=address, write_batch_size=500),
    batch_engine={"type": "feast_redis_rs.RedisComputeEngine"},
)
store.apply([FeatureView(
    name="wide_view", entities=[loan_repo.entities()[1]], ttl=timedelta(days=1),
    schema=[Field(name="blob", dtype=String)],
    source=FileSource(path=str(path / "wide.parquet"), timestamp_field="event_timestamp"),
)])
before = pa.default_memory_pool().max_memory()
store.materialize(
    loan_repo.BASE_TIME - timedelta(hours=1), loan_repo.BASE_TIME + timedelta(days=1),
    feature_views=["wide_view"],
)
print(before, pa.default_memory_pool().max_memory())
"""


def wide_table(rows: int) -> pa.Table:
    """Rows of 1 KB, two per entity."""
    return pa.table(
        {
            "dob_ssn": [f"applicant-{i % (rows // 2)}" for i in range(rows)],
            "event_timestamp": pa.array(
                [loan_repo.BASE_TIME + timedelta(seconds=i) for i in range(rows)], UTC_US
            ),
            "blob": [f"{i:08d}" * 128 for i in range(rows)],
        }
    )


def test_streamed_materialization_holds_a_batch_not_the_table(redis_server, redis_db, tmp_path):
    """Arrow's peak allocation while materializing (in a fresh interpreter) grows with the
    rows' keys and times (the first pass: the keys, their sorted copy, the grouping; up to
    ~4x their bytes seen), not with the table: tripling 1 KB rows adds a few MB where the
    table grows by 32 MB. (Feast's local engine peaks above the table's size.)"""
    import subprocess
    import sys
    from pathlib import Path

    peaks, sizes, keys_and_times = [], [], []
    for rows in (15_000, 45_000):
        redis_db.flushall()
        wide = wide_table(rows)
        sizes.append(wide.nbytes)
        keys_and_times.append(wide.select(["dob_ssn", "event_timestamp"]).nbytes)
        path = tmp_path / str(rows)
        path.mkdir()
        pq.write_table(wide, path / "wide.parquet", row_group_size=1000)
        del wide
        result = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(path), redis_server.address],
            cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        before, peak = map(int, result.stdout.split()[-2:])
        assert before < 1_000_000
        assert redis_db.dbsize() == rows // 2
        peaks.append(peak)
    assert sizes[1] > 45_000_000
    assert peaks[1] < sizes[1] / 4, (peaks, sizes)
    assert peaks[1] - peaks[0] < 6 * (keys_and_times[1] - keys_and_times[0]), (peaks, sizes)


def push_view(data_dir) -> FeatureView:
    return FeatureView(
        name="pushed_view",
        entities=[loan_repo.entities()[1]],
        ttl=timedelta(days=1),
        schema=[
            Field(name="p_count", dtype=Int64),
            Field(name="p_ratio", dtype=Float64),
            Field(name="p_label", dtype=String),
            Field(name="p_flag", dtype=Bool),
            Field(name="p_history", dtype=Array(Int64)),
        ],
        source=PushSource(
            name="arrow_push",
            batch_source=FileSource(
                path=str(data_dir / "pushed.parquet"), timestamp_field="event_timestamp"
            ),
        ),
    )


def pushed_frame(rows: int) -> pd.DataFrame:
    """Three rows per applicant at shuffled times (dedup decides), no nulls."""
    return pd.DataFrame(
        {
            "dob_ssn": [f"applicant-{i % (rows // 3)}" for i in range(rows)],
            "event_timestamp": [
                loan_repo.BASE_TIME + timedelta(minutes=(i * 7) % 13, microseconds=i)
                for i in range(rows)
            ],
            "p_count": [i * 1_000_003 for i in range(rows)],
            "p_ratio": [i / 7 for i in range(rows)],
            "p_label": [f"label-{i}é" for i in range(rows)],
            "p_flag": [i % 2 == 0 for i in range(rows)],
            "p_history": [[i, i + 1, -i] for i in range(rows)],
        }
    )


def test_redis_provider_pushes_from_arrow_like_stock(redis_server, redis_db, tmp_path, caplog):
    """`push`, `push_async` and `write_to_online_store` through
    `feast_redis_rs.RedisProvider` store the bytes stock Feast's provider stores; a typed
    frame goes straight from Arrow."""
    caplog.set_level(logging.INFO, logger="feast_redis_rs.online_store")
    loans = {view.name: loan_repo.frame(view) for view in loan_repo.views(tmp_path)}
    dumps = {}
    for name, online, repo in (
        ("stock", StockConfig(connection_string=redis_server.address), {}),
        (
            "ours",
            RedisOnlineStoreConfig(connection_string=redis_server.address, write_batch_size=8),
            {"provider": "feast_redis_rs.RedisProvider"},
        ),
    ):
        redis_db.flushall()
        store = loan_repo.feature_store(tmp_path / name, online, **repo)
        store.apply([push_view(tmp_path / name)])
        caplog.clear()
        store.push("arrow_push", pushed_frame(30))
        store.write_to_online_store("credit_history", loans["credit_history"])
        later = pushed_frame(12)
        later["event_timestamp"] += timedelta(hours=1)
        later["p_label"] = "later"
        if _feast.FEAST >= (0, 63):
            asyncio.run(store.push_async("arrow_push", later))
        else:  # stock's Redis store writes asynchronously from Feast 0.63
            store.push("arrow_push", later)
        dumps[name] = dump(redis_db)
        fallbacks = {r.args[0] for r in caplog.records if r.msg.startswith("write_arrow:")}
    assert isinstance(store._get_provider(), RedisProvider)
    # The loan frame holds ints with nulls (float64 in pandas): Feast's conversion.
    assert fallbacks == {"credit_history"}
    assert len(dumps["ours"]) == 10 + len(loan_repo.APPLICANTS)
    assert dumps["ours"] == dumps["stock"]
    # push_async's later rows replaced the 4 applicants it covered.
    later_values = [v for h in dumps["ours"].values() for v in h.values() if b"later" in v]
    assert len(later_values) == 4


def test_writes_of_several_pipelines_count_and_store_every_row(redis_server, redis_db, tmp_path):
    """Over 2,048 rows a write goes out in several pipelines: side by side when no key
    repeats, in order when one does; after a SCRIPT FLUSH the first pipeline loads the
    newest-wins script. Either way every row is counted once, as a run of writes of one
    pipeline each counts it, and the hashes are the bytes stock Feast writes."""
    stock, ours = stores(redis_server, tmp_path)
    view = ours.get_feature_view("arrow_view")
    join_keys = {c.name: c.dtype.to_value_type() for c in view.entity_columns}
    client = ours._get_provider().online_store._get_client(ours.config.online_store)
    plan = native_plan(ours, view)
    repeated = typed_table(6_000)  # 3,001 applicants, most twice
    distinct = repeated.set_column(
        0, "dob_ssn", pa.array([f"unique-{i}" for i in range(repeated.num_rows)])
    )
    stock_config = stock.config.model_copy(
        update={"online_store": StockConfig(connection_string=redis_server.address)}
    )
    for table, written_once in ((distinct, 6_000), (repeated, None)):
        redis_db.flushall()
        rows = utils._convert_arrow_to_proto(table, view, join_keys)
        StockStore().online_write_batch(stock_config, view, rows, None)
        expected = dump(redis_db)

        redis_db.flushall()
        redis_db.script_flush()
        batch = table.combine_chunks().to_batches()[0]
        written, skipped = client.write_arrow(plan, batch)
        assert dump(redis_db) == expected
        redis_db.flushall()
        in_pieces = [client.write_arrow(plan, piece) for piece in table.to_batches(2_000)]
        if _feast.IN_BATCH_ORDERING:
            assert (written, skipped) == tuple(map(sum, zip(*in_pieces, strict=True)))
        else:
            # Before Feast 0.66 a row is checked against what was stored before its
            # batch only: every row of the whole batch is written, while the pieces
            # after the first meet the rows the earlier ones stored.
            assert written == table.num_rows
        if written_once:
            assert (written, skipped) == (written_once, 0)
            assert client.write_arrow(plan, batch) == (0, written_once)

"""The Arrow-backed ``ArrowOnlineResponse`` against stock Feast's ``OnlineResponse``:
``to_dict`` (with event timestamps), ``to_df``, ``to_arrow`` and ``.proto`` equal, for
every dtype, nulls, repeated and unknown entities; requests the columnar path does not
take (numpy entity values, stored values of another type) still answer like stock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from feast.protos.feast.types.Value_pb2 import Value

from feast_redis_rs import encoding
from feast_redis_rs.response import ArrowOnlineResponse

from . import loan_repo


@pytest.fixture
def stores(redis_server, redis_db, tmp_path):
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig as StockConfig

    from feast_redis_rs import RedisOnlineStoreConfig

    stock = loan_repo.feature_store(
        tmp_path / "stock", StockConfig(connection_string=redis_server.address)
    )
    ours = loan_repo.feature_store(
        tmp_path / "ours", RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    for view in loan_repo.views(tmp_path):
        ours.write_to_online_store(view.name, loan_repo.frame(view))
    return stock, ours


def both(stores, **request):
    stock, ours = stores
    return stock.get_online_features(**request), ours.get_online_features(**request)


@pytest.mark.parametrize("full_feature_names", [False, True])
def test_every_output_equals_stock(stores, full_feature_names):
    refs = loan_repo.feature_refs()
    if not full_feature_names:
        refs = [r for r in refs if r.startswith("credit_history:")]
    expected, got = both(
        stores,
        features=refs,
        entity_rows=loan_repo.entity_rows(),
        full_feature_names=full_feature_names,
    )
    assert isinstance(got, ArrowOnlineResponse)
    for timestamps in (False, True):
        assert got.to_dict(timestamps) == expected.to_dict(timestamps)
        pd.testing.assert_frame_equal(got.to_df(timestamps), expected.to_df(timestamps))
        assert got.to_arrow(timestamps).equals(expected.to_arrow(timestamps))
    assert got.proto == expected.proto
    as_dict = got.to_dict()
    assert list(as_dict) == list(expected.to_dict())
    for name, values in as_dict.items():
        reference = expected.to_dict()[name]
        assert [type(v) for v in values] == [type(v) for v in reference], name


def test_a_store_that_never_spins_reads_the_same(stores, redis_server, tmp_path):
    from feast_redis_rs import RedisOnlineStoreConfig

    stock, _ = stores
    sleeping = loan_repo.feature_store(
        tmp_path / "sleeping",
        RedisOnlineStoreConfig(connection_string=redis_server.address, spin_wait=False),
    )
    request = {"features": loan_repo.feature_refs(), "entity_rows": loan_repo.entity_rows()}
    got = sleeping.get_online_features(**request)
    assert isinstance(got, ArrowOnlineResponse)
    assert got.to_dict(True) == stock.get_online_features(**request).to_dict(True)


def test_column_mapping_and_feature_service(stores):
    stock, ours = stores
    service = ours.get_feature_service("all")
    expected = stock.get_online_features(
        features=stock.get_feature_service("all"), entity_rows=loan_repo.entity_rows()
    )
    got = ours.get_online_features(
        features=service,
        entity_rows={
            "zipcode": [r["zipcode"] for r in loan_repo.entity_rows()],
            "dob_ssn": [r["dob_ssn"] for r in loan_repo.entity_rows()],
        },
    )
    assert isinstance(got, ArrowOnlineResponse)
    assert got.to_dict(True) == expected.to_dict(True)
    assert got.proto == expected.proto


def test_requests_off_the_columnar_path_still_answer_like_stock(stores, redis_db):
    refs = [r for r in loan_repo.feature_refs() if r.startswith("zipcode_features:")]
    rows = [{"zipcode": np.int64(z)} for z in loan_repo.ZIPCODES[:4]]
    expected, got = both(stores, features=refs, entity_rows=rows)
    assert not isinstance(got, ArrowOnlineResponse)
    assert got.to_dict(True) == expected.to_dict(True)

    # A value stored with another type than the view declares (int32 for an int64).
    key = encoding.redis_key(loan_repo.PROJECT, _zipcode_key(loan_repo.ZIPCODES[0]))
    redis_db.hset(
        key, encoding.mmh3_field("zipcode_features:z_i64"), Value(int32_val=5).SerializeToString()
    )
    rows = [{"zipcode": z} for z in loan_repo.ZIPCODES[:4]]
    expected, got = both(stores, features=refs, entity_rows=rows)
    assert not isinstance(got, ArrowOnlineResponse)
    assert got.to_dict(True) == expected.to_dict(True)
    assert got.to_dict()["z_i64"][0] == 5


def _zipcode_key(zipcode: int):
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

    return EntityKey(join_keys=["zipcode"], entity_values=[Value(int64_val=zipcode)])


def test_empty_and_mismatched_requests_behave_like_stock(stores):
    stock, ours = stores
    refs = ["credit_history:c_i64"]
    for bad_rows in ({"dob_ssn": ["a", "b"], "zipcode": [1]}, [{"dob_ssn": "a"}, {"zipcode": 1}]):
        with pytest.raises(Exception) as expected:
            stock.get_online_features(features=refs, entity_rows=bad_rows)
        with pytest.raises(type(expected.value)):
            ours.get_online_features(features=refs, entity_rows=bad_rows)


def test_threads_read_in_parallel_and_agree(stores):
    from concurrent.futures import ThreadPoolExecutor

    _, ours = stores
    refs = loan_repo.feature_refs()
    expected = ours.get_online_features(
        features=refs, entity_rows=loan_repo.entity_rows()
    ).to_dict()

    def read(_):
        return ours.get_online_features(
            features=refs, entity_rows=loan_repo.entity_rows()
        ).to_dict()

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(read, range(40)))
    assert all(answer == expected for answer in answers)


def test_record_batch_keeps_declared_types(stores):
    import pyarrow as pa

    _, ours = stores
    refs = [r for r in loan_repo.feature_refs() if r.startswith("zipcode_features:")]
    got = ours.get_online_features(
        features=refs, entity_rows=[{"zipcode": z} for z in loan_repo.ZIPCODES]
    )
    batch = got.to_record_batch()
    assert batch.schema.names == list(got.to_dict())[1:]  # Feast's order, after zipcode
    assert batch.column("z_i32").type == pa.int32()
    assert batch.column("z_f32").type == pa.float32()
    assert batch.column("z_when").type == pa.timestamp("s", tz="+00:00")
    assert batch.column("z_text_list").type == pa.list_(pa.string())
    as_dict = got.to_dict()
    for name in batch.schema.names:
        assert batch.column(name).to_pylist() == as_dict[name], name
    without_nulls = batch.column("z_i64").drop_null()
    assert without_nulls.to_numpy(zero_copy_only=True).tolist() == without_nulls.to_pylist()


def test_join_keys_renamed_by_projections_read_like_stock(stores, tmp_path):
    """One view read twice under other join-key names (``with_join_key_map``); the same
    request shape again (its cached route) and with a column order and extra column
    of its own answer like stock too."""
    from feast import FeatureService

    zipcode_view = next(v for v in loan_repo.views(tmp_path) if v.name == "zipcode_features")
    service = FeatureService(
        name="home_and_work",
        features=[
            zipcode_view.with_name("home").with_join_key_map({"zipcode": "home_zip"}),
            zipcode_view.with_name("work").with_join_key_map({"zipcode": "work_zip"}),
        ],
    )
    for store in stores:
        store.apply([service])
    zips = loan_repo.ZIPCODES
    requests = [
        {"home_zip": zips[:3], "work_zip": [zips[4], 1, zips[4]]},
        {"home_zip": zips[2:5], "work_zip": zips[:3]},
        {"work_zip": zips[:2], "home_zip": [zips[3], zips[3]]},
        {"work_zip": zips[:2], "home_zip": zips[1:3], "zipcode": [zips[0], zips[1]]},
    ]
    for rows in requests:
        expected, got = both(stores, features=service, entity_rows=rows, full_feature_names=True)
        assert isinstance(got, ArrowOnlineResponse)
        assert got.to_dict(True) == expected.to_dict(True)
        assert got.proto == expected.proto
    stock, _ = stores
    home = stock.get_online_features(
        features=stock.get_feature_service("home_and_work"),
        entity_rows={"home_zip": [zips[0]], "work_zip": [zips[1]]},
        full_feature_names=True,
    ).to_dict()
    assert home["home__z_i64"] != home["work__z_i64"], "the two reads must differ"


def test_feature_metrics_are_recorded_like_stock(stores, monkeypatch):
    """With Feast's metrics on (``feast serve --metrics``), a read records the same
    feature-status counts and one store-read duration, as stock Feast's does; on the
    Arrow path and on Feast's proto path."""
    from feast import metrics

    monkeypatch.setattr(metrics, "_config", metrics.build_metrics_flags())

    def counters() -> tuple[dict, float]:
        statuses = {
            (sample.labels["feature_view"], sample.labels["status"]): sample.value
            for family in metrics.online_features_status_total.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        }
        reads = sum(
            sample.value
            for family in metrics.online_store_read_duration_seconds.collect()
            for sample in family.samples
            if sample.name.endswith("_count")
        )
        return statuses, reads

    def recorded(store, **request):
        statuses, reads = counters()
        response = store.get_online_features(**request)
        after, after_reads = counters()
        changed = {k: v - statuses.get(k, 0) for k, v in after.items() if v != statuses.get(k, 0)}
        return response, changed, after_reads - reads

    zipcode_refs = [r for r in loan_repo.feature_refs() if r.startswith("zipcode_features:")]
    requests = [
        {"features": loan_repo.feature_refs(), "entity_rows": loan_repo.entity_rows()},
        {
            "features": zipcode_refs,
            "entity_rows": [{"zipcode": np.int64(z)} for z in loan_repo.ZIPCODES[:3]],
        },
    ]
    stock, ours = stores
    for request, arrow_path in zip(requests, (True, False), strict=True):
        _, expected, expected_reads = recorded(stock, **request)
        response, got, got_reads = recorded(ours, **request)
        assert isinstance(response, ArrowOnlineResponse) == arrow_path
        assert expected, "stock must record statuses for the test to mean anything"
        assert got == expected
        assert got_reads == expected_reads == 1

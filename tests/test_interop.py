"""Stock Feast's Redis store and ours on the same Redis, on every deployment: what one
writes the other reads, the raw hashes are identical, and so are the answers of
``get_online_features`` (the response proto and ``to_dict()``)."""

from __future__ import annotations

import pytest
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from . import loan_repo


def write_all(store) -> None:
    for view in loan_repo.views(store.repo_path or loan_repo.Path(".")):
        store.write_to_online_store(view.name, loan_repo.frame(view))


def answers(store):
    full = store.get_online_features(
        features=loan_repo.feature_refs(), entity_rows=loan_repo.entity_rows(),
        full_feature_names=True,
    )  # fmt: skip
    short = store.get_online_features(
        features=[r for r in loan_repo.feature_refs() if r.startswith("credit_history:")],
        entity_rows=[{"dob_ssn": row["dob_ssn"]} for row in loan_repo.entity_rows()],
    )
    return full.proto, full.to_dict(), short.proto, short.to_dict()


def check_interop(deployment, tmp_path, version: int) -> None:
    stock = loan_repo.feature_store(tmp_path / "stock", deployment.stock(), version)
    ours = loan_repo.feature_store(tmp_path / "ours", deployment.ours(), version)

    deployment.flush()
    write_all(stock)
    written_by_stock = deployment.dump()
    assert len(written_by_stock) == 90
    expected = answers(stock)
    assert answers(ours) == expected

    deployment.flush()
    write_all(ours)
    assert deployment.dump() == written_by_stock
    assert answers(ours) == expected
    assert answers(stock) == expected


def test_stock_and_ours_write_and_read_the_same(deployment, tmp_path):
    check_interop(deployment, tmp_path, version=3)


@pytest.mark.parametrize("name", ["standalone", "cluster"])
def test_serialization_version_2_interop(started_deployments, tmp_path, name):
    deployment = started_deployments(name)
    check_interop(deployment, tmp_path, version=2)


def test_online_read_matches_stock(deployment, tmp_path):
    stock = loan_repo.feature_store(tmp_path / "stock", deployment.stock())
    ours = loan_repo.feature_store(tmp_path / "ours", deployment.ours())
    write_all(stock)
    config_stock, config_ours = stock.config, ours.config

    keys = [
        EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=a)])
        for a in [*loan_repo.APPLICANTS[:5], "nobody"]
    ]
    view = stock.get_feature_view("credit_history")
    for requested in (None, ["c_i64", "c_text_list", "c_when"]):
        # Copies: stock Feast appends its `_ts:` field to the list it is given.
        expected = stock._get_provider().online_read(
            config_stock, view, keys, requested and list(requested)
        )
        got = ours._get_provider().online_read(
            config_ours, view, keys, requested and list(requested)
        )
        assert got == expected

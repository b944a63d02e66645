"""A Feast repo shaped like the loan demo, with every feature dtype Feast stores in
Redis, for running stock Feast's store and ours side by side."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from feast import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    OnDemandFeatureView,
    RepoConfig,
    RequestSource,
)
from feast.types import (
    Array,
    Bool,
    Bytes,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)
from feast.value_type import ValueType

PROJECT = "loans"
BASE_TIME = datetime(2021, 8, 25, 12, 0, 0, 123456, tzinfo=timezone.utc)

SCALARS = {
    "i32": Int32,
    "i64": Int64,
    "f32": Float32,
    "f64": Float64,
    "text": String,
    "raw": Bytes,
    "flag": Bool,
    "when": UnixTimestamp,
}
DTYPES = {**SCALARS, **{f"{name}_list": Array(dtype) for name, dtype in SCALARS.items()}}

ZIPCODES = list(range(76100, 76130))
APPLICANTS = [f"1963062{i % 10}_{4270 + i}" for i in range(30)]


def entities() -> list[Entity]:
    return [
        Entity(name="zipcode", join_keys=["zipcode"], value_type=ValueType.INT64),
        Entity(name="dob_ssn", join_keys=["dob_ssn"], value_type=ValueType.STRING),
    ]


def views(data_dir: Path) -> list[FeatureView]:
    zipcode, dob_ssn = entities()

    def view(name: str, view_entities: list[Entity], prefix: str) -> FeatureView:
        return FeatureView(
            name=name,
            entities=view_entities,
            ttl=timedelta(days=3650),
            schema=[Field(name=f"{prefix}_{n}", dtype=d) for n, d in DTYPES.items()],
            source=FileSource(
                path=str(data_dir / f"{name}.parquet"), timestamp_field="event_timestamp"
            ),
        )

    return [
        view("zipcode_features", [zipcode], "z"),
        view("credit_history", [dob_ssn], "c"),
        view("loan_features", [zipcode, dob_ssn], "l"),
    ]


def _value(name: str, row: int, prefix: str):
    """A value of feature `name` for data row `row`; None for some rows (nulls)."""
    if (row + len(name)) % 7 == 0:
        return None
    scalar = name.removesuffix("_list")
    base = {
        "i32": row * 3 - 40,
        "i64": row * 1_000_003 - 2**40,
        "f32": np.float32(row / 3),
        "f64": row * 12345.678,
        "text": f"{prefix}-Fört Wörth {row}",
        "raw": bytes([row % 256, 0, 255]),
        "flag": row % 2 == 0,
        "when": BASE_TIME - timedelta(days=row, microseconds=row),
    }[scalar]
    if name.endswith("_list"):
        return [base, base] if row % 3 else []
    return base


def frame(view: FeatureView, rows_per_entity: int = 3) -> pd.DataFrame:
    """Several rows per entity with shuffled event times: the latest must win."""
    prefix = view.features[0].name.split("_")[0]
    records = []
    keys = (
        [{"zipcode": z} for z in ZIPCODES]
        if view.name == "zipcode_features"
        else [{"dob_ssn": a} for a in APPLICANTS]
        if view.name == "credit_history"
        else [{"zipcode": z, "dob_ssn": a} for z, a in zip(ZIPCODES, APPLICANTS, strict=False)]
    )
    row = 0
    for entity_index, key in enumerate(keys):
        for version in (1, 0, 2)[:rows_per_entity]:
            record = dict(key)
            record["event_timestamp"] = BASE_TIME + timedelta(
                hours=entity_index, minutes=version, microseconds=version
            )
            for feature in view.features:
                record[feature.name] = _value(feature.name.split("_", 1)[1], row, prefix)
            records.append(record)
            row += 1
    return pd.DataFrame.from_records(records)


def repo_config(online_store) -> RepoConfig:
    """The loan project's config around `online_store`, for calls of the online store
    alone (its registry is never read)."""
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry="unused.db",
        online_store=online_store,
        entity_key_serialization_version=3,
    )


def feature_store(path: Path, online_store, version: int = 3, **repo) -> FeatureStore:
    """A FeatureStore with its own registry under `path`, the loan views applied."""
    path.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project=PROJECT,
        provider=repo.pop("provider", "local"),
        registry=str(path / "registry.db"),
        online_store=online_store,
        offline_store={"type": "file"},
        entity_key_serialization_version=version,
        **repo,
    )
    store = FeatureStore(config=config)
    loan_views = views(path)
    store.apply([*entities(), *loan_views, FeatureService(name="all", features=loan_views)])
    return store


def feature_refs(full: bool = True) -> list[str]:
    refs = []
    for name, prefix in (
        ("zipcode_features", "z"),
        ("credit_history", "c"),
        ("loan_features", "l"),
    ):
        refs += [f"{name}:{prefix}_{n}" for n in DTYPES]
    return refs


def entity_rows() -> list[dict]:
    """Known entities, repeated ones, and ones never written."""
    rows = [{"zipcode": z, "dob_ssn": a} for z, a in zip(ZIPCODES, APPLICANTS, strict=False)]
    rows += [{"zipcode": ZIPCODES[3], "dob_ssn": APPLICANTS[3]}] * 2
    rows += [{"zipcode": 1, "dob_ssn": "nobody"}, {"zipcode": ZIPCODES[5], "dob_ssn": "nobody"}]
    return rows


def on_demand_view(data_dir: Path, name: str, request_field: str, output: str, udf) -> list:
    """A request source of one Float64 field and an on-demand view of the zipcode view and
    it, whose one Float64 feature `output` is `udf`'s (pickled by reference: the servers
    import its module)."""
    request = RequestSource(
        name=f"{request_field}_source", schema=[Field(name=request_field, dtype=Float64)]
    )
    view = OnDemandFeatureView(
        name=name,
        sources=[views(data_dir)[0], request],
        schema=[Field(name=output, dtype=Float64)],
        udf=udf,
        udf_string=udf.__name__,
    )
    return [request, view]

"""A one-view Feast repo (drivers' rating, trips and city, two drivers written) for the
tests that run Feast outside this process: the wheel's and the container image's."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

FEATURES = textwrap.dedent(
    """
    from datetime import timedelta

    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Float64, Int64, String

    driver = Entity(name="driver", join_keys=["driver_id"])
    stats = FeatureView(
        name="driver_stats",
        entities=[driver],
        ttl=timedelta(days=3650),
        schema=[
            Field(name="rating", dtype=Float64),
            Field(name="trips", dtype=Int64),
            Field(name="city", dtype=String),
        ],
        source=FileSource(path="stats.parquet", timestamp_field="event_timestamp"),
    )
    """
)
# `feast` arguments that write every row of stats.parquet to the online store.
MATERIALIZE = ["materialize", "2023-12-01T00:00:00", "2024-02-01T00:00:00"]


def write(repo: Path, feature_store_yaml: str) -> None:
    """The repo in `repo` (made here): features.py, its data and `feature_store_yaml`."""
    repo.mkdir()
    (repo / "features.py").write_text(FEATURES)
    (repo / "feature_store.yaml").write_text(feature_store_yaml)
    pd.DataFrame(
        {
            "driver_id": [1, 2],
            "rating": [4.5, 3.25],
            "trips": [10, 20],
            "city": ["Austin", "Fort Worth"],
            "event_timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
        }
    ).to_parquet(repo / "stats.parquet")

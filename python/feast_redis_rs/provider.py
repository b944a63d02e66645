"""``feast_redis_rs.RedisProvider``: Feast's local provider whose
``write_to_online_store`` and ``push`` write the DataFrame to Redis from Arrow in Rust
(``RedisOnlineStore.write_arrow``) instead of converting every value to a proto in
Python. Feast hands a pushed DataFrame to the provider, not to the online store, so this
is where the Arrow path can take it.

In ``feature_store.yaml``::

    provider: feast_redis_rs.RedisProvider
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pyarrow as pa
from feast.feature_view import FeatureView
from feast.infra.passthrough_provider import PassthroughProvider
from feast.on_demand_feature_view import OnDemandFeatureView

from feast_redis_rs import _feast
from feast_redis_rs.online_store import RedisOnlineStore


class RedisProvider(PassthroughProvider):
    """Feast's local (passthrough) provider, with Arrow ingestion into
    ``feast_redis_rs.RedisOnlineStore``. Everything else is Feast's provider."""

    def ingest_df(self, feature_view, df: pd.DataFrame, field_mapping: dict | None = None):
        """Writes a DataFrame of feature rows to the online store (``write_to_online_store``,
        ``push``): from Arrow in Rust when the store is ``RedisOnlineStore`` and the view
        a feature view; on-demand views and other stores take Feast's conversion."""
        table = self._arrow_rows(feature_view, df)
        if table is None:
            return super().ingest_df(feature_view, df, field_mapping)
        self.online_store.write_arrow(self.repo_config, feature_view, table)

    async def ingest_df_async(
        self, feature_view, df: pd.DataFrame, field_mapping: dict | None = None
    ):
        """``ingest_df`` without blocking the event loop."""
        table = self._arrow_rows(feature_view, df)
        if table is None:
            return await super().ingest_df_async(feature_view, df, field_mapping)
        await asyncio.to_thread(
            self.online_store.write_arrow, self.repo_config, feature_view, table
        )

    def _arrow_rows(self, feature_view, df: pd.DataFrame) -> pa.Table | None:
        """The rows as Feast's ingestion sees them (the batch source's field mapping
        applied), or None when Feast's own ingestion is needed."""
        if (
            isinstance(feature_view, OnDemandFeatureView)
            or not isinstance(feature_view, FeatureView)
            or not isinstance(self.online_store, RedisOnlineStore)
        ):
            return None
        table = pa.Table.from_pandas(df)
        source = feature_view.batch_source
        if source is None or source.field_mapping is not None:
            table = _feast.apply_field_mapping(table, (source and source.field_mapping) or {})
        return table

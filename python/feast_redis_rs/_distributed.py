"""What a worker of a distributed engine (Ray, Spark) does with its share of a view's rows:
write them to Redis from Arrow with ``RedisOnlineStore.write_arrow``, and to the offline
store when the view is offline.

The driver packs the repo config, the store and the view once per job; a worker unpacks
them once per process and keeps them (the store's connection included) for every later
block of that job.
"""

from __future__ import annotations

import functools
import pickle
from typing import TYPE_CHECKING

import pyarrow as pa

from feast_redis_rs import _feast

if TYPE_CHECKING:
    from feast import FeatureView, RepoConfig

    from feast_redis_rs.online_store import RedisOnlineStore


def pack(repo_config: RepoConfig, online_store: RedisOnlineStore, view: FeatureView) -> bytes:
    """What every worker of a job needs to write ``view``'s rows (a store pickles without
    its connection)."""
    return pickle.dumps((repo_config, online_store, view.to_proto().SerializeToString()))


@functools.lru_cache(maxsize=4)
def _unpack(artifacts: bytes) -> tuple[RepoConfig, RedisOnlineStore, FeatureView]:
    repo_config, online_store, view_proto = pickle.loads(artifacts)
    return repo_config, online_store, _feast.feature_view_from_proto(view_proto)


def write_rows(artifacts: bytes, rows: pa.Table, *, offline: bool = True) -> None:
    """``rows`` written online (when the view is online) and, with ``offline``, through the
    offline store's ``offline_write_batch`` (when the view is offline)."""
    if not rows.num_rows:
        return
    repo_config, online_store, view = _unpack(artifacts)
    if view.online:
        online_store.write_arrow(repo_config, view, rows)
    if offline and view.offline:
        _feast.offline_store_of(repo_config).offline_write_batch(
            config=repo_config, feature_view=view, table=rows, progress=lambda _: None
        )

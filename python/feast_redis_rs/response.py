"""``ArrowOnlineResponse``: Feast's ``OnlineResponse`` with its feature columns held as
Arrow arrays decoded in Rust, so ``to_dict`` / ``to_df`` / ``to_arrow`` build their
results in bulk (the Python values are made in Rust, column by column), and
``to_record_batch`` hands the typed columns to pyarrow without a copy. ``.proto`` is
built on first access and equals stock Feast's."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from feast.online_response import TIMESTAMP_POSTFIX, OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from feast_redis_rs import _feast, _native


class ArrowOnlineResponse(OnlineResponse):
    """The answer of ``get_online_features`` through ``feast_redis_rs.RedisOnlineStore``.

    Values, Python types, column order, nulls and timestamps are those of stock Feast's
    ``OnlineResponse``; only the way there differs."""

    def __init__(
        self,
        entity_columns: dict[str, list[Any]],
        entity_types: dict[str, ValueType],
        feature_names: list[str],
        seconds_columns: list[int],
        answer: _native.ColumnarAnswer,
        feature_view_metadata: list[tuple[str, int]],
        feature_types: dict[str, ValueType],
    ):
        """Not called by users: ``get_online_features`` builds it.

        Args:
            entity_columns: The request's join-key columns, as given.
            entity_types: The ValueType of each join key (for ``.proto``).
            feature_names: The response's feature columns, in Feast's order.
            seconds_columns: For each feature, the column of ``answer`` with its view's
                event seconds.
            answer: The feature columns (by position), then each view's event seconds,
                and the serialized feature vectors of ``.proto``.
            feature_view_metadata: ``(name, version)`` entries of the response metadata.
            feature_types: Feature name to ValueType, as stock Feast passes it.
        """
        self._entity_columns = entity_columns
        self._entity_types = entity_types
        self._feature_names = feature_names
        self._seconds_columns = seconds_columns
        self._answer = answer
        self._feature_view_metadata = feature_view_metadata
        self._feature_types = feature_types
        self._proto: GetOnlineFeaturesResponse | None = None

    @property
    def proto(self) -> GetOnlineFeaturesResponse:
        """The response proto, as stock Feast builds it (built on first access)."""
        if self._proto is None:
            response = GetOnlineFeaturesResponse(results=[])
            _feast.populate_result_rows(
                response,
                {
                    name: python_values_to_proto_values(
                        values, self._entity_types.get(name, ValueType.UNKNOWN)
                    )
                    for name, values in self._entity_columns.items()
                },
            )
            response.metadata.feature_names.val.extend(self._feature_names)
            for name, version in self._feature_view_metadata:
                entry = response.metadata.feature_view_metadata.add()
                entry.name = name
                entry.version = version
            response.MergeFromString(self._answer.feature_vectors())
            self._proto = response
        return self._proto

    @proto.setter
    def proto(self, value: GetOnlineFeaturesResponse) -> None:
        self._proto = value

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
        """Converts the response into a dictionary of columns.

        Args:
            include_event_timestamps: Also give each column's event timestamps (seconds).
        """
        response: dict[str, list[Any]] = {}
        rows = self._answer.num_rows
        for name, values in self._entity_columns.items():
            response[name] = list(values)
            if include_event_timestamps:
                response[name + TIMESTAMP_POSTFIX] = [0] * rows
        columns = self._answer.columns(include_event_timestamps)
        for index, name in enumerate(self._feature_names):
            response[name] = columns[index]
            if include_event_timestamps:
                response[name + TIMESTAMP_POSTFIX] = list(columns[self._seconds_columns[index]])
        return response

    def to_record_batch(self) -> pa.RecordBatch:
        """The feature columns with their declared Arrow types (int32 stays int32,
        timestamps are UTC seconds), shared with Rust without copying; numeric columns
        convert to numpy without a copy where they hold no nulls. Unlike ``to_arrow``
        (which mirrors stock Feast's inferred types), no Python objects are made."""
        batch = self._answer.record_batch()
        columns = [batch.column(i) for i in range(len(self._feature_names))]
        return pa.RecordBatch.from_arrays(columns, names=self._feature_names)

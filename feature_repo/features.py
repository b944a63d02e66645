"""The loan demo's feature definitions: the applicant's credit history and the
features of the zipcode they live in, both read from parquet files by default.

On AWS (``infra/deploy.sh``), ``FEAST_OFFLINE_STORE=redshift`` reads the same tables through
Redshift Spectrum instead: the stack's Glue tables, under the external schema
``FEAST_SPECTRUM_SCHEMA`` (``feast_spectrum`` unless set) that deploy.sh creates."""

import os
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, RedshiftSource
from feast.types import Int64, String
from feast.value_type import ValueType

zipcode = Entity(name="zipcode", join_keys=["zipcode"], value_type=ValueType.INT64)
dob_ssn = Entity(
    name="dob_ssn",
    join_keys=["dob_ssn"],
    value_type=ValueType.STRING,
    description="Date of birth and last four digits of the social security number",
)


def offline_source(name: str, table: str, path: str) -> FileSource | RedshiftSource:
    timestamps = {
        "timestamp_field": "event_timestamp",
        "created_timestamp_column": "created_timestamp",
    }
    if os.environ.get("FEAST_OFFLINE_STORE") == "redshift":
        schema = os.environ.get("FEAST_SPECTRUM_SCHEMA", "feast_spectrum")
        return RedshiftSource(name=name, schema=schema, table=table, **timestamps)
    return FileSource(name=name, path=path, **timestamps)


zipcode_source = offline_source(
    "zipcode_table", "zipcode_features", "../data/zipcode_table.parquet"
)

zipcode_features = FeatureView(
    name="zipcode_features",
    entities=[zipcode],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="city", dtype=String),
        Field(name="state", dtype=String),
        Field(name="location_type", dtype=String),
        Field(name="tax_returns_filed", dtype=Int64),
        Field(name="population", dtype=Int64),
        Field(name="total_wages", dtype=Int64),
    ],
    source=zipcode_source,
)

credit_history_source = offline_source(
    "credit_history", "credit_history", "../data/credit_history.parquet"
)

credit_history = FeatureView(
    name="credit_history",
    entities=[dob_ssn],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="credit_card_due", dtype=Int64),
        Field(name="mortgage_due", dtype=Int64),
        Field(name="student_loan_due", dtype=Int64),
        Field(name="vehicle_loan_due", dtype=Int64),
        Field(name="hard_pulls", dtype=Int64),
        Field(name="missed_payments_2y", dtype=Int64),
        Field(name="missed_payments_1y", dtype=Int64),
        Field(name="missed_payments_6m", dtype=Int64),
        Field(name="bankruptcies", dtype=Int64),
    ],
    source=credit_history_source,
)

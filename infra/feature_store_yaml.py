#!/usr/bin/env python3
"""Write Feast's ``feature_store.yaml`` for the stack of ``infra/template.yaml`` from the
stack's outputs (``aws cloudformation describe-stacks --query 'Stacks[0].Outputs'``, read
as JSON on standard input). ``infra/deploy.sh`` and the deployment test both run it.

The file holds no secret: the Redis password is read from the environment variable
FEAST_REDIS_PASSWORD, which Feast expands when it loads the file."""

from __future__ import annotations

import argparse
import json
import sys

REQUIRED_OUTPUTS = (
    "RedisConnectionString",
    "RedisUsername",
    "RedisSecretArn",
    "FeastS3BucketUri",
    "RedshiftClusterIdentifier",
    "RedshiftSpectrumArn",
    "RedshiftDatabaseName",
    "RedshiftAdminUser",
)
PASSWORD_VARIABLE = "FEAST_REDIS_PASSWORD"
# Ten years, as the guidance configured: Redis drops an entity's hash that long after its
# last write (Feast's views already ignore values older than their own ttl).
KEY_TTL_SECONDS = 315_360_000


class MissingOutputError(ValueError):
    pass


def outputs_by_key(document: object) -> dict[str, str]:
    """The stack's outputs from the JSON of ``describe-stacks`` (whole, or its
    ``Stacks[0].Outputs`` list)."""
    if isinstance(document, dict) and "Stacks" in document:
        document = document["Stacks"][0].get("Outputs", [])
    if not isinstance(document, list):
        raise ValueError("expected the stack's Outputs: a JSON list of {OutputKey, OutputValue}")
    return {item["OutputKey"]: item["OutputValue"] for item in document}


def _quoted(value: str) -> str:
    # JSON strings are YAML strings: no value can break the document.
    return json.dumps(value)


def feature_store_yaml(outputs: dict[str, str], region: str, stack: str, project: str) -> str:
    missing = [key for key in REQUIRED_OUTPUTS if not outputs.get(key)]
    if missing:
        raise MissingOutputError(
            f"stack {stack} lacks the output(s) {', '.join(missing)}: is it a stack of "
            "infra/template.yaml, and is it CREATE_COMPLETE or UPDATE_COMPLETE?"
        )
    bucket = outputs["FeastS3BucketUri"].rstrip("/")
    connection = (
        f"{outputs['RedisConnectionString']},username={outputs['RedisUsername']},"
        f"password=${{{PASSWORD_VARIABLE}}}"
    )
    return f"""\
# Written by infra/deploy.sh from the outputs of the CloudFormation stack {stack} ({region}).
# The Redis password is not in this file; Feast reads it from ${PASSWORD_VARIABLE}:
#   eval "$(infra/deploy.sh env)"
# (or: aws secretsmanager get-secret-value --secret-id {outputs["RedisSecretArn"]}).
project: {_quoted(project)}
provider: aws
registry: {_quoted(bucket + "/feast/registry.db")}
online_store:
  type: feast_redis_rs.RedisOnlineStore
  redis_type: redis_cluster
  connection_string: {_quoted(connection)}
  key_ttl_seconds: {KEY_TTL_SECONDS}
offline_store:
  type: redshift
  cluster_id: {_quoted(outputs["RedshiftClusterIdentifier"])}
  region: {_quoted(region)}
  database: {_quoted(outputs["RedshiftDatabaseName"])}
  user: {_quoted(outputs["RedshiftAdminUser"])}
  s3_staging_location: {_quoted(bucket + "/feast/staging")}
  iam_role: {_quoted(outputs["RedshiftSpectrumArn"])}
batch_engine:
  type: feast_redis_rs.RedisComputeEngine
entity_key_serialization_version: 3
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--project", default="credit_scoring", help="Feast's project name")
    args = parser.parse_args(argv)
    try:
        outputs = outputs_by_key(json.load(sys.stdin))
        sys.stdout.write(feature_store_yaml(outputs, args.region, args.stack, args.project))
    except (ValueError, KeyError) as error:
        print(f"feature_store_yaml.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

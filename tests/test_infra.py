"""infra/: the guidance's AWS deployment as code, checked without AWS.

- ``infra/template.yaml`` is cfn-lint clean and passes every rule of ``infra/policy.guard``
  (cfn-guard); each rule fails on a copy of the template that breaks what it guards.
- The template is deployed to local emulators: ministack (EC2, ElastiCache, KMS, S3, Glue,
  IAM, Secrets Manager) and, for the Redshift resources ministack lacks, moto's server.
  Emulators report CREATE_COMPLETE for what they skip, so every resource is asserted
  through its service's API.
- The stack's outputs become ``feature_store.aws.yaml`` through the code ``deploy.sh``
  runs, and Feast runs on it (``feast apply``, ``materialize-incremental``,
  ``get_online_features``) against a TLS Redis Cluster that stands in for the cache
  endpoint, with the template's RBAC user (its access string, its generated password) and
  the default user switched off as in the template. Only the offline store is swapped for
  files: Redshift's SQL is not emulated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import redis
import yaml
from feast import FeatureStore
from redis.cluster import ClusterNode, RedisCluster

from loan_demo import data as loan_data

from . import aws_emulators
from .aws_emulators import Emulator, load_template, split_off_redshift
from .redis_servers import RedisServer, make_tls_files, start_cluster

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
CFN_LINT = ROOT / ".tools" / "aws" / "bin" / "cfn-lint"
CFN_GUARD = ROOT / ".tools" / "cfn-guard" / "bin" / "cfn-guard"
FEAST = str(Path(sys.executable).with_name("feast"))
STACK = "feast-credit-scoring"
CIDRS = {"us-east-1a": "10.42.1.0/24", "us-east-1b": "10.42.2.0/24"}
# numpy's dtype kinds of the demo's columns, as Glue (Hive) types.
HIVE_TYPES = {"i": "bigint", "O": "string", "M": "timestamp"}


def guard_failures(template: Path) -> set[str]:
    """The rules of infra/policy.guard that ``template`` fails (and every rule must be
    evaluated: a rule skipped would be a rule not checked)."""
    result = subprocess.run(
        [str(CFN_GUARD), "validate", "--rules", str(INFRA / "policy.guard"),
         "--data", str(template), "--show-summary", "pass,fail,skip",
         "--output-format", "single-line-summary"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    verdicts = dict(
        (rule, verdict)
        for rule, verdict in re.findall(r"policy\.guard/(\w+)\s+(PASS|FAIL|SKIP)", result.stdout)
    )
    rules = set(re.findall(r"^rule (\w+)", (INFRA / "policy.guard").read_text(), re.M))
    assert set(verdicts) == rules, result.stdout[-3000:] + result.stderr[-3000:]
    return {rule for rule, verdict in verdicts.items() if verdict != "PASS"}


def write_json(template: dict, path: Path) -> Path:
    path.write_text(json.dumps(template))
    return path


def test_template_is_cfn_lint_clean():
    result = subprocess.run(
        [str(CFN_LINT), str(INFRA / "template.yaml")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_passes_every_policy_rule():
    assert guard_failures(INFRA / "template.yaml") == set()


def _resources(template: dict) -> dict:
    return template["Resources"]


def _props(template: dict, name: str) -> dict:
    return template["Resources"][name]["Properties"]


def _sse(template: dict, bucket: str) -> dict:
    rule = _props(template, bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    return rule["ServerSideEncryptionByDefault"]


def _add_statement(template: dict, statement: dict) -> None:
    role = _props(template, "SpectrumRole")
    role["Policies"][0]["PolicyDocument"]["Statement"].append(statement)


# Each way of breaking a promise of the template, and the rule that must catch it.
BREAKAGES = {
    "cache without TLS": (
        "cache_tls_and_kms",
        lambda t: _props(t, "ReplicationGroup").update(TransitEncryptionEnabled=False),
    ),
    "cache TLS optional": (
        "cache_tls_and_kms",
        lambda t: _props(t, "ReplicationGroup").update(TransitEncryptionMode="preferred"),
    ),
    "cache with an AWS-owned key": (
        "cache_tls_and_kms",
        lambda t: _props(t, "ReplicationGroup").pop("KmsKeyId"),
    ),
    "cache with an AUTH token": (
        "no_plaintext_secrets",
        lambda t: _props(t, "ReplicationGroup").update(AuthToken="hunter2hunter2hunter2"),
    ),
    "two shards allowed": (
        "cache_tls_and_kms",
        lambda t: t["Parameters"]["NumShards"].update(MinValue=2),
    ),
    "serverless cache with another key": (
        "serverless_cache_kms",
        lambda t: _props(t, "ServerlessCache").update(KmsKeyId="alias/aws/elasticache"),
    ),
    "key rotation off": (
        "stack_kms_key_rotates",
        lambda t: _props(t, "FeatureStoreKey").update(EnableKeyRotation=False),
    ),
    "cache open to an address range": (
        "security_groups_admit_groups_only",
        lambda t: _props(t, "CacheSecurityGroup")["SecurityGroupIngress"].append(
            {"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6380, "CidrIp": "0.0.0.0/0"}
        ),
    ),
    "a separate ingress rule from the internet": (
        "security_groups_admit_groups_only",
        lambda t: _resources(t).update(
            OpenRedshift={
                "Type": "AWS::EC2::SecurityGroupIngress",
                "Properties": {
                    "GroupId": {"Ref": "RedshiftSecurityGroup"},
                    "IpProtocol": "tcp",
                    "FromPort": 5439,
                    "ToPort": 5439,
                    "CidrIp": "0.0.0.0/0",
                },
            }
        ),
    ),
    "cache ports widened": (
        "cache_security_group_redis_ports",
        lambda t: _props(t, "CacheSecurityGroup")["SecurityGroupIngress"][0].update(ToPort=7000),
    ),
    "public Redshift": (
        "redshift_private_encrypted_logged",
        lambda t: _props(t, "RedshiftCluster").update(PubliclyAccessible=True),
    ),
    "Redshift without audit logs": (
        "redshift_private_encrypted_logged",
        lambda t: _props(t, "RedshiftCluster").pop("LoggingProperties"),
    ),
    "Redshift password in the template": (
        "redshift_private_encrypted_logged",
        lambda t: _props(t, "RedshiftCluster").update(MasterUserPassword="thisISyourPassword1"),
    ),
    "bucket policy may make it public": (
        "buckets_private_versioned_encrypted",
        lambda t: _props(t, "LogsBucket")["PublicAccessBlockConfiguration"].update(
            BlockPublicPolicy=False
        ),
    ),
    "bucket unversioned": (
        "buckets_private_versioned_encrypted",
        lambda t: _props(t, "DataBucket").pop("VersioningConfiguration"),
    ),
    "data bucket on S3-managed keys": (
        "data_buckets_use_stack_key",
        lambda t: _sse(t, "DataBucket").update(SSEAlgorithm="AES256"),
    ),
    "data bucket on another key": (
        "data_buckets_use_stack_key",
        lambda t: _sse(t, "DataBucket").update(KMSMasterKeyID="alias/aws/s3"),
    ),
    "secret value in the template": (
        "secrets_generated_and_encrypted",
        lambda t: _props(t, "RedisUserSecret").update(SecretString='{"password": "x"}'),
    ),
    "cache user password in the template": (
        "cache_users_passwords_from_secrets_manager",
        lambda t: _props(t, "RedisUser").update(Passwords=["a-literal-password-123"]),
    ),
    "passwordless user enabled": (
        "cache_users_passwords_from_secrets_manager",
        lambda t: _props(t, "RedisDefaultUser").update(AccessString="on ~* +@all"),
    ),
    "wildcard action": (
        "iam_least_privilege",
        lambda t: _add_statement(
            t,
            {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": {"Fn::GetAtt": ["DataBucket", "Arn"]},
            },
        ),
    ),
    "every resource": (
        "iam_least_privilege",
        lambda t: _add_statement(t, {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}),
    ),
    "AWS managed policy (the guidance's AmazonS3ReadOnlyAccess)": (
        "iam_least_privilege",
        lambda t: _props(t, "SpectrumRole").update(
            ManagedPolicyArns=["arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"]
        ),
    ),
    "password parameter (the guidance's pAdminPassword)": (
        "no_plaintext_secrets",
        lambda t: t["Parameters"].update(AdminPassword={"Type": "String", "NoEcho": True}),
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_policy_rule_fails_on_a_template_that_breaks_it(breakage, tmp_path):
    rule, breaks = BREAKAGES[breakage]
    template = load_template()
    assert guard_failures(write_json(template, tmp_path / "intact.json")) == set()
    breaks(template)
    assert guard_failures(write_json(template, tmp_path / "broken.json")) == {rule}


def test_every_policy_rule_has_a_breakage():
    rules = set(re.findall(r"^rule (\w+)", (INFRA / "policy.guard").read_text(), re.M))
    assert {rule for rule, _ in BREAKAGES.values()} == rules


def test_cfn_lint_rejects_iam_actions_that_are_policy_names(tmp_path):
    """The guidance's template granted "iam:AmazonS3FullAccess": a policy's name, not an
    action. cfn-lint knows every service's actions."""
    template = load_template()
    _add_statement(
        template,
        {"Effect": "Allow", "Action": "iam:AmazonS3FullAccess",
         "Resource": {"Fn::GetAtt": ["DataBucket", "Arn"]}},
    )  # fmt: skip
    result = subprocess.run(
        [str(CFN_LINT), str(write_json(template, tmp_path / "t.json"))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "W3037" in result.stdout and "amazons3fullaccess" in result.stdout


# -- deployed on the emulators ---------------------------------------------------------


@dataclass
class Deployed:
    ministack: Emulator
    moto: Emulator
    template: dict
    outputs: dict[str, str]
    ids: dict[str, str]
    subnets: dict[str, list[str]]
    vpcs: dict[str, str]
    cluster: list[RedisServer]
    ca_cert: Path
    redis_password: str


def _network(emulator: Emulator) -> tuple[str, list[str]]:
    ec2 = emulator.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for zone, cidr in CIDRS.items()
    ]
    return vpc, subnets


def _apply_rbac(nodes: list[RedisServer], template: dict, password: str) -> None:
    """The template's cache users on every node: its Feast user with its access string and
    the generated password, and the default user as the template leaves it (off)."""
    user = _props(template, "RedisUser")
    assert user["UserName"] == {"Ref": "RedisUsername"}
    username = template["Parameters"]["RedisUsername"]["Default"]
    default = _props(template, "RedisDefaultUser")
    for node in nodes:
        client = node.client()
        client.execute_command("ACL", "SETUSER", username, "reset",
                               *user["AccessString"].split(), f">{password}")  # fmt: skip
        client.execute_command("ACL", "SETUSER", "default", "reset",
                               *default["AccessString"].split())  # fmt: skip
        client.close()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("infra")
    tls = make_tls_files(workdir / "certs")
    cluster = start_cluster(workdir / "cluster", tls=tls)
    emulators: list[Emulator] = []
    try:
        seed = cluster[0]
        emulators.append(aws_emulators.start_ministack(workdir / "ministack", seed.host, seed.port))
        emulators.append(aws_emulators.start_moto(workdir / "moto"))
        ministack, moto = emulators
        template = load_template()
        rest, redshift, cross = split_off_redshift(template)
        vpcs, subnets = {}, {}
        for emulator in emulators:
            vpcs[emulator.name], subnets[emulator.name] = _network(emulator)
        parameters = {
            "VpcId": vpcs["ministack"],
            "SubnetIds": ",".join(subnets["ministack"]),
            "CacheMode": "ReplicationGroup",
        }
        outputs = aws_emulators.deploy(ministack, STACK, rest, parameters)
        ids = aws_emulators.physical_ids(ministack, STACK)
        redshift_parameters = {
            "SubnetIds": ",".join(subnets["moto"]),
            **aws_emulators.cross_stack_values(ministack, STACK, template, cross),
        }
        redshift_outputs = aws_emulators.deploy(
            moto, f"{STACK}-redshift", redshift, redshift_parameters
        )
        ids |= aws_emulators.physical_ids(moto, f"{STACK}-redshift")
        # moto's stack output for a cluster's Ref is the repr of its model object; the
        # cluster's id is what the Redshift API lists.
        assert set(redshift_outputs) == {"RedshiftClusterIdentifier"}
        clusters = moto.client("redshift").describe_clusters()["Clusters"]
        outputs["RedshiftClusterIdentifier"] = clusters[0]["ClusterIdentifier"]
        secret = ministack.client("secretsmanager").get_secret_value(
            SecretId=outputs["RedisSecretArn"]
        )
        password = json.loads(secret["SecretString"])["password"]
        _apply_rbac(cluster, template, password)
        yield Deployed(
            ministack, moto, template, outputs, ids, subnets, vpcs, cluster, tls.ca_cert, password
        )
    finally:
        for emulator in emulators:
            emulator.stop()
        for node in cluster:
            node.stop()


def test_online_store_resources(deployed):
    ec = deployed.ministack.client("elasticache")
    group = ec.describe_replication_groups(ReplicationGroupId=deployed.outputs["CacheName"])
    group = group["ReplicationGroups"][0]
    assert group["ClusterEnabled"] is True
    assert len(group["NodeGroups"]) == 3
    assert all(len(shard["NodeGroupMembers"]) == 2 for shard in group["NodeGroups"])
    assert group["TransitEncryptionEnabled"] is True
    assert group["TransitEncryptionMode"] == "required"
    assert group["AtRestEncryptionEnabled"] is True
    assert group["AutomaticFailover"] == "enabled"
    assert group["MultiAZ"] == "enabled"
    assert group["UserGroupIds"] == [deployed.ids["RedisUserGroup"]]
    endpoint = group["ConfigurationEndpoint"]
    seed = deployed.cluster[0]
    assert (endpoint["Address"], endpoint["Port"]) == (seed.host, seed.port)
    assert deployed.outputs["RedisConnectionString"] == f"{seed.host}:{seed.port},ssl=true"

    subnet_group = ec.describe_cache_subnet_groups(
        CacheSubnetGroupName=deployed.ids["CacheSubnetGroup"]
    )["CacheSubnetGroups"][0]
    assert {s["SubnetIdentifier"] for s in subnet_group["Subnets"]} == set(
        deployed.subnets["ministack"]
    )

    users = {u["UserId"]: u for u in ec.describe_users()["Users"]}
    feast_user = users[deployed.ids["RedisUser"]]
    assert feast_user["UserName"] == "feast"
    assert feast_user["Authentication"] == {"Type": "password", "PasswordCount": 1}
    assert feast_user["AccessString"] == _props(deployed.template, "RedisUser")["AccessString"]
    default_user = users[deployed.ids["RedisDefaultUser"]]
    assert default_user["UserName"] == "default"
    assert default_user["AccessString"].startswith("off ")
    user_group = ec.describe_user_groups(UserGroupId=deployed.ids["RedisUserGroup"])
    assert set(user_group["UserGroups"][0]["UserIds"]) == {
        feast_user["UserId"],
        default_user["UserId"],
    }

    ec2 = deployed.ministack.client("ec2")
    groups = ec2.describe_security_groups(
        GroupIds=[deployed.ids["CacheSecurityGroup"], deployed.ids["AppSecurityGroup"]]
    )["SecurityGroups"]
    by_id = {g["GroupId"]: g for g in groups}
    cache_group = by_id[deployed.ids["CacheSecurityGroup"]]
    assert cache_group["VpcId"] == deployed.vpcs["ministack"]
    [rule] = cache_group["IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 6379, 6380)
    assert rule["IpRanges"] == [] and rule.get("Ipv6Ranges", []) == []
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [deployed.ids["AppSecurityGroup"]]
    assert deployed.outputs["AppSecurityGroupId"] == deployed.ids["AppSecurityGroup"]


def test_key_and_secrets(deployed):
    kms = deployed.ministack.client("kms")
    key_id = deployed.ids["FeatureStoreKey"]
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert metadata["KeyManager"] == "CUSTOMER" and metadata["Enabled"] is True
    assert metadata["Arn"] == deployed.outputs["KmsKeyArn"]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases[f"alias/{STACK}"] == key_id

    secrets = deployed.ministack.client("secretsmanager")
    for name, user, length in (
        ("RedisUserSecret", "feast", 40),
        ("RedshiftAdminSecret", "admin", 32),
    ):
        described = secrets.describe_secret(SecretId=deployed.ids[name])
        assert described["KmsKeyId"] in (key_id, metadata["Arn"])
        value = json.loads(secrets.get_secret_value(SecretId=deployed.ids[name])["SecretString"])
        assert value["username"] == user
        assert len(value["password"]) == length
    excluded = _props(deployed.template, "RedisUserSecret")["GenerateSecretString"]
    assert set(excluded["ExcludeCharacters"]) == set(" \"'/@,\\")
    assert not set(deployed.redis_password) & set(excluded["ExcludeCharacters"])


def test_offline_store_resources(deployed):
    s3 = deployed.ministack.client("s3")
    key_arn = deployed.outputs["KmsKeyArn"]
    data_bucket = deployed.outputs["FeastS3BucketUri"].removeprefix("s3://")
    logs_bucket = deployed.outputs["LogsBucketName"]
    # ministack's CloudFormation applies a bucket's public access block, versioning and
    # policy, not its encryption, logging or lifecycle: policy.guard holds those.
    for bucket in (data_bucket, logs_bucket):
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True, "IgnorePublicAcls": True,
            "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
        }  # fmt: skip
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Statement"]
        )

    glue = deployed.ministack.client("glue")
    database = deployed.outputs["GlueDatabaseName"]
    assert glue.get_database(Name=database)["Database"]["Name"] == database
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName=database)["TableList"]}
    assert set(tables) == {"zipcode_features", "credit_history"}
    files = {"zipcode_features": "zipcodes", "credit_history": "credit_history"}
    frames = loan_data.generate()
    for name, table in tables.items():
        storage = table["StorageDescriptor"]
        assert storage["Location"] == f"s3://{data_bucket}/offline/{name}/"
        frame = getattr(frames, files[name])
        # The columns of the demo's own parquet file, in its order, with its types.
        assert [c["Name"] for c in storage["Columns"]] == list(frame.columns), name
        for column in storage["Columns"]:
            kind = frame[column["Name"]].dtype.kind
            assert column["Type"] == HIVE_TYPES[kind], (name, column)

    iam = deployed.ministack.client("iam")
    role_name = deployed.outputs["RedshiftSpectrumArn"].rsplit("/", 1)[1]
    role = iam.get_role(RoleName=role_name)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "redshift.amazonaws.com"}
    assert iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"] == []
    [policy_name] = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    resources = []
    for statement in document["Statement"]:
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert re.fullmatch(r"(s3|kms|glue):[A-Za-z]+", action), action
        found = statement["Resource"]
        resources += [found] if isinstance(found, str) else found
    assert "*" not in resources
    for resource in resources:
        assert (
            resource.startswith(f"arn:aws:s3:::{data_bucket}")
            or resource == key_arn
            or re.fullmatch(
                rf"arn:aws:glue:us-east-1:\d+:(catalog|(database|table)/{database}.*)", resource
            )
        ), resource


def test_redshift_on_moto(deployed):
    """What moto's CloudFormation passes to its Redshift model. It drops the cluster's
    IamRoles, LoggingProperties, VPC security groups, parameter group and identifier (and
    keeps no parameter values): those are held by the policy rule
    redshift_private_encrypted_logged, and listed in docs/aws.md as unverified here."""
    redshift = deployed.moto.client("redshift")
    [cluster] = redshift.describe_clusters()["Clusters"]
    assert cluster["Encrypted"] is True
    assert cluster["KmsKeyId"] == deployed.ids["FeatureStoreKey"]
    assert cluster["PubliclyAccessible"] is False
    assert cluster["NodeType"] == "ra3.large"
    assert cluster["NumberOfNodes"] == 1
    assert cluster["DBName"] == deployed.outputs["RedshiftDatabaseName"] == "dev"
    assert cluster["MasterUsername"] == deployed.outputs["RedshiftAdminUser"] == "admin"
    assert cluster["AutomatedSnapshotRetentionPeriod"] == 7
    [subnet_group] = redshift.describe_cluster_subnet_groups(
        ClusterSubnetGroupName=cluster["ClusterSubnetGroupName"]
    )["ClusterSubnetGroups"]
    assert subnet_group["VpcId"] == deployed.vpcs["moto"]
    assert {s["SubnetIdentifier"] for s in subnet_group["Subnets"]} == set(deployed.subnets["moto"])
    groups = redshift.describe_cluster_parameter_groups()["ParameterGroups"]
    assert [g["ParameterGroupFamily"] for g in groups if "TLS-only" in g["Description"]] == [
        "redshift-1.0"
    ]


def test_feature_store_yaml_from_the_outputs(deployed):
    written = _feature_store_yaml(deployed.outputs)
    config = yaml.safe_load(written)
    online = config["online_store"]
    assert online["type"] == "feast_redis_rs.RedisOnlineStore"
    assert online["redis_type"] == "redis_cluster"
    assert online["connection_string"] == (
        f"{deployed.outputs['RedisConnectionString']},username=feast,"
        "password=${FEAST_REDIS_PASSWORD}"
    )
    bucket = deployed.outputs["FeastS3BucketUri"]
    assert config["registry"] == f"{bucket}/feast/registry.db"
    assert config["offline_store"] == {
        "type": "redshift",
        "cluster_id": deployed.outputs["RedshiftClusterIdentifier"],
        "region": aws_emulators.REGION,
        "database": "dev",
        "user": "admin",
        "s3_staging_location": f"{bucket}/feast/staging",
        "iam_role": deployed.outputs["RedshiftSpectrumArn"],
    }
    assert deployed.redis_password not in written


def _feature_store_yaml(outputs: dict[str, str]) -> str:
    """What deploy.sh does with ``describe-stacks --query Stacks[0].Outputs``."""
    listed = [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]
    result = subprocess.run(
        [sys.executable, str(INFRA / "feature_store_yaml.py"),
         "--region", aws_emulators.REGION, "--stack", STACK],
        input=json.dumps(listed), capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return result.stdout


def test_feature_store_yaml_names_missing_outputs():
    result = subprocess.run(
        [sys.executable, str(INFRA / "feature_store_yaml.py"), "--region", "eu-west-1",
         "--stack", "other-stack"],
        input=json.dumps([{"OutputKey": "RedisConnectionString", "OutputValue": "h:6379"}]),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "other-stack lacks the output(s) RedisUsername, RedisSecretArn" in result.stderr


@pytest.mark.timeout(600)
def test_feast_on_the_deployed_stack(deployed, tmp_path, monkeypatch):
    repo = tmp_path / "feature_repo"
    repo.mkdir()
    shutil.copy(ROOT / "feature_repo" / "features.py", repo / "features.py")
    tables = loan_data.write(tmp_path / "data")
    written = _feature_store_yaml(deployed.outputs)
    # Redshift's SQL is not emulated: the offline tables are read from the same files. The
    # rest of the file is kept as written: Feast substitutes the password into its text, so
    # its quoting is what is under test (a re-dump loses it, and a password with ": " breaks).
    redshift = re.compile(r"^offline_store:\n(?:  .*\n)+", re.MULTILINE)
    assert redshift.search(written), written
    (repo / "feature_store.yaml").write_text(
        redshift.sub("offline_store:\n  type: file\n", written)
    )

    env = {
        **os.environ,
        "FEAST_REDIS_PASSWORD": deployed.redis_password,
        # The cache's certificate chains to a CA the system trusts; here, the test's.
        "SSL_CERT_FILE": str(deployed.ca_cert),
        # The registry lives in the stack's bucket, on the emulator.
        "FEAST_S3_ENDPOINT_URL": deployed.ministack.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": aws_emulators.REGION,
    }
    env.pop("FEAST_OFFLINE_STORE", None)

    def feast(*args: str) -> None:
        result = subprocess.run(
            [FEAST, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    feast("apply")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    feast("materialize-incremental", now)

    s3 = deployed.ministack.client("s3")
    bucket = deployed.outputs["FeastS3BucketUri"].removeprefix("s3://")
    assert s3.head_object(Bucket=bucket, Key="feast/registry.db")["ContentLength"] > 0

    # Nobody gets in without the RBAC user: the default user is off, as on the cache.
    seed = deployed.cluster[0]
    anonymous = redis.Redis(host=seed.host, port=seed.port, ssl=True,
                            ssl_ca_certs=str(deployed.ca_cert))  # fmt: skip
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    raw = RedisCluster(
        startup_nodes=[ClusterNode(seed.host, seed.port)],
        username="feast", password=deployed.redis_password,
        ssl=True, ssl_ca_certs=str(deployed.ca_cert),
    )  # fmt: skip
    try:
        keys_per_master = [
            sum(1 for _ in raw.get_redis_connection(node).scan_iter(count=1000))
            for node in raw.get_primaries()
        ]
    finally:
        raw.close()
    zipcodes = tables.zipcodes["zipcode"].nunique()
    applicants = tables.credit_history["dob_ssn"].nunique()
    # One hash per entity: zipcodes and applicants, spread over the three masters.
    assert sum(keys_per_master) == zipcodes + applicants
    assert len(keys_per_master) == 3 and min(keys_per_master) > 0

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = FeatureStore(repo_path=str(repo))
    credit = tables.credit_history.sort_values("event_timestamp").groupby("dob_ssn").last()
    zipcode = tables.zipcodes.sort_values("event_timestamp").groupby("zipcode").last()
    who = credit.index[:5].tolist()
    where = zipcode.index[:5].tolist()
    answer = store.get_online_features(
        features=["credit_history:credit_card_due", "credit_history:missed_payments_1y",
                  "zipcode_features:city", "zipcode_features:population"],
        entity_rows=[{"dob_ssn": d, "zipcode": int(z)} for d, z in zip(who, where, strict=True)],
    ).to_df()  # fmt: skip
    expected = pd.DataFrame(
        {
            "credit_card_due": credit.loc[who, "credit_card_due"].to_numpy(),
            "missed_payments_1y": credit.loc[who, "missed_payments_1y"].to_numpy(),
            "city": zipcode.loc[where, "city"].to_numpy(),
            "population": zipcode.loc[where, "population"].to_numpy(),
        }
    )
    pd.testing.assert_frame_equal(
        answer[list(expected.columns)].reset_index(drop=True), expected, check_dtype=False
    )


# -- deploy.sh ---------------------------------------------------------------------------

AWS_CLI_BIN = ROOT / ".tools" / "awscli" / "bin"


def _deploy_sh(
    tmp_path: Path, *args: str, path: str, config: Path | None, **env: str
) -> subprocess.CompletedProcess:
    env = {"PATH": path, "HOME": str(tmp_path), **env}
    if config:
        env["CONFIG"] = str(config)
    return subprocess.run(
        [shutil.which("bash"), str(INFRA / "deploy.sh"), *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _config(tmp_path: Path, **settings: str) -> Path:
    """config.example with ``settings`` filled in."""
    text = (INFRA / "config.example").read_text()
    for name, value in settings.items():
        text, count = re.subn(rf"^{name}=.*$", f'{name}="{value}"', text, flags=re.M)
        assert count == 1, name
    config = tmp_path / "config"
    config.write_text(text)
    return config


def test_deploy_sh_passes_shellcheck():
    result = subprocess.run(
        ["shellcheck", "-x", str(INFRA / "deploy.sh")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_sh_without_config(tmp_path):
    result = _deploy_sh(tmp_path, "deploy", path="/usr/bin:/bin", config=tmp_path / "missing")
    assert result.returncode == 1
    assert f"no configuration at {tmp_path / 'missing'}" in result.stderr
    assert "config.example" in result.stderr


def test_deploy_sh_names_an_unset_setting(tmp_path):
    config = _config(tmp_path, VPC_ID="")
    result = _deploy_sh(tmp_path, "deploy", path="/usr/bin:/bin", config=config)
    assert result.returncode == 1
    assert "VPC_ID is not set" in result.stderr


def test_deploy_sh_without_the_aws_cli(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("dirname", "python3"):
        (bare / tool).symlink_to(shutil.which(tool))
    result = _deploy_sh(tmp_path, "deploy", path=str(bare), config=_config(tmp_path))
    assert result.returncode == 1
    assert "the AWS CLI (aws) is not on PATH" in result.stderr


def test_deploy_sh_without_credentials(tmp_path):
    config = _config(tmp_path, AWS_REGION=aws_emulators.REGION)
    result = _deploy_sh(
        tmp_path, "deploy", path=f"{AWS_CLI_BIN}:/usr/bin:/bin", config=config,
        AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip
    assert result.returncode == 1
    assert "no usable AWS credentials" in result.stderr
    assert "Unable to locate credentials" in result.stderr


def test_deploy_sh_rejects_unknown_commands(tmp_path):
    result = _deploy_sh(tmp_path, "destroy", path="/usr/bin:/bin", config=None)
    assert result.returncode == 1
    assert "unknown command 'destroy'" in result.stderr


def test_deploy_sh_on_the_deployed_stack(deployed, tmp_path):
    """deploy.sh's status, upload and env steps, its AWS CLI calls sent to ministack."""
    loan_data.write(tmp_path / "data")
    config = _config(
        tmp_path, STACK_NAME=STACK, AWS_REGION=aws_emulators.REGION, DATA_DIR=str(tmp_path / "data")
    )
    aws = {
        "AWS_ENDPOINT_URL": deployed.ministack.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    def run(command: str) -> subprocess.CompletedProcess:
        result = _deploy_sh(
            tmp_path, command, path=f"{AWS_CLI_BIN}:/usr/bin:/bin", config=config, **aws
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    status = run("status").stdout
    assert "CREATE_COMPLETE" in status and deployed.outputs["RedisConnectionString"] in status

    run("upload")
    s3 = deployed.ministack.client("s3")
    bucket = deployed.outputs["FeastS3BucketUri"].removeprefix("s3://")
    uploaded = {
        item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in s3.list_objects_v2(Bucket=bucket, Prefix="offline/")["Contents"]
    }
    assert uploaded == {
        f"offline/{table}/{file}.parquet": (tmp_path / "data" / f"{file}.parquet").read_bytes()
        for table, file in (
            ("zipcode_features", "zipcode_table"),
            ("credit_history", "credit_history"),
            ("loan_features", "loan_table"),
        )
    }

    exported = run("env").stdout
    assert exported.startswith("export FEAST_REDIS_PASSWORD=")
    evaluated = subprocess.run(
        ["bash", "-c", 'eval "$1"; printf %s "$FEAST_REDIS_PASSWORD"', "-", exported],
        capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    assert evaluated.stdout == deployed.redis_password

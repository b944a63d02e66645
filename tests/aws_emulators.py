"""The AWS emulators `tests/test_infra.py` deploys ``infra/template.yaml`` to, started on
free ports from their own virtualenv (``.tools/aws``, made by ``make infra-tools``):
ministack for EC2, ElastiCache, KMS, S3, Glue, IAM and Secrets Manager, and moto's server for
Redshift, which ministack does not emulate.

One template, two emulators: :func:`split_off_redshift` cuts the Redshift resources out into
a template of their own whose references to the rest become parameters, filled in from what
ministack created (:func:`cross_stack_values`)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import yaml
from botocore.config import Config

from .redis_servers import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "template.yaml"
AWS_TOOLS = ROOT / ".tools" / "aws" / "bin"
REGION = "us-east-1"
START_TIMEOUT_SECONDS = 60
STACK_TIMEOUT_SECONDS = 180
REDSHIFT_TYPES = "AWS::Redshift::"
# A ${Name} or ${Name.Attribute} of Fn::Sub (not the ${!Literal} escape).
SUB_REFERENCE = re.compile(r"\$\{([^}!]+)\}")


@dataclass
class Emulator:
    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 2}),
        )

    def stop(self) -> None:
        stop_process(self.process, timeout=10)


def _start(name: str, command: list[str], env: dict[str, str], workdir: Path, port: int):
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    emulator = Emulator(name, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            emulator.client("sts").get_caller_identity()
            return emulator
        except Exception:
            time.sleep(0.2)
    emulator.stop()
    raise RuntimeError(f"{name} did not answer within {START_TIMEOUT_SECONDS}s")


def start_ministack(workdir: Path, redis_host: str, redis_port: int) -> Emulator:
    """ministack without Docker: every cache endpoint it hands out is ``redis_host:redis_port``,
    the test's own Redis standing in for ElastiCache."""
    port = free_port()
    env = {
        "PATH": str(AWS_TOOLS),
        "HOME": str(workdir),
        "BIND_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "REDIS_HOST": redis_host,
        "REDIS_PORT": str(redis_port),
        "MINISTACK_REGION": REGION,
        # Its IoT broker would take the fixed port 8883; nothing here uses it.
        "IOT_MTLS_ENABLED": "0",
    }
    return _start("ministack", [str(AWS_TOOLS / "ministack")], env, workdir, port)


def start_moto(workdir: Path) -> Emulator:
    port = free_port()
    env = {"PATH": str(AWS_TOOLS), "HOME": str(workdir)}
    command = [str(AWS_TOOLS / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    return _start("moto", command, env, workdir, port)


class _TemplateLoader(yaml.SafeLoader):
    """CloudFormation's YAML: ``!Ref x`` is ``{"Ref": x}``, ``!Sub s`` is
    ``{"Fn::Sub": s}``, ``!GetAtt a.b`` is ``{"Fn::GetAtt": [a, b]}``."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path = TEMPLATE) -> dict:
    return yaml.load(path.read_text(), Loader=_TemplateLoader)


def _references(node: object) -> set[tuple[str, str | None]]:
    """(name, attribute) of every Ref, GetAtt and ${...} in a template fragment."""
    found: set[tuple[str, str | None]] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add((value, None))
            elif key == "Fn::GetAtt":
                found.add((value[0], value[1]))
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                for expression in SUB_REFERENCE.findall(text):
                    name, _, attribute = expression.partition(".")
                    found.add((name, attribute or None))
            else:
                found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def _parameter_name(name: str, attribute: str | None) -> str:
    return name + (attribute or "")


def _rewrite(node: object, outside: set[str]) -> object:
    """A Redshift fragment with its references to ``outside`` resources turned into
    references to parameters."""
    if isinstance(node, dict):
        if "Fn::GetAtt" in node and node["Fn::GetAtt"][0] in outside:
            return {"Ref": _parameter_name(*node["Fn::GetAtt"])}
        if "Fn::Sub" in node and isinstance(node["Fn::Sub"], str):

            def parameter(match: re.Match) -> str:
                name, _, attribute = match.group(1).partition(".")
                if name in outside:
                    return "${" + _parameter_name(name, attribute or None) + "}"
                return match.group(0)

            return {"Fn::Sub": SUB_REFERENCE.sub(parameter, node["Fn::Sub"])}
        return {key: _rewrite(value, outside) for key, value in node.items()}
    if isinstance(node, list):
        return [_rewrite(item, outside) for item in node]
    return node


def split_off_redshift(template: dict) -> tuple[dict, dict, set[tuple[str, str | None]]]:
    """(the template without its Redshift resources, a template of those alone, the
    (resource, attribute) pairs of the first that the second takes as parameters)."""
    resources = template["Resources"]
    redshift_names = {n for n, r in resources.items() if r["Type"].startswith(REDSHIFT_TYPES)}
    outputs = template.get("Outputs", {})
    redshift_outputs = {
        n: o for n, o in outputs.items() if {r for r, _ in _references(o)} & redshift_names
    }
    main = copy.deepcopy(template)
    for name in redshift_names:
        del main["Resources"][name]
    for name in redshift_outputs:
        del main["Outputs"][name]

    fragment = {
        "Resources": {n: copy.deepcopy(resources[n]) for n in redshift_names},
        "Outputs": copy.deepcopy(redshift_outputs),
    }
    outside = set(resources) - redshift_names
    for resource in fragment["Resources"].values():
        depends = resource.pop("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        if inner := [d for d in depends if d in redshift_names]:
            resource["DependsOn"] = inner
    needed = _references(fragment)
    cross = {(name, attribute) for name, attribute in needed if name in outside}
    parameters = {
        name: template["Parameters"][name]
        for name, _ in needed
        if name in template.get("Parameters", {})
    }
    parameters |= {_parameter_name(*ref): {"Type": "String"} for ref in cross}
    conditions = {
        name: condition
        for name, condition in template.get("Conditions", {}).items()
        if name in json.dumps(fragment)
    }
    redshift = {
        "AWSTemplateFormatVersion": template["AWSTemplateFormatVersion"],
        "Parameters": parameters,
        "Conditions": conditions,
        **_rewrite(fragment, outside),
    }
    return main, redshift, cross


def deploy(emulator: Emulator, stack: str, template: dict, parameters: dict[str, str]) -> dict:
    """Create the stack and wait for it; its outputs by key. A failed stack raises with
    the reasons its events give."""
    cfn = emulator.client("cloudformation")
    cfn.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    deadline = time.monotonic() + STACK_TIMEOUT_SECONDS
    while True:
        description = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        status = description["StackStatus"]
        if status == "CREATE_COMPLETE":
            return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
        if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
            events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
            reasons = [
                f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                for e in events
                if "FAILED" in e["ResourceStatus"]
            ]
            raise RuntimeError(f"{emulator.name} stack {stack} is {status}: {reasons}")
        time.sleep(0.5)


def physical_ids(emulator: Emulator, stack: str) -> dict[str, str]:
    cfn = emulator.client("cloudformation")
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources}


def cross_stack_values(
    emulator: Emulator, stack: str, template: dict, cross: set[tuple[str, str | None]]
) -> dict[str, str]:
    """The parameters of the Redshift template: what its references resolve to in the
    stack the rest was deployed as (``Ref``: the physical id; ``Arn``: read back from the
    service)."""
    ids = physical_ids(emulator, stack)
    values = {}
    for name, attribute in cross:
        physical = ids[name]
        if attribute is None:
            value = physical
        elif attribute == "Arn":
            kind = template["Resources"][name]["Type"]
            if kind == "AWS::IAM::Role":
                value = emulator.client("iam").get_role(RoleName=physical)["Role"]["Arn"]
            elif kind == "AWS::KMS::Key":
                value = emulator.client("kms").describe_key(KeyId=physical)["KeyMetadata"]["Arn"]
            elif kind == "AWS::S3::Bucket":
                value = f"arn:aws:s3:::{physical}"
            else:
                raise NotImplementedError(f"the Arn of a {kind} ({name})")
        else:
            raise NotImplementedError(f"{name}.{attribute}")
        values[_parameter_name(name, attribute)] = value
    return values

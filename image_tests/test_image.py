"""The container image of `make image`, run as Kubernetes runs deploy/kubernetes/: as its
own non-root user, root filesystem read-only, no capabilities, the feature repository
mounted read-only, the Redis password from the environment. It serves features that
were written to a Redis this test starts, answers its health check, and stops on
SIGTERM within the grace. Run by `make test-image` (and CI), which builds the image."""

from __future__ import annotations

import json
import os
import resource
import secrets
import shlex
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tomllib

from tests import aws_emulators, driver_stats_repo
from tests.redis_servers import free_port, start_redis

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
IMAGE = os.environ.get("FEAST_REDIS_RS_IMAGE", "")
PODMAN = shlex.split(os.environ.get("FEAST_REDIS_RS_PODMAN", "podman"))
# The host's loopback as slirp4netns shows it to a container (allow_host_loopback), so the
# test's Redis stays on 127.0.0.1.
HOST_FROM_CONTAINER = "10.0.2.2"
NETWORK = "slirp4netns:allow_host_loopback=true"
START_TIMEOUT_SECONDS = 120
# The image's STOPSIGNAL starts a drain of at most --shutdown-timeout (25 s); podman kills
# the container this long after it.
GRACE_SECONDS = 30
REGISTRY_BUCKET = "feast-registry"


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def limits() -> list[str]:
    """podman raises the open-file and process limits by default; a sandbox that forbids
    raising them (as this CI's) refuses to start the container, so keep this process's."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return ["--ulimit", f"nofile={soft}:{hard}", "--ulimit", "nproc=8192:8192"]


def request(url: str, body: object | None = None, timeout: float = 10) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data), timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def image() -> str:
    assert IMAGE, "FEAST_REDIS_RS_IMAGE names the image to test: run `make test-image`"
    podman("image", "exists", IMAGE)
    return IMAGE


@pytest.fixture
def redis_server(tmp_path):
    server = start_redis(tmp_path / "redis", password=secrets.token_hex(16))
    yield server
    server.stop()


def make_repo(path: Path, redis_server, registry: str, env: dict[str, str]) -> Path:
    """A repo applied and materialized from this machine (`env` beside the Redis host and
    password): feature_store.yaml (and the registry, where it is a file) is what the
    container gets, its Redis host and password left to the environment as a ConfigMap
    and a Secret leave them."""
    repo = path / "repo"
    driver_stats_repo.write(
        repo,
        f"project: image_check\nregistry: {registry}\nprovider: local\n"
        "entity_key_serialization_version: 3\n"
        "online_store:\n  type: feast_redis_rs.RedisOnlineStore\n"
        f'  connection_string: "${{FEAST_REDIS_HOST}}:{redis_server.port},'
        'password=${FEAST_REDIS_PASSWORD}"\n'
        "offline_store:\n  type: file\n",
    )
    env = {
        **os.environ, **env,
        "FEAST_REDIS_HOST": "127.0.0.1", "FEAST_REDIS_PASSWORD": redis_server.password,
    }  # fmt: skip
    for command in (["apply"], driver_stats_repo.MATERIALIZE):
        done = subprocess.run(
            [ROOT / ".venv" / "bin" / "feast", *command],
            cwd=repo, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    # The image's user (uid 10001) reads the mounted repo, which pytest made root's only.
    for path in (repo, *repo.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return repo


@pytest.fixture
def feature_repo(tmp_path, redis_server) -> Path:
    return make_repo(tmp_path, redis_server, "registry.db", {})


@pytest.fixture
def s3():
    """moto's S3, with the bucket of the registry."""
    emulator = aws_emulators.start_moto(Path(tempfile.mkdtemp(prefix="moto-")))
    location = {} if aws_emulators.REGION == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": aws_emulators.REGION}
    }  # fmt: skip
    emulator.client("s3").create_bucket(Bucket=REGISTRY_BUCKET, **location)
    yield emulator
    emulator.stop()


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "FEAST_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": aws_emulators.REGION,
    }


def assert_serves_the_features(url: str) -> None:
    status, body = request(
        f"{url}/get-online-features",
        {
            "features": ["driver_stats:rating", "driver_stats:trips", "driver_stats:city"],
            "entities": {"driver_id": [1, 2, 99]},
        },
    )
    assert status == 200, body
    answer = json.loads(body)
    assert answer["metadata"]["feature_names"] == ["driver_id", "rating", "trips", "city"]
    assert [result["values"] for result in answer["results"]] == [
        [1, 2, 99],
        [4.5, 3.25, None],
        [10, 20, None],
        ["Austin", "Fort Worth", None],
    ]


class Container:
    def __init__(self, name: str, port: int):
        self.name = name
        self.url = f"http://127.0.0.1:{port}"

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def start_container(image: str, repo: Path, redis_password: str, *flags: str) -> Container:
    """The image with its own entrypoint, command, user and health check, as the
    Deployment runs it (`flags` add to what that takes away), once /health answers."""
    name = f"feast-redis-rs-test-{secrets.token_hex(4)}"
    port = free_port()
    podman(
        "run", "--detach", "--name", name, *limits(), "--read-only", *flags,
        "--network", NETWORK, "--publish", f"127.0.0.1:{port}:6566",
        "--volume", f"{repo}:/feature_repo:ro",
        "--env", f"FEAST_REDIS_HOST={HOST_FROM_CONTAINER}",
        "--env", f"FEAST_REDIS_PASSWORD={redis_password}",
        image,
    )  # fmt: skip
    running = Container(name, port)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if running.inspect("{{.State.Running}}") != "true":
            running.remove()
            raise AssertionError(f"the container exited:\n{running.logs()}")
        try:
            if request(f"{running.url}/health", timeout=2)[0] == 200:
                return running
        except OSError:
            pass
        if time.monotonic() > deadline:
            logs = running.logs()
            running.remove()
            raise AssertionError(f"not healthy within {START_TIMEOUT_SECONDS} s:\n{logs}")
        time.sleep(0.5)


@pytest.fixture
def container(image, feature_repo, redis_server):
    running = start_container(
        image, feature_repo, redis_server.password,
        "--cap-drop=ALL", "--security-opt=no-new-privileges",
    )  # fmt: skip
    yield running
    running.remove()


def test_the_image_is_built_to_run_unprivileged_and_stop_on_sigterm(image):
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["feast-redis-rs"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0", "--port", "6566"]
    assert "6566/tcp" in config["ExposedPorts"]
    # Docker's format (podman keeps it beside the OCI config).
    assert "/health" in " ".join(inspected["Healthcheck"]["Test"])
    shown = podman("run", "--rm", *limits(), "--read-only", image, "--version").stdout
    assert shown.strip() == f"feast-redis-rs {VERSION} (release build)"
    # What Feast needs for the registry on S3, Kubernetes auth and `listen`'s servicer.
    podman("run", "--rm", *limits(), "--entrypoint", "python3", image, "-c",
           "import boto3, kubernetes, grpc, grpc_health")  # fmt: skip
    # The runtime carries no compiler, package installer or Rust toolchain.
    tools = podman(
        "run", "--rm", *limits(), "--entrypoint", "sh", image, "-c",
        "for tool in gcc cc cargo rustc pip pip3; do command -v $tool; done; true",
    ).stdout  # fmt: skip
    assert tools == "", tools


def test_the_container_serves_the_features_written_to_redis(container, redis_server):
    assert_serves_the_features(container.url)
    status, body = request(f"{container.url}/ready")
    assert status == 200 and json.loads(body)["ready"] is True, body
    # The image's own health check, as the container engine runs it.
    checked = podman("healthcheck", "run", container.name, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # As the image's user, not root.
    assert container.inspect("{{.Config.User}}") == "10001:10001"
    uid = podman("exec", container.name, "python3", "-c", "import os; print(os.getuid())")
    assert uid.stdout.strip() == "10001"
    assert redis_server.password not in container.logs()


def test_the_container_stops_on_sigterm_within_the_grace(container):
    assert request(f"{container.url}/health")[0] == 200
    started = time.monotonic()
    podman("stop", "--time", str(GRACE_SECONDS), container.name, timeout=GRACE_SECONDS + 30)
    took = time.monotonic() - started
    # Exit code 0: the server drained and exited on SIGTERM, not podman's SIGKILL (137).
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    assert took < GRACE_SECONDS, f"stopped in {took:.1f} s:\n{container.logs()}"


def test_the_container_reads_its_registry_from_s3(image, tmp_path, redis_server, s3):
    """The registry of the AWS deployment: s3://, read with the image's boto3."""
    repo = make_repo(tmp_path, redis_server, f"s3://{REGISTRY_BUCKET}/registry.db", s3_env(s3.url))
    assert not (repo / "registry.db").exists()
    port = s3.url.rsplit(":", 1)[1]
    environment = s3_env(f"http://{HOST_FROM_CONTAINER}:{port}")
    flags = [part for name, value in environment.items() for part in ("--env", f"{name}={value}")]
    running = start_container(image, repo, redis_server.password, *flags)
    try:
        assert_serves_the_features(running.url)
    finally:
        running.remove()


def test_a_wrong_redis_password_is_named_without_the_password(image, feature_repo, redis_server):
    """A Secret with the wrong password: the read fails with an error that names the Redis
    address, never the password."""
    wrong = secrets.token_hex(16)
    running = start_container(image, feature_repo, wrong)
    try:
        status, body = request(
            f"{running.url}/get-online-features",
            {"features": ["driver_stats:rating"], "entities": {"driver_id": [1]}},
        )
        assert status == 500, body
        assert f"Redis at {HOST_FROM_CONTAINER}:{redis_server.port} refused the credentials" in (
            body.decode()
        ), body
        assert wrong not in body.decode() and wrong not in running.logs()
    finally:
        running.remove()

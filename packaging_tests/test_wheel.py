"""What `pip install feast-redis-rs` gives a user: the wheel `make wheel` built, installed
into a fresh virtualenv with no Rust toolchain on PATH, and the sdist built from source
where there is one; each then runs Feast end to end against a real Redis (`feast apply`,
`feast materialize`, `get_online_features`) and the `feast-redis-rs` console script.
Run by `make test-wheel` (and CI) after `make wheel`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests import driver_stats_repo
from tests.redis_servers import start_redis

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]

CHECK = textwrap.dedent(
    """
    import sys
    from feast import FeatureStore
    import feast_redis_rs

    assert feast_redis_rs.__version__ == sys.argv[1], feast_redis_rs.__version__
    assert feast_redis_rs.BUILD_PROFILE == sys.argv[2], feast_redis_rs.BUILD_PROFILE
    store = FeatureStore(repo_path=".")
    answer = store.get_online_features(
        features=["driver_stats:rating", "driver_stats:trips", "driver_stats:city"],
        entity_rows=[{"driver_id": 1}, {"driver_id": 2}, {"driver_id": 99}],
    ).to_dict()
    assert answer == {
        "driver_id": [1, 2, 99],
        "rating": [4.5, 3.25, None],
        "trips": [10, 20, None],
        "city": ["Austin", "Fort Worth", None],
    }, answer
    print("answered", answer)
    """
)


def no_toolchain_path() -> str:
    """PATH without any directory holding cargo or rustc."""
    keep = [
        d for d in os.environ["PATH"].split(os.pathsep)
        if not any((Path(d) / tool).exists() for tool in ("cargo", "rustc"))
    ]  # fmt: skip
    return os.pathsep.join(keep)


def make_venv(path: Path, env: dict) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, env=env)
    return path / "bin"


def run(args: list, cwd: Path, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def feast_end_to_end(
    bin_dir: Path, repo: Path, redis_address: str, env: dict, profile: str
) -> None:
    driver_stats_repo.write(
        repo,
        "project: wheel_check\nregistry: registry.db\nprovider: local\n"
        "entity_key_serialization_version: 3\n"
        f"online_store:\n  type: feast_redis_rs.RedisOnlineStore\n"
        f"  connection_string: {redis_address}\n"
        "offline_store:\n  type: file\n",
    )
    run([bin_dir / "feast", "apply"], repo, env)
    run([bin_dir / "feast", *driver_stats_repo.MATERIALIZE], repo, env)
    assert "answered" in run([bin_dir / "python", "-c", CHECK, VERSION, profile], repo, env)
    version = run([bin_dir / "feast-redis-rs", "--version"], repo, env)
    assert f"feast-redis-rs {VERSION} ({profile} build)" in version.splitlines(), version


def only(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST} (run `make wheel`), found {found}"
    return found[0]


@pytest.fixture
def redis_address(tmp_path):
    server = start_redis(tmp_path / "redis")
    yield server.address
    server.stop()


def test_the_wheel_is_manylinux_abi3_and_carries_only_the_package():
    wheel = only("*.whl")
    assert wheel.name.startswith(f"feast_redis_rs-{VERSION}-cp310-abi3-")
    assert "manylinux_2_17" in wheel.name
    shown = subprocess.run(
        [Path(sys.executable).parent / "auditwheel", "show", wheel],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert 'consistent with the following platform tag:\n"manylinux_2_17_' in shown, shown
    names = zipfile.ZipFile(wheel).namelist()
    package = {n for n in names if not n.startswith(f"feast_redis_rs-{VERSION}.dist-info/")}
    sources = {
        f"feast_redis_rs/{p.name}" for p in (ROOT / "python" / "feast_redis_rs").iterdir()
        if p.suffix in (".py", ".pyi") or p.name == "py.typed"
    }  # fmt: skip
    assert package == sources | {"feast_redis_rs/_native.abi3.so"}, package ^ sources


def test_the_wheel_installs_and_runs_without_a_rust_toolchain(tmp_path, redis_address):
    env = {
        **os.environ,
        "PATH": no_toolchain_path(),
        "CARGO": "/nonexistent",
        "RUSTC": "/nonexistent",
    }
    env.pop("VIRTUAL_ENV", None)
    assert shutil.which("cargo", path=env["PATH"]) is None
    assert shutil.which("rustc", path=env["PATH"]) is None
    bin_dir = make_venv(tmp_path / "venv", env)
    wheel = only("*.whl")
    run(
        [bin_dir / "pip", "install", "--quiet", "--only-binary", "feast-redis-rs",
         "--find-links", DIST, f"feast-redis-rs=={VERSION}"],
        tmp_path, env,
    )  # fmt: skip
    listed = run([bin_dir / "pip", "show", "--files", "feast-redis-rs"], tmp_path, env)
    assert "_native.abi3.so" in listed and wheel.name.split("-")[1] in listed
    feast_end_to_end(bin_dir, tmp_path / "repo", redis_address, env, "release")


def test_the_sdist_builds_and_runs_where_there_is_a_toolchain(tmp_path, redis_address):
    env = {**os.environ}
    env.pop("VIRTUAL_ENV", None)
    # A debug build proves the sdist is complete in a fraction of a release build's time.
    env["MATURIN_PEP517_ARGS"] = "--profile dev"
    bin_dir = make_venv(tmp_path / "venv", env)
    run([bin_dir / "pip", "install", "--quiet", only("*.tar.gz")], tmp_path, env)
    feast_end_to_end(bin_dir, tmp_path / "repo", redis_address, env, "debug")

"""`make test-feast-versions`: the compatibility suites under each supported Feast release.

Each release gets a virtualenv of its own (kept in ``$FEAST_VENVS``, ``.feast-venvs`` by
default, and rebuilt when the release or this project's dependencies change) holding
that Feast, this project's test and demo dependencies, and this project's wheel (built
by make from the tree). The suites run there compare this store with that release's
own ``type: redis`` store and ``feast serve``: keys, fields, values and TTLs on
standalone and cluster Redis, v2 and v3 entity keys, reads both ways, materialization
through every engine, the native server's JSON, the Feast CLI, and the demo's run.py.

Writes each release's result to tools/feast_versions.json (with the date) and prints
the table of docs/compatibility.md. ``--versions oldest`` is what CI runs.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "tools" / "feast_versions.json"
VERSIONS = ["0.60.0", "0.61.0", "0.62.0", "0.63.0", "0.64.0", "0.65.0", "0.66.0", "0.67.0"]
SUITES = [
    "tests/test_stock_format.py",
    "tests/test_interop.py",
    "tests/test_online_store.py",
    "tests/test_topologies.py",
    "tests/test_write_arrow.py",
    "tests/test_server.py",
    "tests/test_server_push.py",
    "tests/test_server_on_demand.py",
    "tests/test_feast_cli.py",
    "tests/test_ray_engine.py",
    "tests/test_spark_engine.py",
    "tests/test_demo.py::test_run_py_trains_then_scores_the_sample_application",
    "tests/test_demo.py::test_run_py_scores_over_http_from_feast_redis_rs_serve",
]

# What a release's users run beside it where this project's own pins would not do, by
# distribution name: Feast 0.60 to 0.63's feature server passes MessageToDict's
# float_precision, which protobuf 7 removed; Feast 0.60 to 0.66's Ray engine names Ray
# Data's shuffle strategy in a way Ray 2.59 and later refuse.
ERA_REQUIREMENTS = {
    version: {
        **({"protobuf": "protobuf<7"} if minor < 64 else {}),
        **({"ray": "ray[data]>=2.58,<2.59"} if minor < 67 else {}),
    }
    for version, minor in ((v, int(v.split(".")[1])) for v in VERSIONS)
}


def requirements(version: str, wheel: Path) -> list[str]:
    """What the virtualenv of ``version`` installs: that Feast, this project's wheel with
    its demo dependencies, and its test dependencies with the release's era pins in place
    of its own."""
    era = ERA_REQUIREMENTS[version]
    tests = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    kept = [r for r in tests if re.match(r"[A-Za-z0-9_.-]+", r)[0].lower() not in era]
    return [f"feast[redis]=={version}", f"{wheel}[demo]", *kept, *era.values()]


def venv_for(version: str, wheel: Path) -> Path:
    """The virtualenv of ``version``, made (or remade) when what it holds changed."""
    venvs = Path(os.environ.get("FEAST_VENVS", ROOT / ".feast-venvs"))
    venv = venvs / f"feast-{version}"
    python = venv / "bin" / "python"
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    wanted = hashlib.sha256(
        version.encode() + pyproject + repr(ERA_REQUIREMENTS[version]).encode()
    ).hexdigest()
    stamp = venv / ".installed"
    if not (stamp.exists() and stamp.read_text() == wanted):
        print(f"--- virtualenv for Feast {version}: {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *requirements(version, wheel)],
            check=True,
        )
        stamp.write_text(wanted)
    # The tree's build, whatever the virtualenv held before.
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--force-reinstall",
            str(wheel),
        ],
        check=True,
    )
    return python


def run(version: str, wheel: Path, pytest_args: list[str]) -> dict:
    python = venv_for(version, wheel)
    installed = subprocess.run(
        [str(python), "-c", "import feast; print(feast.__version__)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    print(f"--- Feast {installed}: {' '.join(SUITES)}", flush=True)
    started = time.monotonic()
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", *pytest_args, *SUITES],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    sys.stdout.write(tests.stdout[-6000:])
    sys.stderr.write(tests.stderr[-3000:])
    summary = next(
        (
            line
            for line in reversed(tests.stdout.splitlines())
            if re.search(r"\d+ (passed|failed)", line)
        ),
        "no summary",
    )
    return {
        "feast": installed,
        "passed": tests.returncode == 0,
        "summary": summary.strip("= "),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "date": datetime.date.today().isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="this project's wheel")
    parser.add_argument(
        "--versions", nargs="+", default=["all"],
        help="Feast releases (e.g. 0.63.0), 'oldest', 'newest' or 'all'",
    )  # fmt: skip
    parser.add_argument("pytest_args", nargs="*", help="more arguments for pytest")
    args = parser.parse_args()
    chosen: list[str] = []
    for name in args.versions:
        picked = {"all": VERSIONS, "oldest": VERSIONS[:1], "newest": VERSIONS[-1:]}.get(
            name, [name]
        )
        chosen += [v for v in picked if v not in chosen]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for version in chosen:
        results[version] = run(version, args.wheel.resolve(), args.pytest_args)
        RESULTS.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    print("\n| Feast | result | tests | date |\n|---|---|---|---|")
    for _, result in sorted(results.items()):
        verdict = "passes" if result["passed"] else "**fails**"
        print(f"| {result['feast']} | {verdict} | {result['summary']} | {result['date']} |")
    if not all(results[v]["passed"] for v in chosen):
        sys.exit(1)


if __name__ == "__main__":
    main()

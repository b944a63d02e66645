"""`make bench`'s overload section: stock `feast serve` and `feast-redis-rs serve` on one
repo (the loan-shaped data of bench.py) and one Redis, with requests of 1 and 100 entity
rows, each first driven closed-loop to its saturation rate, then open-loop (oha holding a
fixed rate, latency measured from each request's scheduled start) at 0.5x, 1x and 2x that
rate. Per step: requests answered per second, p50/p99/p99.9 of the answered (200) ones,
those refused (503, shed) and failed, and the server's memory. Writes
bench/results_overload.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve import body, served_repo, start, stop  # noqa: E402  (bench/serve.py)

from bench import machine  # noqa: E402  (bench/bench.py)
from tests.redis_servers import start_redis  # noqa: E402

OHA = Path(os.environ.get("OHA", ROOT / ".tools" / "oha" / "bin" / "oha"))
SERVERS = {
    "stock feast serve": ("feast", "stock.yaml"),
    "feast-redis-rs serve": ("feast-redis-rs", "ours.yaml"),
}
if os.environ.get("OVERLOAD_SERVERS"):  # a subset, to look into one server
    SERVERS = {name: SERVERS[name] for name in os.environ["OVERLOAD_SERVERS"].split(",")}
LOADS = (0.5, 1.0, 2.0)
# The load generator gets a core of its own, the server and Redis the other: at twice a
# server's saturation the generator would otherwise take the server's CPU, and measure
# its own backlog.
SERVER_CPU, CLIENT_CPU = "0", "1"
# Connections open during the open-loop steps: enough that the client does not hold
# requests back from a server that answers (or refuses) promptly.
CONNECTIONS = 128


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kb / 1024


def oha(port: int, request: bytes, seconds: int, connections: int, rate: float | None) -> dict:
    """One oha run: closed-loop when `rate` is None, else open-loop at `rate` req/s."""
    command = [
        "taskset", "-c", CLIENT_CPU, str(OHA), "--worker-threads", "1",
        "-z", f"{seconds}s", "-w", "-c", str(connections), "--no-tui",
        "--output-format", "json", "--stats-success-breakdown", "-t", "30s",
        "-m", "POST", "-H", "Content-Type: application/json", "-d", request.decode(),
        f"http://127.0.0.1:{port}/get-online-features",
    ]  # fmt: skip
    if rate is not None:
        command += ["-q", f"{rate:.0f}", "--latency-correction"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if run.returncode != 0:
        raise RuntimeError(f"oha failed: {run.stderr[-2000:]}")
    out = json.loads(run.stdout)
    codes = {int(code): count for code, count in out["statusCodeDistribution"].items()}
    seconds_taken = out["summary"]["total"]
    answered = codes.get(200, 0)
    percentiles = out.get("latencyPercentilesSuccessful") or {}

    def ms(key: str) -> float | None:
        value = percentiles.get(key)
        return None if value is None else value * 1000

    return {
        "offered_rps": rate,
        # What the generator got out: below the offered rate, the client held requests
        # back (its connections all waiting) and counts that time in the latencies.
        "sent_rps": sum(codes.values()) / seconds_taken,
        "answered_rps": answered / seconds_taken,
        "answered": answered,
        "refused_503": codes.get(503, 0),
        "other_statuses": {c: n for c, n in codes.items() if c not in (200, 503)},
        "failed": sum(out["errorDistribution"].values()),
        "p50_ms": ms("p50"),
        "p99_ms": ms("p99"),
        "p99.9_ms": ms("p99.9"),
    }


def pin(pid: int) -> None:
    """Every thread of `pid`, and those it starts, on the server's core."""
    subprocess.run(["taskset", "-a", "-cp", SERVER_CPU, str(pid)], check=True, capture_output=True)


def measure(port: int, pid: int, request: bytes, seconds: int) -> dict:
    oha(port, request, 2, 16, None)  # warm-up
    saturation = oha(port, request, seconds, 16, None)
    steps = {}
    for load in LOADS:
        step = oha(port, request, seconds, CONNECTIONS, load * saturation["answered_rps"])
        step["rss_mb"] = rss_mb(pid)
        steps[f"{load}x"] = step
    return {"saturation_rps": saturation["answered_rps"], "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, to check the script")
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[1, 100], help="entity rows per request"
    )
    args = parser.parse_args()
    if not OHA.exists():
        sys.exit(f"oha not found at {OHA}: make oha installs it (make bench does)")
    zipcodes, applicants_n = (2_000, 2_000) if args.quick else (28_844, 28_633)
    seconds = 3 if args.quick else 10

    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        redis = start_redis(tmp_path / "redis")
        pin(redis.process.pid)
        try:
            repo, zips, applicants = served_repo(tmp_path, redis.address, zipcodes, applicants_n)
            for rows in args.rows:
                request = body(zips, applicants, rows, 0)
                # One server at a time: the other would take CPU from the one measured.
                for index, (name, (command, yaml_name)) in enumerate(SERVERS.items()):
                    log = tmp_path / f"server-{index}-{rows}.log"
                    # One worker each (stock's default): each has one core.
                    process, port = start(
                        command, repo, yaml_name, log, ("--no-access-log", "-w", "1")
                    )
                    pin(process.pid)
                    try:
                        results.setdefault(f"{rows} row(s)", {})[name] = measure(
                            port, process.pid, request, seconds
                        )
                    finally:
                        stop(process)
        finally:
            redis.stop()

    report = {
        "machine": machine(),
        "connections": CONNECTIONS,
        "cores": f"server and Redis on CPU {SERVER_CPU}, oha on CPU {CLIENT_CPU}",
        "servers": results,
    }
    (ROOT / "bench" / "results_overload.json").write_text(json.dumps(report, indent=2))
    print(
        f"\nMachine: {report['machine']}; oha open loop, {CONNECTIONS} connections; "
        f"{report['cores']}\n"
    )
    print(
        "| rows | server | load | offered req/s | sent req/s | answered req/s | p50 | p99 "
        "| p99.9 | 503 | failed | RSS |"
    )
    print("|---" * 12 + "|")
    for rows, by_server in results.items():
        for name, measured in by_server.items():
            for load, step in measured["steps"].items():

                def ms(value: float | None) -> str:
                    return "-" if value is None else f"{value:.2f} ms"

                print(
                    f"| {rows} | {name} | {load} | {step['offered_rps']:.0f} | "
                    f"{step['sent_rps']:.0f} | {step['answered_rps']:.0f} | "
                    f"{ms(step['p50_ms'])} | {ms(step['p99_ms'])} | "
                    f"{ms(step['p99.9_ms'])} | {step['refused_503']} | {step['failed']} | "
                    f"{step['rss_mb']:.0f} MB |"
                )
    print(f"\nWrote {ROOT / 'bench' / 'results_overload.json'}")


if __name__ == "__main__":
    main()

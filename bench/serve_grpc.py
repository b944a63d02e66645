"""`make bench`'s gRPC section: stock `feast listen` and `feast-redis-rs listen` on one
repo (the loan-shaped data of bench.py), one Redis, in one run, with the same
`GetOnlineFeatures` requests; and the same reads through `feast-redis-rs`'s HTTP on the
same port. The load client is nghttp2's `h2load` (C; HTTP/2 for gRPC, HTTP/1.1 for
JSON), so the client costs little beside the servers on the same cores. Latency: one
connection, one call at a time, percentiles from h2load's per-request log. Throughput:
one connection with 16 concurrent streams (as one gRPC channel multiplexes its calls),
1-row requests. Every answer is checked: each server's own count of calls answered OK
(its metrics; for stock, a grpcio call before and after) must grow by what h2load sent.
Writes bench/results_grpc.json and prints a table of ratios against stock.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve import bench_repo, stop  # noqa: E402
from serve import body as json_body  # noqa: E402

from bench import FEATURES, entity_rows, machine, percentile  # noqa: E402
from tests.redis_servers import free_port  # noqa: E402

BIN = Path(sys.executable).parent
STOCK, OURS, OURS_HTTP = "stock feast listen", "feast-redis-rs listen", "feast-redis-rs HTTP"
GRPC_PATH = "/GrpcFeatureServer/GetOnlineFeatures"
STREAMS = 16


def grpc_body(zips, applicants, rows: int) -> bytes:
    """A `GetOnlineFeaturesRequest` for `rows` entity rows, framed as gRPC sends it."""
    from feast.protos.feast.serving.ServingService_pb2 import FeatureList, GetOnlineFeaturesRequest
    from feast.protos.feast.types.Value_pb2 import Value

    request = GetOnlineFeaturesRequest(features=FeatureList(val=FEATURES))
    for entity in entity_rows(zips, applicants, rows, 0):
        request.entities["zipcode"].val.append(Value(int64_val=int(entity["zipcode"])))
        request.entities["dob_ssn"].val.append(Value(string_val=entity["dob_ssn"]))
    message = request.SerializeToString()
    return struct.pack(">BI", 0, len(message)) + message


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command[0]} did not start: {log.read_text()[-2000:]}")


def answered_rows(port: int, message: bytes) -> int:
    """A grpcio call of the framed `message`: the rows of its answer (raises on an error)."""
    import grpc
    from feast.protos.feast.serving.ServingService_pb2 import (
        GetOnlineFeaturesRequest,
        GetOnlineFeaturesResponse,
    )

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            GRPC_PATH,
            request_serializer=GetOnlineFeaturesRequest.SerializeToString,
            response_deserializer=GetOnlineFeaturesResponse.FromString,
        )
        answer = call(GetOnlineFeaturesRequest.FromString(message[5:]), timeout=60)
    return len(answer.results[0].values)


def h2_status(port: int, payload: Path) -> str:
    """The grpc-status of the framed message in `payload` sent as h2load sends it (by
    nghttp, nghttp2's client beside h2load)."""
    shown = subprocess.run(
        ["nghttp", "-v", "-d", str(payload), "-H", "content-type: application/grpc",
         "-H", "te: trailers", f"http://127.0.0.1:{port}{GRPC_PATH}"],
        capture_output=True, timeout=60, check=True,
    ).stdout.decode("latin-1")  # fmt: skip
    found = re.findall(r"grpc-status: (\d+)", shown)
    return found[-1] if found else shown[-2000:]


def redis_round_trip_ms(port: int) -> float:
    """redis-benchmark's p50 of HMGET from one client: Redis' round trip on this machine."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "1", "-n", "50000", "-q",
         "hmget", "no_such_key", "a", "b"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return float(re.findall(r"p50=([\d.]+) msec", out)[-1])


def ok_calls(port: int) -> float:
    """The gRPC GetOnlineFeatures calls feast-redis-rs has answered OK."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        text = b""
        while chunk := sock.recv(65536):
            text += chunk
    pattern = (
        rb'^feast_redis_rs_requests_total\{endpoint="' + GRPC_PATH.encode() + rb'",'
        rb'status="200",grpc_code="Ok"\} (\S+)$'
    )
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def h2load(
    port: int, payload: Path | None, http1: bool, streams: int, seconds: int, log: Path
) -> dict:
    """h2load on one connection for `seconds` (after a second's warm-up): `payload` posted
    as gRPC (as JSON with `http1`), or `GET /health` without one; requests sent, their
    statuses, and each request's latency from its log."""
    if payload is None:
        path, sent = "/health", []
    elif http1:
        path = "/get-online-features"
        sent = ["-d", str(payload), "-H", "content-type: application/json"]
    else:
        path = GRPC_PATH
        sent = ["-d", str(payload), "-H", "content-type: application/grpc", "-H", "te: trailers"]
    log.unlink(missing_ok=True)
    result = subprocess.run(
        ["h2load", *(["--h1"] if http1 else []), "-c", "1", "-m", str(streams),
         "-D", str(seconds), "--warm-up-time", "1", *sent,
         "--log-file", str(log), f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 120, check=True,
    )  # fmt: skip
    out = result.stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    status_2xx = int(re.search(r"status codes: (\d+) 2xx", out).group(1))
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    # Each request's status and microseconds (`percentile` takes seconds).
    logged = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    # h2load logs status 0 for a stream it saw no response head of (it happens to one
    # of ~250,000 calls at 16 streams, which the server counts answered OK): left out of
    # the latencies, counted.
    latencies = [int(elapsed) / 1e6 for _, status, elapsed in logged if status != "0"]
    statuses = collections.Counter(int(status) for _, status, _ in logged)
    return {
        "done": int(done.group(1)),
        "succeeded": int(done.group(2)),
        "status_2xx": status_2xx,
        "statuses": dict(statuses),
        "rps": rps,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "n": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smaller run, to check the script")
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        sys.exit("h2load not found: install Debian's nghttp2-client (make bench does)")
    seconds = 3 if args.quick else 8

    with bench_repo(args.quick) as (tmp_path, redis, repo, zips, applicants):
        processes = []
        try:
            stock_port, ours_port = free_port(), free_port()
            repo_args = ["-c", str(repo), "-f"]
            stock_command = [str(BIN / "feast"), *repo_args, str(repo / "stock.yaml"), "listen"]
            ours_command = [
                str(BIN / "feast-redis-rs"), *repo_args, str(repo / "ours.yaml"), "listen",
                "--no-access-log", "--metrics",
            ]  # fmt: skip
            for command, port, log in (
                (stock_command, stock_port, "stock.log"),
                (ours_command, ours_port, "ours.log"),
            ):
                address = f"127.0.0.1:{port}"
                processes.append(start([*command, "-a", address], port, tmp_path / log))
            payloads = {}
            for rows in (1, 100):
                grpc_file = tmp_path / f"grpc-{rows}.bin"
                grpc_file.write_bytes(grpc_body(zips, applicants, rows))
                json_file = tmp_path / f"json-{rows}.json"
                json_file.write_bytes(json_body(zips, applicants, rows, 0))
                for port in (stock_port, ours_port):
                    answered = answered_rows(port, grpc_file.read_bytes())
                    assert answered == rows, f"{rows} rows asked, {answered} answered"
                    # What h2load sends is answered OK (its own count is of HTTP 200s).
                    assert h2_status(port, grpc_file) == "0", h2_status(port, grpc_file)
                payloads[rows] = {STOCK: grpc_file, OURS: grpc_file, OURS_HTTP: json_file}
            targets = {STOCK: stock_port, OURS: ours_port, OURS_HTTP: ours_port}
            runs: dict = {}
            loads = [(f"latency_{rows}_row", rows, 1) for rows in (1, 100)]
            loads.append(("throughput_1_row", 1, STREAMS))
            for _ in range(args.rounds):
                for load, rows, streams in loads:
                    for name, port in targets.items():
                        counted = ok_calls(ours_port) if name == OURS else None
                        measured = h2load(
                            port, payloads[rows][name], name == OURS_HTTP, streams,
                            seconds, tmp_path / "h2load.log",
                        )  # fmt: skip
                        assert set(measured["statuses"]) <= {200, 0}, (name, measured)
                        if counted is not None:
                            # Every call h2load sent was answered OK (not only HTTP 200).
                            assert ok_calls(ours_port) - counted >= measured["done"], measured
                        runs.setdefault(load, {}).setdefault(name, []).append(measured)
            # The floors under the 1-row latency: this client and the server's HTTP/2
            # without Redis, and Redis' own round trip.
            health = h2load(ours_port, None, False, 1, seconds, tmp_path / "h2load.log")
            health_16 = h2load(ours_port, None, False, STREAMS, seconds, tmp_path / "h2load.log")
            hmget = redis.client().info("commandstats")["cmdstat_hmget"]
            floors = {
                "h2_health_p50_ms": health["p50_ms"],
                "h2_health_rps_16_streams": health_16["rps"],
                "redis_round_trip_p50_ms": redis_round_trip_ms(redis.port),
                # Redis' own time for one HMGET (a request reads one hash per entity row
                # and view: 2 for a 1-row request, 200 for 100 rows).
                "redis_hmget_us": hmget["usec_per_call"],
            }
        finally:
            for process in processes:
                stop(process)

    def median(measured: list[dict], key: str) -> float:
        return float(np.median([m[key] for m in measured]))

    results = {
        "machine": machine(),
        "client": f"h2load, one connection; throughput with {STREAMS} concurrent streams",
        "rounds": args.rounds,
        "seconds": seconds,
        "floors": floors,
        "loads": {
            load: {
                name: {
                    "p50_ms": median(measured, "p50_ms"),
                    "p99_ms": median(measured, "p99_ms"),
                    "rps": median(measured, "rps"),
                    "requests": sum(m["done"] for m in measured),
                    "without_status_logged": sum(m["statuses"].get(0, 0) for m in measured),
                }
                for name, measured in by_server.items()
            }
            for load, by_server in runs.items()
        },
    }
    (ROOT / "bench" / "results_grpc.json").write_text(json.dumps(results, indent=2))
    print(
        f"\nMachine: {results['machine']}; {results['client']}; medians of {args.rounds} rounds\n"
    )
    names = [STOCK, OURS, OURS_HTTP]
    print("| measure | " + " | ".join(names) + " | gRPC: ours vs stock | ours: gRPC vs HTTP |")
    print("|---" * (len(names) + 3) + "|")
    for load, stats in (
        ("latency_1_row", ("p50_ms", "p99_ms")),
        ("latency_100_row", ("p50_ms", "p99_ms")),
        ("throughput_1_row", ("rps",)),
    ):
        by_server = results["loads"][load]
        for stat in stats:
            cells = " | ".join(
                f"{by_server[n][stat]:.0f} req/s"
                if stat == "rps"
                else f"{by_server[n][stat]:.3f} ms"
                for n in names
            )
            if stat == "rps":
                versus = by_server[OURS][stat] / by_server[STOCK][stat]
                own = by_server[OURS][stat] / by_server[OURS_HTTP][stat]
            else:
                versus = by_server[STOCK][stat] / by_server[OURS][stat]
                own = by_server[OURS_HTTP][stat] / by_server[OURS][stat]
            print(
                f"| {load.replace('_', ' ')}, {stat[:3]} | {cells} | {versus:.1f}x | {own:.2f}x |"
            )
    print(
        f"\nFloors: GET /health over HTTP/2 on this server, same client: p50 "
        f"{floors['h2_health_p50_ms']:.3f} ms, {floors['h2_health_rps_16_streams']:.0f} req/s "
        f"with {STREAMS} streams; Redis' round trip (redis-benchmark -c 1 HMGET) p50 "
        f"{floors['redis_round_trip_p50_ms']:.3f} ms; Redis' own time per HMGET "
        f"{floors['redis_hmget_us']:.2f} us (x200 for 100 rows: "
        f"{floors['redis_hmget_us'] * 0.2:.3f} ms)"
    )
    print(f"\nWrote {ROOT / 'bench' / 'results_grpc.json'}")


if __name__ == "__main__":
    main()

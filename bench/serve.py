"""`make bench`'s server section: stock `feast serve`, `feast serve` with this store, and
`feast-redis-rs serve`, on one repo (the loan-shaped data of bench.py), one Redis, in one
run. Latency: one keep-alive client sending the same requests to each server in
alternating blocks (a plain socket, so the client costs little). Throughput: `wrk` with
16 connections and 1-row requests; for `feast-redis-rs serve` also `/health` (no Redis:
the server's own HTTP capacity, of which a 1-row read's share is what Redis round trips
leave), and 1-row reads with its access log on. Writes bench/results_server.json,
prints a table of ratios against stock `feast serve`, and its chart
docs/results_server.png (the documentation site shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402  (bench/bench.py, beside this script)
    EVENT_TIME,
    FEATURES,
    PROJECT,
    ZIPF_EXPONENT,
    entity_rows,
    feature_store,
    machine,
    make_data,
    percentile,
    pyplot,
)
from feast_redis_rs import RedisOnlineStoreConfig  # noqa: E402
from tests.redis_servers import RedisServer, free_port, start_redis  # noqa: E402

BIN = Path(sys.executable).parent
# The near cache's size in its bench: ~90% of a Zipf-like mix's keys hit (an LRU of
# 1,000 of ~57,000 entity keys, most of them asked for rarely).
NEAR_CACHE_ENTRIES = 1000
SERVERS = {
    "stock feast serve": ("feast", "stock.yaml"),
    "feast serve + this store": ("feast", "ours.yaml"),
    "feast-redis-rs serve": ("feast-redis-rs", "ours.yaml"),
}


def write_yaml(repo: Path, name: str, online_store: dict) -> None:
    config = {
        "project": PROJECT,
        "provider": "local",
        "registry": str(repo / "registry.db"),
        "online_store": online_store,
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    (repo / name).write_text(yaml.safe_dump(config))


class Client:
    """One keep-alive HTTP/1.1 connection sending prepared requests; reconnects (and
    resends, inside the timing) when the server closes it, as gunicorn does when it
    recycles a worker of `feast serve` after `--max-requests`."""

    def __init__(
        self, port: int, headers: dict[str, str] | None = None, path: str = "/get-online-features"
    ) -> None:
        self.port = port
        self.path = path
        self.headers = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.reconnects = 0
        self.sock = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{self.headers}\r\n"
        ).encode()
        for _ in range(3):
            try:
                return self._exchange(head + body)
            except ConnectionError:
                self.reconnects += 1
                self.sock.close()
                self.sock = self._connect()
        raise RuntimeError(f"the server on port {self.port} keeps closing the connection")

    def _exchange(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._receive()
        header, _, rest = data.partition(b"\r\n\r\n")
        status = header.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"status {status!r}: {rest[:300]!r}")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", header).group(1))
        while len(rest) < length:
            rest += self._receive()
        return rest

    def _receive(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        return chunk

    def close(self) -> None:
        self.sock.close()


def body(zips, applicants, rows: int, offset: int) -> bytes:
    entities = entity_rows(zips, applicants, rows, offset)
    return json.dumps(
        {
            "features": FEATURES,
            "entities": {
                "zipcode": [e["zipcode"] for e in entities],
                "dob_ssn": [e["dob_ssn"] for e in entities],
            },
        }
    ).encode()


def served_repo(
    workdir: Path, redis_address: str, zipcodes: int, applicants: int
) -> tuple[Path, list, list]:
    """The bench's loan-shaped data materialized into the Redis at `redis_address`, and a
    repo under `workdir` with `stock.yaml` (Feast's store) and `ours.yaml` (this one).
    Returns the repo, its zipcodes and its applicants."""
    data_dir = workdir / "data"
    data_dir.mkdir()
    zips, applicant_ids = make_data(data_dir, zipcodes, applicants)
    repo = workdir / "repo"
    store = feature_store(
        repo,
        RedisOnlineStoreConfig(connection_string=redis_address),
        data_dir,
        batch_engine={"type": "feast_redis_rs.RedisComputeEngine"},
    )
    store.materialize(EVENT_TIME - timedelta(days=1), EVENT_TIME + timedelta(days=1))
    write_yaml(repo, "stock.yaml", {"type": "redis", "connection_string": redis_address})
    ours = {"type": "feast_redis_rs.RedisOnlineStore", "connection_string": redis_address}
    write_yaml(repo, "ours.yaml", ours)
    write_yaml(repo, "cached.yaml", {**ours, "near_cache": {"max_entries": NEAR_CACHE_ENTRIES}})
    return repo, zips, applicant_ids


@contextlib.contextmanager
def bench_repo(quick: bool) -> Iterator[tuple[Path, RedisServer, Path, list, list]]:
    """A temporary directory, a Redis of its own in it and the bench's data materialized
    into that Redis (smaller with `quick`): yields the directory, the Redis, the repo,
    its zipcodes and its applicants; the Redis is stopped at the end."""
    zipcodes, applicants = (2_000, 2_000) if quick else (28_844, 28_633)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        redis = start_redis(tmp_path / "redis")
        try:
            yield (tmp_path, redis, *served_repo(tmp_path, redis.address, zipcodes, applicants))
        finally:
            redis.stop()


def start(
    command: str,
    repo: Path,
    yaml_name: str,
    log: Path,
    options: tuple[str, ...] = ("--no-access-log",),
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / command), "-c", str(repo), "-f", str(repo / yaml_name), "serve",
         "-p", str(port), *options],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b" 200 " in sock.recv(1024):
                    return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not start: {log.read_text()[-2000:]}")


def start_each(
    servers: dict[str, tuple[str, str, tuple[str, ...]]],
    repo: Path,
    workdir: Path,
    processes: list[subprocess.Popen],
) -> dict[str, int]:
    """Starts each of ``servers`` (``name: (command, yaml, options)``, no access log),
    adding its process to ``processes`` (the caller stops them); returns their ports."""
    ports = {}
    for index, (name, (command, yaml_name, options)) in enumerate(servers.items()):
        process, port = start(
            command, repo, yaml_name, workdir / f"server-{index}.log",
            options=("--no-access-log", *options),
        )  # fmt: skip
        processes.append(process)
        ports[name] = port
    return ports


# The client of the latency measures (`measure_latency`).
LATENCY_CLIENT = "one keep-alive HTTP/1.1 connection per server, one request at a time"


def latency_results(rounds: int, block: int, latency: dict, **extra) -> dict:
    """A latency section's results: the machine, the client, the rounds and `latency`
    (then `extra`)."""
    return {
        "machine": machine(),
        "client": LATENCY_CLIENT,
        "rounds": rounds,
        "requests_per_round": block,
        "latency": latency,
        **extra,
    }


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def measure_latency(
    ports: dict, bodies: list[bytes], rounds: int, headers: dict[str, dict] | None = None
) -> dict:
    """Each server's p50, p99 and mean over `rounds` of `bodies`, one request at a time,
    the servers taking turns (`headers` by server: what its client sends besides)."""
    clients = {name: Client(port, (headers or {}).get(name)) for name, port in ports.items()}
    latencies: dict[str, list[float]] = {name: [] for name in ports}
    for client in clients.values():  # warm-up, out of the measurement
        for request in bodies[:20]:
            client.request(request)
    for _ in range(rounds):
        for name, client in clients.items():
            for request in bodies:
                started = time.perf_counter()
                client.request(request)
                latencies[name].append(time.perf_counter() - started)
    for client in clients.values():
        client.close()
    return {name: latency_stats(v) for name, v in latencies.items()}


def latency_stats(seconds: list[float]) -> dict:
    return {
        "p50_ms": percentile(seconds, 50),
        "p99_ms": percentile(seconds, 99),
        "mean_ms": 1e3 * sum(seconds) / len(seconds),
        "n": len(seconds),
    }


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
"""


# Each request a 1-row read of entities drawn by a Zipf-like law (exponent
# ZIPF_EXPONENT over each entity's values, in a random order of ranks): a few are asked
# for often, most rarely.
ZIPF_DRAWS = 50_000
ZIPF_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local zips = {%(zips)s}
local applicants = {%(applicants)s}
local body = '{"features":%(features)s,"entities":{"zipcode":[%%d],"dob_ssn":["%%s"]}}'
local DRAWS = %(draws)d

local function cumulative(n)
  local weights, total = {}, 0
  for rank = 1, n do
    total = total + rank ^ -%(exponent)s
    weights[rank] = total
  end
  for rank = 1, n do weights[rank] = weights[rank] / total end
  return weights
end
local zip_law, applicant_law = cumulative(#zips), cumulative(#applicants)

local function draw(law)
  local u, low, high = math.random(), 1, #law
  while low < high do
    local middle = math.floor((low + high) / 2)
    if law[middle] < u then low = middle + 1 else high = middle end
  end
  return low
end

local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
-- Drawn ahead, so the load generator's own work per request stays that of a fixed
-- request: the Lua draws would otherwise take the cores the server is measured on.
local requests, sent = {}, 0
init = function()
  math.randomseed(seed * 7919)
  for i = 1, DRAWS do
    local entity = string.format(body, zips[draw(zip_law)], applicants[draw(applicant_law)])
    requests[i] = wrk.format(nil, nil, nil, entity)
  end
end
request = function()
  sent = sent %% DRAWS + 1
  return requests[sent]
end
"""


def zipf_script(zips, applicants, workdir: Path) -> Path:
    rng = np.random.default_rng(7)
    script = workdir / "zipf.lua"
    script.write_text(
        ZIPF_SCRIPT
        % {
            "zips": ",".join(str(int(z)) for z in rng.permutation(zips)),
            "applicants": ",".join(f'"{a}"' for a in rng.permutation(applicants)),
            "features": json.dumps(FEATURES).replace(" ", ""),
            "exponent": ZIPF_EXPONENT,
            "draws": ZIPF_DRAWS,
        }
    )
    return script


def metric(port: int, name: str) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        text = b""
        while chunk := sock.recv(65536):
            text += chunk
    pattern = rf"^feast_redis_rs_{re.escape(name)} (\S+)$".encode()
    return float(re.search(pattern, text, re.M).group(1))


def requests_served(port: int) -> float:
    """The 200s of /get-online-features the server has counted."""
    return metric(port, 'requests_total{endpoint="/get-online-features",status="200"}')


def measure_throughput(
    port: int, request: bytes | Path | None, seconds: int, workdir: Path
) -> dict:
    """wrk -c16 posting `request` (or what a wrk script makes) to /get-online-features,
    or getting /health."""
    if request is None:
        target = ["/health"]
    elif isinstance(request, Path):
        target = ["/get-online-features", "-s", str(request)]
    else:
        script = workdir / "post.lua"
        script.write_text(WRK_SCRIPT % request.decode())
        target = ["/get-online-features", "-s", str(script)]
    result = subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{seconds}s", *target[1:],
         f"http://127.0.0.1:{port}{target[0]}"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )  # fmt: skip
    out = result.stdout
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    failed = int(errors.group(1)) if errors else 0
    failed += sum(map(int, socket_errors.groups())) if socket_errors else 0
    return {"rps": rps, "errors": failed}


def alternating(loads: dict, rounds: int, seconds: int, workdir: Path) -> dict:
    """``measure_throughput`` of each ``(port, request)`` of `loads` in turn, `rounds`
    times over: on a VM whose speed drifts by a fifth from one run to the next, ratios of
    medians of interleaved runs hold where ratios of single runs do not."""
    runs: dict[str, list[dict]] = {name: [] for name in loads}
    for _ in range(rounds):
        for name, (port, request) in loads.items():
            runs[name].append(measure_throughput(port, request, seconds, workdir))
    return {
        name: {
            "rps": float(np.median([r["rps"] for r in measured])),
            "runs": [r["rps"] for r in measured],
            "errors": sum(r["errors"] for r in measured),
        }
        for name, measured in runs.items()
    }


def chart(results: dict, path: Path) -> None:
    plt = pyplot()
    names = list(SERVERS)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for axis, rows in zip(axes[:2], (1, 100), strict=True):
        by_server = results["latency"][rows]
        x = np.arange(len(names))
        axis.bar(x - 0.2, [by_server[n]["p50_ms"] for n in names], 0.4, label="p50")
        axis.bar(x + 0.2, [by_server[n]["p99_ms"] for n in names], 0.4, label="p99")
        axis.set_xticks(x, [n.replace(" + ", "\n+ ") for n in names], fontsize=8)
        axis.set_yscale("log")
        axis.set_ylabel(f"{rows}-row request, ms (log)")
        axis.legend()
    throughput = results["throughput_16_connections_1_row"]
    axes[2].bar(range(len(names)), [throughput[n]["rps"] for n in names])
    axes[2].set_xticks(range(len(names)), [n.replace(" + ", "\n+ ") for n in names], fontsize=8)
    axes[2].set_yscale("log")
    axes[2].set_ylabel("req/s, wrk 16 connections, 1 row (log)")
    fig.suptitle(f"feature servers on one Redis, {results['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def section_arguments(doc: str) -> argparse.Namespace:
    """A section script's arguments (``--rounds``, ``--quick``), described by its ``doc``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smaller run, to check the script")
    return parser.parse_args()


def main() -> None:
    args = section_arguments(__doc__)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install Debian's wrk package (make bench does)")
    block, seconds = (20, 3) if args.quick else (200, 10)

    with bench_repo(args.quick) as (tmp_path, _, repo, zips, applicants):
        processes = []
        try:
            servers = {name: (*server, ()) for name, server in SERVERS.items()}
            ports = start_each(servers, repo, tmp_path, processes)
            latency = {
                rows: measure_latency(
                    ports,
                    [body(zips, applicants, rows, k * rows) for k in range(block)],
                    args.rounds,
                )
                for rows in (1, 100)
            }
            one_row = body(zips, applicants, 1, 0)
            throughput = {
                name: measure_throughput(port, one_row, seconds, tmp_path)
                for name, port in ports.items()
            }
            native = ports["feast-redis-rs serve"]
            logged, logged_port = start(
                "feast-redis-rs", repo, "ours.yaml", tmp_path / "logged.log", options=()
            )
            processes.append(logged)
            cached, cached_port = start(
                "feast-redis-rs",
                repo,
                "cached.yaml",
                tmp_path / "cached.log",
                options=("--no-access-log", "--metrics"),
            )
            processes.append(cached)
            zipf = zipf_script(zips, applicants, tmp_path)
            # Warmed by a first run, as a server is after a while of such traffic.
            measure_throughput(cached_port, zipf, seconds, tmp_path)
            counters = ("hits", "misses", "answers_reused")
            before = {n: metric(cached_port, f"near_cache_{n}_total") for n in counters}
            requests_before = requests_served(cached_port)
            native_runs = alternating(
                {
                    "health": (native, None),
                    "read": (native, one_row),
                    "read_access_log": (logged_port, one_row),
                    "zipf_uncached": (native, zipf),
                    "zipf_cached": (cached_port, zipf),
                },
                args.rounds,
                seconds // 2,
                tmp_path,
            )
            counted = {
                n: metric(cached_port, f"near_cache_{n}_total") - before[n] for n in counters
            }
            hits, misses = counted["hits"], counted["misses"]
            requests = requests_served(cached_port) - requests_before
            near_cache = {
                "max_entries": NEAR_CACHE_ENTRIES,
                "zipf_exponent": ZIPF_EXPONENT,
                "hit_rate": hits / (hits + misses),
                # Requests answered with the answer kept for the same body.
                "answers_reused": counted["answers_reused"] / requests,
                "uncached_rps": native_runs["zipf_uncached"]["rps"],
                "cached_rps": native_runs["zipf_cached"]["rps"],
                "errors": native_runs["zipf_uncached"]["errors"]
                + native_runs["zipf_cached"]["errors"],
            }
            native_server = {
                "rounds": args.rounds,
                "health_rps": native_runs["health"]["rps"],
                "read_rps": native_runs["read"]["rps"],
                "read_rps_access_log": native_runs["read_access_log"]["rps"],
                "runs": {name: run["runs"] for name, run in native_runs.items()},
            }
        finally:
            for process in processes:
                stop(process)

    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    results = {
        "machine": f"{machine}, Python {platform.python_version()}",
        "latency": latency,
        "throughput_16_connections_1_row": throughput,
        "native_server": native_server,
        "near_cache": near_cache,
    }
    (ROOT / "bench" / "results_server.json").write_text(json.dumps(results, indent=2))
    chart(results, ROOT / "docs" / "results_server.png")
    stock = "stock feast serve"
    print(f"\nMachine: {results['machine']}; one keep-alive client; wrk -t2 -c16, 1-row requests\n")
    print("| measure | " + " | ".join(SERVERS) + " | feast-redis-rs vs stock |")
    print("|---" * (len(SERVERS) + 2) + "|")
    for rows, by_server in latency.items():
        for stat in ("p50_ms", "p99_ms"):
            cells = " | ".join(f"{by_server[n][stat]:.2f} ms" for n in SERVERS)
            ratio = by_server[stock][stat] / by_server["feast-redis-rs serve"][stat]
            print(f"| {rows} row(s), {stat[:3]} | {cells} | {ratio:.1f}x faster |")
    cells = " | ".join(
        f"{throughput[n]['rps']:.0f} req/s ({throughput[n]['errors']} errors)" for n in SERVERS
    )
    ratio = throughput["feast-redis-rs serve"]["rps"] / throughput[stock]["rps"]
    print(f"| throughput | {cells} | {ratio:.1f}x |")
    n = native_server
    print(
        f"\nfeast-redis-rs serve, wrk -t2 -c16, medians of {n['rounds']} interleaved runs: "
        f"/health {n['health_rps']:.0f} req/s; 1-row reads "
        f"{n['read_rps']:.0f} req/s, {n['read_rps'] / n['health_rps']:.3f} of /health; with the "
        f"access log {n['read_rps_access_log']:.0f} req/s "
        f"({1 - n['read_rps_access_log'] / n['read_rps']:+.1%} cost)"
    )
    c = near_cache
    print(
        f"\nNear cache (max_entries {c['max_entries']}), wrk -t2 -c16, 1-row reads of a "
        f"Zipf-like mix (exponent {c['zipf_exponent']}): {c['hit_rate']:.0%} of keys hit, "
        f"{c['answers_reused']:.0%} of requests answered with a kept answer; "
        f"{c['cached_rps']:.0f} req/s against {c['uncached_rps']:.0f} uncached "
        f"({c['cached_rps'] / c['uncached_rps']:.2f}x), {c['errors']} errors"
    )
    print(f"\nWrote {ROOT / 'bench' / 'results_server.json'}")


def save_results(results: dict, file_name: str) -> None:
    """Writes a latency section's ``results`` beside this script, and prints what they
    were measured on."""
    Path(__file__).with_name(file_name).write_text(json.dumps(results, indent=2) + "\n")
    print(
        "\n" + "; ".join(results[key] for key in ("machine", "client", "request") if key in results)
    )


def latency_rows(
    latency: dict, names: tuple[str, ...]
) -> Iterator[tuple[str, int, str, list[float]]]:
    """A latency table's rows: each row count and statistic of ``latency``, labelled,
    with the values of the servers ``names``."""
    for rows in (1, 100):
        for stat in ("p50_ms", "p99_ms"):
            label = f"{rows} row{'s' if rows > 1 else ''} {stat[:3]}"
            yield label, rows, stat, [latency[rows][name][stat] for name in names]


# The two servers of a section that measures stock's and ours alone.
STOCK, OURS = "feast serve", "feast-redis-rs serve"


def stock_and_ours_latency(
    repo: Path, workdir: Path, bodies: dict[int, list[bytes]], rounds: int
) -> tuple[dict, float]:
    """Stock ``feast serve`` and ours on ``repo`` (``stock_and_ours``), measured in turn
    with the ``bodies`` of each row count; returns the latency by row count and server,
    and how many of ours went to Feast's app."""
    return stock_and_ours(
        repo,
        workdir,
        lambda ports: {
            rows: measure_latency(ports, block, rounds) for rows, block in bodies.items()
        },
    )


def stock_and_ours(
    repo: Path, workdir: Path, measure: Callable[[dict], dict]
) -> tuple[dict, float]:
    """Stock ``feast serve`` (stock.yaml) and ``feast-redis-rs serve`` (ours.yaml, its
    metrics on a port of their own) on ``repo``; returns what ``measure`` makes of their
    ports, and how many of ours went to Feast's app meanwhile."""
    metrics_port = free_port()
    servers = {
        STOCK: ("feast", "stock.yaml", ()),
        OURS: (
            "feast-redis-rs",
            "ours.yaml",
            ("--metrics", "--metrics-port", str(metrics_port)),
        ),
    }
    processes: list[subprocess.Popen] = []
    try:
        ports = start_each(servers, repo, workdir, processes)
        before = metric(metrics_port, "feast_fallbacks_total")
        measured = measure(ports)
        return measured, metric(metrics_port, "feast_fallbacks_total") - before
    finally:
        for process in processes:
            stop(process)


if __name__ == "__main__":
    main()

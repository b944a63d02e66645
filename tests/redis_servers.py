"""Real ``redis-server`` processes for the tests, each on a free port of its own.

The binary is ``$REDIS_SERVER`` or ``redis-server`` on the PATH (``make test`` installs
Debian's package when it is missing). Servers keep nothing on disk beyond their temp dir
and are stopped when the fixture ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

START_TIMEOUT_SECONDS = 10


def redis_server_binary() -> str:
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        raise RuntimeError(
            "redis-server not found: install Debian's redis-server package (make test does) "
            "or set REDIS_SERVER to the binary"
        )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    host: str
    port: int
    workdir: Path
    process: subprocess.Popen
    password: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, password=self.password)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_redis(workdir: Path, *extra_args: str, password: str | None = None) -> RedisServer:
    """Start a standalone server on a free loopback port and wait until it answers PING."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--logfile", str(workdir / "redis.log"),
        *extra_args,
    ]  # fmt: skip
    if password:
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = RedisServer("127.0.0.1", port, workdir, process, password)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited: {_log_tail(workdir)}")
        try:
            if server.client().ping():
                return server
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(
        f"redis-server on port {port} did not answer within {START_TIMEOUT_SECONDS}s"
    )


def _log_tail(workdir: Path) -> str:
    log = workdir / "redis.log"
    return log.read_text()[-2000:] if log.exists() else "(no log)"

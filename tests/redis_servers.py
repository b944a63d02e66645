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


START_ATTEMPTS = 5
CLUSTER_BUS_PORT_OFFSET = 10000


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (the port + 10000) is free too."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_PORT_OFFSET >= 65536:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + CLUSTER_BUS_PORT_OFFSET))
            except OSError:
                continue
        return port


@dataclass
class TlsFiles:
    """A CA, a server certificate it signed and, for mutual TLS, a client's."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path | None = None
    client_key: Path | None = None


def make_tls_files(
    workdir: Path, names: str = "DNS:localhost,IP:127.0.0.1", client: bool = False
) -> TlsFiles:
    """A CA, and a server certificate it signed for the subjectAltNames `names` (and,
    with `client`, a client certificate: the server then requires one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = workdir / "ca.key", workdir / "ca.crt"
    key, csr, cert = workdir / "server.key", workdir / "server.csr", workdir / "server.crt"
    ext = workdir / "san.ext"
    ext.write_text(f"subjectAltName={names}\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=feast-redis-rs test CA", "-keyout", str(ca_key), "-out", str(ca_cert))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    if not client:
        return TlsFiles(ca_cert, cert, key)
    client_key, client_csr = workdir / "client.key", workdir / "client.csr"
    client_cert, client_ext = workdir / "client.crt", workdir / "client.ext"
    # Extensions make it an X.509 v3 certificate: webpki (rustls) takes no v1 ones.
    client_ext.write_text("extendedKeyUsage=clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=feast-redis-rs test client",
            "-keyout", str(client_key), "-out", str(client_csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(client_csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(client_ext),
            "-out", str(client_cert))  # fmt: skip
    return TlsFiles(ca_cert, cert, key, client_cert, client_key)


@dataclass
class RedisServer:
    host: str
    port: int
    workdir: Path
    process: subprocess.Popen
    password: str | None = None
    tls: TlsFiles | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self) -> redis.Redis:
        if self.tls:
            return redis.Redis(
                host=self.host,
                port=self.port,
                password=self.password,
                ssl=True,
                ssl_ca_certs=str(self.tls.ca_cert),
                # The harness talks to servers whose certificates name other hosts too.
                ssl_check_hostname=False,
                ssl_certfile=str(self.tls.client_cert) if self.tls.client_cert else None,
                ssl_keyfile=str(self.tls.client_key) if self.tls.client_key else None,
            )
        return redis.Redis(host=self.host, port=self.port, password=self.password)

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL if it still runs after ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def start_redis(
    workdir: Path,
    *extra_args: str,
    password: str | None = None,
    tls: TlsFiles | None = None,
    port: int | None = None,
) -> RedisServer:
    """Start a server on `port` (a free loopback port by default) and wait until it
    answers PING. A port picked here is free when picked but may be taken before the
    server binds it (other tests start servers too), so then it starts again on another."""
    if port is not None:
        return _start_redis_on(workdir, port, extra_args, password, tls)
    pick = free_cluster_port if "--cluster-enabled" in extra_args else free_port
    for _ in range(START_ATTEMPTS - 1):
        try:
            return _start_redis_on(workdir, pick(), extra_args, password, tls)
        except PortTaken:
            # The next try's failure must be told by its own log, and a cluster node
            # must not come back with the identity it saved on the taken port.
            for leftover in ("redis.log", "nodes.conf"):
                (workdir / leftover).unlink(missing_ok=True)
    return _start_redis_on(workdir, pick(), extra_args, password, tls)


class PortTaken(RuntimeError):
    """The server could not bind its port (or its cluster bus port)."""


def _start_redis_on(
    workdir: Path,
    port: int,
    extra_args: tuple[str, ...],
    password: str | None,
    tls: TlsFiles | None,
) -> RedisServer:
    workdir.mkdir(parents=True, exist_ok=True)
    if tls:
        client_auth = "yes" if tls.client_cert else "no"
        listen = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", client_auth,
                  "--tls-cert-file", str(tls.server_cert), "--tls-key-file", str(tls.server_key),
                  "--tls-ca-cert-file", str(tls.ca_cert)]  # fmt: skip
    else:
        listen = ["--port", str(port)]
    args = [
        redis_server_binary(),
        *listen,
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
    server = RedisServer("127.0.0.1", port, workdir, process, password, tls)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = _log_tail(workdir)
            failure = PortTaken if "Address already in use" in log else RuntimeError
            raise failure(f"redis-server on port {port} exited: {log}")
        try:
            if server.client().ping():
                return server
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(
        f"redis-server on port {port} did not answer within {START_TIMEOUT_SECONDS}s"
    )


def start_cluster(
    workdir: Path, masters: int = 3, replicas: int = 0, tls: TlsFiles | None = None
) -> list[RedisServer]:
    """Start ``masters`` cluster-enabled servers (and ``replicas`` replicas of each) and
    join them with ``redis-cli --cluster create``; returns once every node reports
    ``cluster_state:ok`` (and every replica is in sync). With ``tls``, clients, the cluster
    bus and replication all speak TLS only."""
    tls_args = ["--tls-cluster", "yes", "--tls-replication", "yes"] if tls else []
    nodes = []
    try:
        for i in range(masters * (1 + replicas)):
            nodes.append(
                start_redis(
                    workdir / f"node{i}",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    *tls_args,
                    tls=tls,
                )
            )
        subprocess.run(
            [
                redis_cli_binary(),
                *(["--tls", "--cacert", str(tls.ca_cert)] if tls else []),
                "--cluster",
                "create",
                *(n.address for n in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while not all(_cluster_ok(n) and _replica_in_sync(n) for n in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok in 30s")
            time.sleep(0.1)
        return nodes
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def _replica_in_sync(node: RedisServer) -> bool:
    info = node.client().info("replication")
    return info["role"] == "master" or info.get("master_link_status") == "up"


def _cluster_ok(node: RedisServer) -> bool:
    info = node.client().execute_command("CLUSTER", "INFO").decode()
    return "cluster_state:ok" in info


def redis_cli_binary() -> str:
    server = Path(redis_server_binary())
    beside = server.with_name("redis-cli")
    found = str(beside) if beside.exists() else shutil.which("redis-cli")
    if not found:
        raise RuntimeError("redis-cli not found beside redis-server nor on the PATH")
    return found


def start_sentinel(workdir: Path, master: RedisServer, master_name: str) -> RedisServer:
    """Start a sentinel watching ``master`` under ``master_name`` (quorum 1)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor {master_name} {master.host} {master.port} 1\n"
        f"sentinel down-after-milliseconds {master_name} 1000\n"
        f"sentinel failover-timeout {master_name} 5000\n"
    )
    process = subprocess.Popen(
        [redis_server_binary(), str(config), "--sentinel", "--logfile", str(workdir / "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sentinel = RedisServer("127.0.0.1", port, workdir, process)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sentinel on port {port} exited: {_log_tail(workdir)}")
        try:
            if sentinel.client().sentinel_get_master_addr_by_name(master_name):
                return sentinel
        except redis.exceptions.ConnectionError:
            pass
        time.sleep(0.05)
    sentinel.stop()
    raise RuntimeError(f"sentinel on port {port} did not answer within {START_TIMEOUT_SECONDS}s")


def _log_tail(workdir: Path) -> str:
    log = workdir / "redis.log"
    return log.read_text()[-2000:] if log.exists() else "(no log)"

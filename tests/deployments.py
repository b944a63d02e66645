"""The Redis deployments the store's tests run on, each started by the harness on free
ports: standalone, a 3-master cluster, TLS with password AUTH, a master behind a
sentinel, an ACL user, and a Unix socket. Each gives the connection settings for both this store and
stock Feast, and a raw redis-py client to look at the bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import redis
from feast.infra.online_stores.redis import RedisOnlineStoreConfig as StockConfig
from redis.cluster import ClusterNode, RedisCluster

from feast_redis_rs import RedisOnlineStoreConfig

from .redis_servers import (
    RedisServer,
    make_tls_files,
    start_cluster,
    start_redis,
    start_sentinel,
)

TLS_PASSWORD = "tls-s3cret"
ACL_USER, ACL_PASSWORD = "feast", "acl-s3cret"


@dataclass
class Deployment:
    name: str
    redis_type: str
    connection_string: str
    masters: list[RedisServer]
    processes: list[RedisServer] = field(default_factory=list)
    sentinel_master: str = "mymaster"
    password: str | None = None
    username: str | None = None

    def ours(self, **settings) -> RedisOnlineStoreConfig:
        return RedisOnlineStoreConfig(
            redis_type=self.redis_type,
            connection_string=self.connection_string,
            sentinel_master=self.sentinel_master,
            **settings,
        )

    def stock(self, **settings) -> StockConfig:
        return StockConfig(
            redis_type=self.redis_type,
            connection_string=self.connection_string,
            sentinel_master=self.sentinel_master,
            **settings,
        )

    def master_clients(self) -> list[redis.Redis]:
        return [self._client(m) for m in self.masters]

    def _client(self, server: RedisServer) -> redis.Redis:
        kwargs = {"host": server.host, "port": server.port, "username": self.username}
        kwargs["password"] = self.password
        if server.tls:
            kwargs.update(ssl=True, ssl_ca_certs=str(server.tls.ca_cert))
        return redis.Redis(**kwargs)

    def raw(self) -> redis.Redis | RedisCluster:
        """A redis-py client that routes keys like the deployment does."""
        if self.redis_type == "redis_cluster":
            node = self.masters[0]
            return RedisCluster(startup_nodes=[ClusterNode(node.host, node.port)])
        return self._client(self.masters[0])

    def flush(self) -> None:
        for client in self.master_clients():
            client.flushall()
            client.close()

    def dump(self) -> dict[bytes, dict[bytes, bytes]]:
        """Every hash of every master, by key."""
        hashes = {}
        for client in self.master_clients():
            for key in client.scan_iter(count=1000):
                hashes[key] = client.hgetall(key)
            client.close()
        return hashes

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def start_deployment(name: str, workdir: Path) -> Deployment:
    if name == "standalone":
        server = start_redis(workdir / "standalone")
        return Deployment(name, "redis", server.address, [server], [server])
    if name == "cluster":
        nodes = start_cluster(workdir / "cluster")
        seeds = ",".join(n.address for n in nodes[:2])
        return Deployment(name, "redis_cluster", seeds, nodes, list(nodes))
    if name == "tls":
        tls = make_tls_files(workdir / "certs")
        server = start_redis(workdir / "tls", password=TLS_PASSWORD, tls=tls)
        connection = (
            f"localhost:{server.port},ssl=true,ssl_ca_certs={tls.ca_cert},password={TLS_PASSWORD}"
        )
        return Deployment(name, "redis", connection, [server], [server], password=TLS_PASSWORD)
    if name == "sentinel":
        master = start_redis(workdir / "sentinel-master")
        sentinel = start_sentinel(workdir / "sentinel", master, "mymaster")
        return Deployment(name, "redis_sentinel", sentinel.address, [master], [sentinel, master])
    if name == "acl":
        server = start_redis(workdir / "acl", password="default-s3cret")
        admin = server.client()
        admin.acl_setuser(
            ACL_USER,
            enabled=True,
            passwords=[f"+{ACL_PASSWORD}"],
            keys=["*"],
            # The near cache's invalidations come on this channel.
            channels=["__redis__:invalidate"],
            commands=["+@all"],
        )
        admin.close()
        connection = f"{server.address},username={ACL_USER},password={ACL_PASSWORD}"
        return Deployment(
            name, "redis", connection, [server], [server],
            password=ACL_PASSWORD, username=ACL_USER,
        )  # fmt: skip
    if name == "unix":
        socket_path = workdir / "unix" / "redis.sock"
        server = start_redis(
            workdir / "unix", "--unixsocket", str(socket_path), "--unixsocketperm", "700"
        )
        # Port 1 answers nothing: both stores must go through the socket (redis-py's
        # unix_socket_path wins over host:port, and so does this store's).
        connection = f"127.0.0.1:1,unix_socket_path={socket_path}"
        return Deployment(name, "redis", connection, [server], [server])
    raise ValueError(f"unknown deployment {name}")

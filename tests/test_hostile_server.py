"""A server that speaks broken RESP: truncated, oversized, wrongly nested and garbage
replies. Every call ends in a clear error within the configured timeout, the process
survives, and the next call on a healthy server works."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from feast.protos.feast.types.Value_pb2 import Value

from feast_redis_rs import RedisOnlineStore

from .test_failures import VIEW, config, key

HOSTILE_REPLIES = {
    "garbage": b"?what is this\r\n",
    "truncated-then-closed": b"*2\r\n$5\r\nab",
    "longer-than-announced": b"*1\r\n$1\r\nabcdef\r\n",
    "oversized-announcement": b"*1\r\n$999999999999\r\n",
    "nested-too-deep": b"*1\r\n" * 64 + b":1\r\n",
    "not-a-number": b"*x\r\n",
    "wrong-shape": b":42\r\n",
    "too-few-fields": b"*1\r\n$1\r\na\r\n",
    "silence": b"",
}


class HostileServer:
    """Answers whatever arrives on each connection with one fixed payload, then closes
    (or keeps silent when the payload is empty)."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    connection.recv(65536)
                    if self.payload:
                        connection.sendall(self.payload)
                        connection.shutdown(socket.SHUT_WR)
                    time.sleep(1.5)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.mark.parametrize("payload", HOSTILE_REPLIES.values(), ids=HOSTILE_REPLIES.keys())
def test_broken_replies_are_clear_errors_within_the_timeout(payload, redis_server, redis_db):
    server = HostileServer(payload)
    repo = config(server.address, command_timeout_seconds=0.5, retries=0)
    try:
        started = time.monotonic()
        with pytest.raises((ConnectionError, TimeoutError, RuntimeError)) as raised:
            RedisOnlineStore().online_read(repo, VIEW, [key()], ["c_i64"])
        assert time.monotonic() - started < 2.0
        assert server.address in str(raised.value)
    finally:
        server.stop()
    healthy = config(redis_server.address)
    assert RedisOnlineStore().online_read(healthy, VIEW, [key()], ["c_i64"])[0][1] == {
        "c_i64": Value()
    }

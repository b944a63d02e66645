"""Bad configuration, unreachable and slow servers, lost connections, corrupt data:
clear errors that name the problem and the address, within the timeouts, no secrets."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
import redis.exceptions
from feast import RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from pydantic import ValidationError

import feast_redis_rs
from feast_redis_rs import RedisOnlineStore, RedisOnlineStoreConfig, encoding

from . import loan_repo
from .redis_servers import free_port, make_tls_files, start_redis

SECRET = "hunter2-secret"


def config(connection_string: str, **settings) -> RepoConfig:
    online = RedisOnlineStoreConfig(connection_string=connection_string, **settings)
    return loan_repo.repo_config(online)


def key(applicant: str = "a") -> EntityKey:
    return EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=applicant)])


VIEW = loan_repo.views(loan_repo.Path("."))[1]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"connection_string": f"localhost:6379,pasword={SECRET}"}, "unknown key 'pasword'"),
        ({"connection_string": f"localhost:6379,db=x,password={SECRET}"}, "'db' must be a whole"),
        ({"connection_string": "h:1", "password": SECRET}, "password"),
        ({"connection_string": [f"h:1,password={SECRET}"]}, "valid string"),
        ({"connection_string": "localhost:notaport"}, "part 1"),
        ({"connection_string": "a:1,b:2"}, "redis_cluster or redis_sentinel"),
        ({"redis_type": "redis_cluster", "connection_string": "a:1,db=2"}, "'db' cannot"),
        ({"redis_type": "redis_clstr"}, "redis_type"),
        ({"connection_strin": "localhost:6379"}, "connection_strin"),
        ({"key_ttl_seconds": -5}, "key_ttl_seconds"),
        ({"write_batch_size": 0}, "write_batch_size"),
        ({"command_timeout_seconds": 0}, "command_timeout_seconds"),
        ({"connection_string": f"h:1,ssl_ca_certs=/x,password={SECRET}"}, "ssl=true"),
        # What Feast leaves of `password=${FEAST_UNSET_PASSWORD}` when the variable is unset.
        (
            {"connection_string": f"h:1,username={SECRET},password=${{FEAST_UNSET_PASSWORD}}"},
            "${FEAST_UNSET_PASSWORD}, but the environment variable FEAST_UNSET_PASSWORD is not set",
        ),
    ],
)
def test_bad_config_names_the_key_and_hides_the_password(settings, named):
    with pytest.raises(ValidationError) as direct:
        RedisOnlineStoreConfig(**settings)
    # Feast's RepoConfig re-raises the store's errors with their inputs, and `feast apply`
    # prints what it raises.
    with pytest.raises(ValidationError) as through_feast:
        RepoConfig(
            project=loan_repo.PROJECT, provider="local", registry="unused.db",
            online_store={"type": "feast_redis_rs.RedisOnlineStore", **settings},
            entity_key_serialization_version=3,
        )  # fmt: skip
    for raised in (direct.value, through_feast.value):
        assert named in str(raised)
        assert SECRET not in str(raised) + repr(raised) + raised.json() + str(raised.errors())


def test_secrets_stay_out_of_reprs():
    online = RedisOnlineStoreConfig(connection_string=f"h:1,password={SECRET},ssl=true")
    assert SECRET not in repr(online) and SECRET not in str(online)
    store = RedisOnlineStore()
    store._get_client(online)
    assert SECRET not in repr(store._client)


def test_tls_settings_need_ssl(tmp_path):
    with pytest.raises(ValueError, match="tls_ca_file is set but TLS is off"):
        RedisOnlineStore()._get_client(
            RedisOnlineStoreConfig(connection_string="h:1", tls_ca_file="ca.pem")
        )
    with pytest.raises(ValueError, match="cannot read"):
        RedisOnlineStore()._get_client(
            RedisOnlineStoreConfig(connection_string="h:1,ssl=true", tls_ca_file="/nonexistent.pem")
        )


def test_unreachable_server_is_a_connection_error_naming_it():
    port = free_port()
    repo = config(f"127.0.0.1:{port},password={SECRET}", connect_timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(ConnectionError) as raised:
        RedisOnlineStore().online_read(repo, VIEW, [key()])
    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{port}" in str(raised.value)
    assert SECRET not in str(raised.value)
    # Code written for stock Feast's store catches redis-py's exceptions.
    assert isinstance(raised.value, redis.exceptions.ConnectionError)
    assert isinstance(raised.value, feast_redis_rs.RedisConnectionError)


def test_a_host_that_drops_the_connection_attempt_is_a_timeout():
    """A listener whose accept queue is full: Linux drops the SYNs, as a firewall would."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    queued = []
    try:
        for _ in range(3):
            waiting = socket.socket()
            waiting.setblocking(False)
            waiting.connect_ex(listener.getsockname())
            queued.append(waiting)
        repo = config(address, connect_timeout_seconds=0.5, command_timeout_seconds=30)
        store = RedisOnlineStore()
        with pytest.raises(TimeoutError, match=f"{address} did not answer within 500ms"):
            store.online_read(repo, VIEW, [key()])
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError) as raised:
            store.online_read(repo, VIEW, [key()])
        assert time.monotonic() - started < 1.5
        assert isinstance(raised.value, feast_redis_rs.RedisTimeoutError)
    finally:
        for waiting in queued:
            waiting.close()
        listener.close()


def test_wrong_password_is_named(redis_server, tmp_path):
    server = start_redis(tmp_path / "auth", password="right")
    try:
        with pytest.raises(ConnectionError, match="refused the credentials") as raised:
            RedisOnlineStore().online_read(
                config(f"{server.address},password=wrong"), VIEW, [key()]
            )
        assert server.address in str(raised.value)
        assert isinstance(raised.value, redis.exceptions.AuthenticationError)
    finally:
        server.stop()


def test_slow_server_times_out_then_recovers(tmp_path):
    server = start_redis(tmp_path / "slow")
    store = RedisOnlineStore()
    repo = config(server.address, command_timeout_seconds=0.5, connect_timeout_seconds=0.5)
    try:
        assert store.online_read(repo, VIEW, [key()], ["c_i64"])[0][1]["c_i64"] == Value()
        os.kill(server.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(TimeoutError) as raised:
            store.online_read(repo, VIEW, [key()], ["c_i64"])
        assert time.monotonic() - started < 3
        assert server.address in str(raised.value)
        assert isinstance(raised.value, redis.exceptions.TimeoutError)
        os.kill(server.process.pid, signal.SIGCONT)
        assert store.online_read(repo, VIEW, [key()], ["c_i64"])[0][1]["c_i64"] == Value()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def test_ctrl_c_interrupts_a_call_waiting_on_a_stalled_server(tmp_path):
    server = start_redis(tmp_path / "stalled")
    store = RedisOnlineStore()
    repo = config(server.address, command_timeout_seconds=10)
    try:
        assert store.online_read(repo, VIEW, [key()], ["c_i64"])[0][1]["c_i64"] == Value()
        os.kill(server.process.pid, signal.SIGSTOP)
        ctrl_c = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        started = time.monotonic()
        ctrl_c.start()
        with pytest.raises(KeyboardInterrupt):
            store.online_read(repo, VIEW, [key()], ["c_i64"])
        assert time.monotonic() - started < 1.0
        os.kill(server.process.pid, signal.SIGCONT)
        assert store.online_read(repo, VIEW, [key()], ["c_i64"])[0][1]["c_i64"] == Value()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def test_client_reconnects_after_a_restart(tmp_path):
    server = start_redis(tmp_path / "first")
    store = RedisOnlineStore()
    repo = config(server.address, retries=0)
    row = (key(), {"c_i64": Value(int64_val=1)}, loan_repo.BASE_TIME, None)
    store.online_write_batch(repo, VIEW, [row], None)
    server.stop()
    with pytest.raises(ConnectionError, match=server.address):
        store.online_read(repo, VIEW, [key()], ["c_i64"])
    again = start_redis(tmp_path / "second", port=server.port)
    try:
        store.online_write_batch(repo, VIEW, [row], None)
        assert store.online_read(repo, VIEW, [key()], ["c_i64"])[0][1]["c_i64"].int64_val == 1
    finally:
        again.stop()


def test_corrupt_stored_values_are_named(redis_server, redis_db, tmp_path):
    store = RedisOnlineStore()
    repo = config(redis_server.address)
    redis_key = encoding.redis_key(loan_repo.PROJECT, key())
    redis_db.hset(redis_key, encoding.mmh3_field("credit_history:c_i64"), b"\x0a\xff\xff")
    redis_db.hset(redis_key, encoding.timestamp_field("credit_history"), b"not a timestamp")
    feature_store = loan_repo.feature_store(tmp_path / "repo", repo.online_store)
    with pytest.raises(ValueError, match="feature 'c_i64' of view 'credit_history'"):
        feature_store.get_online_features(
            features=["credit_history:c_i64"], entity_rows=[{"dob_ssn": "a"}]
        )
    with pytest.raises(ValueError, match="_ts:credit_history"):
        store.online_read(repo, VIEW, [key()], ["c_i64"])
    row = (key(), {"c_i64": Value(int64_val=1)}, loan_repo.BASE_TIME, None)
    with pytest.raises(ValueError, match="_ts:credit_history"):
        store.online_write_batch(repo, VIEW, [row], None)

    redis_db.set(encoding.redis_key(loan_repo.PROJECT, key("plain")), b"not a hash")
    with pytest.raises(RuntimeError, match=f"{redis_server.address}.*WRONGTYPE") as raised:
        store.online_read(repo, VIEW, [key("plain")], ["c_i64"])
    assert 'for key b"' in str(raised.value) and f'plain{loan_repo.PROJECT}"' in str(raised.value)
    assert isinstance(raised.value, redis.exceptions.ResponseError)


def test_a_value_of_tens_of_megabytes_reads_within_the_timeout(redis_server, redis_db):
    # Its reply arrives over many reads; parsing it again at each read would take minutes.
    big = Value(bytes_val=b"x" * (64 << 20))
    redis_key = encoding.redis_key(loan_repo.PROJECT, key())
    redis_db.hset(redis_key, encoding.mmh3_field("credit_history:c_i64"), big.SerializeToString())
    repo = config(redis_server.address, command_timeout_seconds=5)
    values = RedisOnlineStore().online_read(repo, VIEW, [key()], ["c_i64"])[0][1]
    assert values["c_i64"] == big


def test_bad_entity_values_are_named(redis_server, redis_db):
    bad = EntityKey(join_keys=["dob_ssn"], entity_values=[Value(double_val=1.5)])
    with pytest.raises(ValueError, match="join key 'dob_ssn' has a value of type double_val"):
        RedisOnlineStore().online_read(config(redis_server.address), VIEW, [bad])


def test_out_of_range_entity_values_are_named(redis_server, redis_db, tmp_path):
    feature_store = loan_repo.feature_store(
        tmp_path, RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    with pytest.raises(ValueError, match="join key 'zipcode', entity row 1: 9223372036854775808"):
        feature_store.get_online_features(
            features=["zipcode_features:z_i64"], entity_rows=[{"zipcode": 1}, {"zipcode": 2**63}]
        )


def test_tls_verifies_certificates_by_default(tmp_path):
    tls = make_tls_files(tmp_path / "certs", names="DNS:elsewhere.example")
    server = start_redis(tmp_path / "tls", tls=tls)
    port = server.port
    # A refused certificate cannot be accepted on retry: it fails at once (retrying would
    # take 3 s here), naming the address, the reason and what to check.
    untrusted = config(f"localhost:{port},ssl=true", retries=3, retry_backoff_seconds=1.0)
    wrong_name = config(
        f"localhost:{port},ssl=true,ssl_ca_certs={tls.ca_cert}",
        retries=3,
        retry_backoff_seconds=1.0,
    )
    try:
        for refused in (untrusted, wrong_name):
            started = time.monotonic()
            with pytest.raises(ConnectionError, match=f"localhost:{port}") as raised:
                RedisOnlineStore().online_read(refused, VIEW, [key()])
            assert time.monotonic() - started < 1.0
            assert "invalid peer certificate" in str(raised.value)
            assert "ssl_ca_certs" in str(raised.value)
        for trusted in (
            config(
                f"localhost:{port},ssl=true,ssl_ca_certs={tls.ca_cert}", tls_check_hostname=False
            ),
            config(
                f"localhost:{port},ssl=true,ssl_check_hostname=false", tls_ca_file=str(tls.ca_cert)
            ),
            config(f"localhost:{port},ssl=true,ssl_cert_reqs=none"),
        ):
            assert RedisOnlineStore().online_read(trusted, VIEW, [key()], ["c_i64"])[0][1] == {
                "c_i64": Value()
            }
    finally:
        server.stop()


def test_tls_client_certificates(tmp_path):
    """A server that requires a client certificate: given in the connection string or as
    the config's keys it is accepted; without it the connection is refused, naming the
    address; a certificate without its key is a configuration error."""
    tls = make_tls_files(tmp_path / "certs", client=True)
    server = start_redis(tmp_path / "mtls", tls=tls)
    base = f"localhost:{server.port},ssl=true,ssl_ca_certs={tls.ca_cert}"
    try:
        for accepted in (
            config(f"{base},ssl_certfile={tls.client_cert},ssl_keyfile={tls.client_key}"),
            config(base, tls_cert_file=str(tls.client_cert), tls_key_file=str(tls.client_key)),
        ):
            read = RedisOnlineStore().online_read(accepted, VIEW, [key()], ["c_i64"])
            assert read[0][1] == {"c_i64": Value()}
        with pytest.raises(ConnectionError, match=f"localhost:{server.port}"):
            RedisOnlineStore().online_read(config(base, retries=0), VIEW, [key()], ["c_i64"])
        with pytest.raises(ValueError, match="ssl_certfile/ssl_keyfile"):
            only_cert = config(f"{base},ssl_certfile={tls.client_cert}")
            RedisOnlineStore().online_read(only_cert, VIEW, [key()], ["c_i64"])
    finally:
        server.stop()

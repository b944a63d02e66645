"""gRPC on ``feast-redis-rs serve``'s port (``feast-redis-rs listen``) against stock
``feast listen`` on the same repo and Redis: ``GrpcFeatureServer.GetOnlineFeatures``
answers equal as messages (read natively), Feast's servicer's statuses for what it
answers, ``ServingService``, health and reflection."""

from __future__ import annotations

import queue
import re
import signal
import socket
import ssl
import time

import grpc
import pytest
from feast.protos.feast.serving import GrpcServer_pb2_grpc, ServingService_pb2
from feast.protos.feast.serving.ServingService_pb2_grpc import ServingServiceStub
from feast.protos.feast.types.Value_pb2 import RepeatedValue
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from . import loan_repo
from .feature_servers import ours_and_stock_yamls, start_server, start_stock_listen
from .redis_servers import make_tls_files
from .test_server import comparable_refs, fallbacks, served_repo  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def channels(redis_server, served_repo):  # noqa: F811
    """Ours (``serve --type grpc``, its HTTP beside it for /metrics) and stock
    ``feast listen``'s channels."""
    repo = served_repo
    ours_yaml, stock_yaml = ours_and_stock_yamls(repo, redis_server.address, "-grpc")
    ours = start_server("feast-redis-rs", repo, ours_yaml, "--type", "grpc", "--metrics")
    stock = start_stock_listen(repo, stock_yaml)
    ours_channel = grpc.insecure_channel(ours.url.removeprefix("http://"))
    yield ours, ours_channel, stock.channel
    ours_channel.close()
    ours.stop()
    stock.stop()


def repeated(values: list) -> RepeatedValue:
    kind = "int64_val" if isinstance(values[0], int) else "string_val"
    return RepeatedValue(val=[ValueProto(**{kind: v}) for v in values])


def online_request(**kind) -> ServingService_pb2.GetOnlineFeaturesRequest:
    rows = loan_repo.entity_rows()
    request = ServingService_pb2.GetOnlineFeaturesRequest(**kind)
    request.entities["zipcode"].CopyFrom(repeated([r["zipcode"] for r in rows]))
    request.entities["dob_ssn"].CopyFrom(repeated([r["dob_ssn"] for r in rows]))
    return request


def by_name(response: ServingService_pb2.GetOnlineFeaturesResponse) -> dict[str, bytes]:
    """Each column, serialized, by its name: stock orders a view's features as a Python
    set iterates them, and entity columns as its map does."""
    names = list(response.metadata.feature_names.val)
    columns = zip(names, response.results, strict=True)
    return {name: column.SerializeToString() for name, column in columns}


def feature_list(refs: list[str]) -> ServingService_pb2.FeatureList:
    return ServingService_pb2.FeatureList(val=refs)


@pytest.mark.parametrize(
    "request_kind",
    [
        {"features": feature_list(loan_repo.feature_refs()), "full_feature_names": True},
        {"features": feature_list(loan_repo.feature_refs())},
        {"feature_service": "comparable", "full_feature_names": True},
    ],
    ids=["full-names", "short-names", "feature-service"],
)
def test_get_online_features_equals_stock_feast_listen(channels, request_kind):
    ours, ours_channel, stock_channel = channels
    request = online_request(**request_kind)
    before = fallbacks(ours)
    answer = GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel).GetOnlineFeatures(request)
    expected = GrpcServer_pb2_grpc.GrpcFeatureServerStub(stock_channel).GetOnlineFeatures(request)
    assert fallbacks(ours) == before, "the request must be answered natively"
    assert by_name(answer) == by_name(expected)
    # The Go and Java servers' contract answers the same.
    serving = ServingServiceStub(ours_channel).GetOnlineFeatures(request)
    assert by_name(serving) == by_name(expected)


def test_absent_and_mistyped_entities(channels):
    _, ours_channel, stock_channel = channels
    request = ServingService_pb2.GetOnlineFeaturesRequest(
        features=feature_list(["credit_history:c_f64", "credit_history:c_text_list"])
    )
    request.entities["dob_ssn"].CopyFrom(
        repeated([*loan_repo.APPLICANTS[:3], "nobody", loan_repo.APPLICANTS[0]])
    )
    answer = GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel).GetOnlineFeatures(request)
    expected = GrpcServer_pb2_grpc.GrpcFeatureServerStub(stock_channel).GetOnlineFeatures(request)
    assert by_name(answer) == by_name(expected)


@pytest.mark.parametrize(
    "request_kind",
    [{"feature_service": "no_such_service"}, {"features": feature_list(["no_view:x"])}],
    ids=["unknown-service", "unknown-view"],
)
def test_errors_carry_feasts_status(channels, request_kind):
    _, ours_channel, stock_channel = channels
    request = online_request(**request_kind)
    failures = []
    for channel in (ours_channel, stock_channel):
        with pytest.raises(grpc.RpcError) as raised:
            GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel).GetOnlineFeatures(request)
        failures.append((raised.value.code(), raised.value.details()))
    assert failures[0] == failures[1]
    assert failures[0][0] in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def test_health_and_serving_info(channels):
    _, ours_channel, _ = channels
    health = health_pb2_grpc.HealthStub(ours_channel)
    for service in ("", "GrpcFeatureServer", "feast.serving.ServingService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as raised:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    import feast

    info = ServingServiceStub(ours_channel).GetFeastServingInfo(
        ServingService_pb2.GetFeastServingInfoRequest()
    )
    assert info.version == feast.__version__


def test_reflection_serves_feasts_own_descriptors(channels):
    """The services listed, and each file as the installed Feast compiled it."""
    _, ours_channel, _ = channels
    stub = reflection_pb2_grpc.ServerReflectionStub(ours_channel)

    def ask(**question) -> reflection_pb2.ServerReflectionResponse:
        return next(iter(stub.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(**question)
        ]))))  # fmt: skip

    listed = {s.name for s in ask(list_services="").list_services_response.service}
    assert {"GrpcFeatureServer", "feast.serving.ServingService", "grpc.health.v1.Health"} <= listed
    from feast.protos.feast.serving import GrpcServer_pb2

    for module in (GrpcServer_pb2, ServingService_pb2):
        served = descriptor_pb2.FileDescriptorProto.FromString(
            ask(
                file_by_filename=module.DESCRIPTOR.name
            ).file_descriptor_response.file_descriptor_proto[0]
        )
        expected = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert comparable(served) == comparable(expected), module.DESCRIPTOR.name


def comparable(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """``file`` without what compilers differ in and no client reads: options, source
    info, the JSON names protoc leaves out of Python's descriptors."""
    file.ClearField("options")
    file.ClearField("source_code_info")
    for service in file.service:
        for method in service.method:
            method.ClearField("options")
    messages = list(file.message_type)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    return str(file).splitlines()


def test_unknown_services_are_unimplemented(channels):
    _, ours_channel, _ = channels
    call = ours_channel.unary_unary("/no.such.Service/Method")
    with pytest.raises(grpc.RpcError) as raised:
        call(b"", timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_http_still_answers_beside_grpc(channels):
    ours, _, _ = channels
    status, answer = ours.post(
        "/get-online-features",
        {"features": ["credit_history:c_f64"], "entities": {"dob_ssn": loan_repo.APPLICANTS[:2]}},
    )
    assert status == 200, answer


def test_writes_go_through_feasts_servicer_with_its_statuses(channels, redis_server):
    """WriteToOnlineStore and Push are Feast's servicer's: the same status and details as
    stock's, and the same bytes in Redis."""
    _, ours_channel, stock_channel = channels
    from feast.protos.feast.serving import GrpcServer_pb2

    def write(channel, applicant: str):
        request = GrpcServer_pb2.WriteToOnlineStoreRequest(
            feature_view_name="http_view", allow_registry_cache=False
        )
        request.typed_features["dob_ssn"].string_val = applicant
        request.typed_features["h_count"].int64_val = 41
        request.typed_features["h_text"].string_val = "written over gRPC"
        request.typed_features["event_timestamp"].unix_timestamp_val = 1_700_000_000
        return GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel).WriteToOnlineStore(request)

    client = redis_server.client()
    stored = []
    for channel in (stock_channel, ours_channel):
        before = set(client.keys())
        assert write(channel, "grpc-writer").status is True
        (written,) = set(client.keys()) - before
        stored.append(client.hgetall(written))
        client.delete(written)
    assert stored[0] == stored[1]

    failures = []
    for channel in (ours_channel, stock_channel):
        request = GrpcServer_pb2.PushRequest(stream_feature_view="no_such_source", to="online")
        request.features["dob_ssn"] = "x"
        with pytest.raises(grpc.RpcError) as raised:
            GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel).Push(request)
        failures.append((raised.value.code(), raised.value.details()))
    assert failures[0] == failures[1]
    assert failures[0][0] == grpc.StatusCode.INVALID_ARGUMENT


def test_a_message_over_the_body_limit_is_resource_exhausted(channels):
    _, ours_channel, _ = channels
    request = ServingService_pb2.GetOnlineFeaturesRequest(
        features=feature_list(["credit_history:c_f64"])
    )
    request.entities["dob_ssn"].CopyFrom(repeated(["x" * (17 << 20)]))
    with pytest.raises(grpc.RpcError) as raised:
        GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel).GetOnlineFeatures(
            request, timeout=30
        )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-body-bytes" in raised.value.details()


def test_metrics_count_calls_by_method_and_code(channels):
    ours, ours_channel, _ = channels
    stub = GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel)
    request = ServingService_pb2.GetOnlineFeaturesRequest(
        features=feature_list(["credit_history:c_f64"])
    )
    request.entities["dob_ssn"].CopyFrom(repeated(loan_repo.APPLICANTS[:2]))
    stub.GetOnlineFeatures(request)
    with pytest.raises(grpc.RpcError):
        stub.GetOnlineFeatures(online_request(feature_service="no_such_service"))
    with pytest.raises(grpc.RpcError):
        ours_channel.unary_unary("/no.such.Service/Method")(b"", timeout=10)
    status, text = ours.request("GET", "/metrics")
    assert status == 200
    counted = dict(
        re.findall(r"^feast_redis_rs_requests_total\{(.*)\} (\d+)$", text.decode(), re.M)
    )
    method = 'endpoint="/GrpcFeatureServer/GetOnlineFeatures",status="200"'
    assert int(counted[f'{method},grpc_code="Ok"']) >= 1
    assert int(counted[f'{method},grpc_code="Internal"']) >= 1
    # A client's made-up paths add no series of their own.
    assert int(counted['endpoint="other",status="200",grpc_code="Unimplemented"']) >= 1
    assert not any("no.such" in labels for labels in counted)


def test_one_reflection_stream_answers_request_after_request(channels):
    """grpcurl's reflection client keeps one stream open and asks on it one question at
    a time: each is answered as it comes, not when the stream ends."""
    _, ours_channel, _ = channels
    asked: queue.Queue = queue.Queue()
    answers = reflection_pb2_grpc.ServerReflectionStub(ours_channel).ServerReflectionInfo(
        iter(asked.get, None), timeout=20
    )
    asked.put(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = next(answers)
    services = {service.name for service in listed.list_services_response.service}
    assert {"GrpcFeatureServer", "feast.serving.ServingService"} <= services
    started = time.monotonic()
    asked.put(reflection_pb2.ServerReflectionRequest(file_containing_symbol="GrpcFeatureServer"))
    (file,) = next(answers).file_descriptor_response.file_descriptor_proto
    assert descriptor_pb2.FileDescriptorProto.FromString(file).name.endswith("GrpcServer.proto")
    assert time.monotonic() - started < 5
    asked.put(None)
    assert list(answers) == []


def watch(channel: grpc.Channel, service: str = ""):
    return health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=service), timeout=60
    )


def test_streaming_calls_are_bounded_in_number_and_time(served_repo, redis_server):  # noqa: F811
    """Health Watch streams as long as its client wants: the server holds at most as
    many as --worker-connections, each for --stream-timeout, and the connection a
    watch is on stays open while it streams (it is not idle)."""
    ours_yaml, _ = ours_and_stock_yamls(served_repo, redis_server.address, "-streams")
    server = start_server(
        "feast-redis-rs", served_repo, ours_yaml, "--metrics", "--worker-connections", "3",
        "--stream-timeout", "3", "--keep-alive-timeout", "1",
    )  # fmt: skip
    channel = grpc.insecure_channel(server.url.removeprefix("http://"))
    try:
        watches = [watch(channel) for _ in range(3)]
        for stream in watches:
            assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            next(watch(channel))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--worker-connections" in raised.value.details()
        # Past the keep-alive timeout, the watches still stream: then each ends at its
        # lifetime, telling the client to call again.
        for stream in watches:
            with pytest.raises(grpc.RpcError) as raised:
                next(stream)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "--stream-timeout" in raised.value.details()
        assert 2 < time.monotonic() - started < 10
        # Their places are free again.
        assert next(watch(channel)).status == health_pb2.HealthCheckResponse.SERVING
        status, text = server.request("GET", "/metrics")
        assert status == 200
        assert 'feast_redis_rs_requests_refused_total{limit="streaming_calls"} 1' in text.decode()
    finally:
        channel.close()
        server.stop()


def test_shutdown_ends_watches_after_not_serving(served_repo, redis_server):  # noqa: F811
    ours_yaml, _ = ours_and_stock_yamls(served_repo, redis_server.address, "-shutdown")
    server = start_server("feast-redis-rs", served_repo, ours_yaml, "--shutdown-timeout", "20")
    channel = grpc.insecure_channel(server.url.removeprefix("http://"))
    try:
        stream = watch(channel, "GrpcFeatureServer")
        assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert next(stream).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as raised:
            next(stream)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in raised.value.details()
        assert server.process.wait(timeout=15) == 0
        # Well within the grace: nothing waited for the watch.
        assert time.monotonic() - started < 10
    finally:
        channel.close()
        server.stop()


def test_shutdown_answers_unary_calls_in_flight_on_the_connection(served_repo, redis_server):  # noqa: F811
    ours_yaml, _ = ours_and_stock_yamls(served_repo, redis_server.address, "-in-flight")
    server = start_server("feast-redis-rs", served_repo, ours_yaml, "--shutdown-timeout", "20")
    channel = grpc.insecure_channel(server.url.removeprefix("http://"))
    stub = GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel)
    request = online_request(features=feature_list(loan_repo.feature_refs()))
    try:
        expected = by_name(stub.GetOnlineFeatures(request))
        # Redis holds every command for 1.5 s: the calls below, all streams of the one
        # connection, are in flight when the signal comes.
        redis_server.client().execute_command("CLIENT", "PAUSE", "1500", "ALL")
        calls = [stub.GetOnlineFeatures.future(request) for _ in range(4)]
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        assert [by_name(call.result(timeout=30)) for call in calls] == [expected] * 4
        assert server.process.wait(timeout=30) == 0
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetOnlineFeatures(request, timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()
        server.stop()


def test_grpc_over_tls_by_alpn(served_repo, redis_server, channels, tmp_path):  # noqa: F811
    """With --cert/--key, ALPN offers h2 beside http/1.1: gRPC over TLS answers as the
    plain-text port does, and HTTPS still answers HTTP/1.1 on the same port."""
    _, plain_channel, _ = channels
    tls = make_tls_files(tmp_path / "tls")
    ours_yaml, _ = ours_and_stock_yamls(served_repo, redis_server.address, "-tls")
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    server = start_server(
        "feast-redis-rs", served_repo, ours_yaml,
        "--cert", str(tls.server_cert), "--key", str(tls.server_key), ssl_context=context,
    )  # fmt: skip
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.ca_cert.read_bytes())
    channel = grpc.secure_channel(server.url.removeprefix("https://"), credentials)
    try:
        request = online_request(features=feature_list(comparable_refs()))
        answer = GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel).GetOnlineFeatures(
            request, timeout=30
        )
        plain = GrpcServer_pb2_grpc.GrpcFeatureServerStub(plain_channel).GetOnlineFeatures(request)
        assert by_name(answer) == by_name(plain)
        assert server.request("GET", "/health")[0] == 200
    finally:
        channel.close()
        server.stop()


def test_many_calls_on_one_connection(channels):
    """300 calls at once on one channel (one HTTP/2 connection, at most 100 streams in
    service, more than --max-concurrent-reads lets wait): each is answered with its own
    rows, as when asked alone, or shed at once with UNAVAILABLE naming the limit, and
    then answered when called again."""
    _, ours_channel, _ = channels
    stub = GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel)

    def request(applicant: str) -> ServingService_pb2.GetOnlineFeaturesRequest:
        asked = ServingService_pb2.GetOnlineFeaturesRequest(
            features=feature_list(["credit_history:c_f64"])
        )
        asked.entities["dob_ssn"].CopyFrom(repeated([applicant]))
        return asked

    applicants = loan_repo.APPLICANTS
    alone = {applicant: stub.GetOnlineFeatures(request(applicant)) for applicant in applicants}
    asked = [applicants[index % len(applicants)] for index in range(300)]
    calls = [stub.GetOnlineFeatures.future(request(applicant), timeout=60) for applicant in asked]
    shed = []
    for applicant, call in zip(asked, calls, strict=True):
        if call.exception() is None:
            assert call.result() == alone[applicant]
            continue
        assert call.code() == grpc.StatusCode.UNAVAILABLE, call.details()
        assert "--max-concurrent-reads" in call.details()
        shed.append(applicant)
    assert len(shed) < len(asked)
    for applicant in shed:
        assert stub.GetOnlineFeatures(request(applicant)) == alone[applicant]


def test_rapid_resets_end_the_connection_and_spare_the_others(channels):
    """A client opening streams and resetting them at once (the HTTP/2 "rapid reset"
    attack) has its connection ended with GOAWAY; other clients are answered."""
    import h2.connection
    import h2.events

    ours, ours_channel, _ = channels
    host, port = ours.url.removeprefix("http://").split(":")
    attacker = h2.connection.H2Connection()
    attacker.initiate_connection()
    for _ in range(500):
        stream = attacker.get_next_available_stream_id()
        attacker.send_headers(
            stream,
            [(":method", "POST"), (":scheme", "http"), (":authority", host),
             (":path", "/GrpcFeatureServer/GetOnlineFeatures"),
             ("content-type", "application/grpc"), ("te", "trailers")],
        )  # fmt: skip
        attacker.reset_stream(stream)
    ended = None
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(attacker.data_to_send())
        deadline = time.monotonic() + 10
        while ended is None and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            for event in attacker.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    ended = event
    assert ended is not None, "the server must end the connection with GOAWAY"
    assert ended.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    request = ServingService_pb2.GetOnlineFeaturesRequest(
        features=feature_list(["credit_history:c_f64"])
    )
    request.entities["dob_ssn"].CopyFrom(repeated(loan_repo.APPLICANTS[:1]))
    assert GrpcServer_pb2_grpc.GrpcFeatureServerStub(ours_channel).GetOnlineFeatures(request)

"""``POST /push`` and ``POST /write-to-online-store`` written natively by
``feast-redis-rs serve``: the same answer as stock ``feast serve`` and the same bytes in
Redis (each server's writes compared on an emptied Redis), with Feast's app never
asked; what the native path does not take (a null, ints for a float feature, an offline
push, a view whose source maps fields, a pre-computed service's view, a bad request)
goes to Feast's app and gets stock's answer and bytes."""

from __future__ import annotations

import inspect
import json
from datetime import timedelta

import pytest
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.types import Bool, Float64, Int64, String

from feast_redis_rs import RedisOnlineStoreConfig

from . import loan_repo
from .feature_servers import columns, ours_and_stock_servers, ours_and_stock_yamls, start_server
from .test_server import fallbacks


def push_source(name: str, repo, **batch) -> PushSource:
    return PushSource(
        name=name,
        batch_source=FileSource(
            path=str(repo / f"{name}.parquet"), timestamp_field="event_timestamp", **batch
        ),
    )


def pushed_view(name: str, entity: Entity, source: PushSource, schema: list[Field]) -> FeatureView:
    return FeatureView(
        name=name, entities=[entity], ttl=timedelta(days=3650), schema=schema, source=source
    )


# Pre-computed services (Feast 0.64 on): a push to one of their views is Feast's.
PRECOMPUTED = "precompute_online" in inspect.signature(FeatureService.__init__).parameters


@pytest.fixture(scope="module")
def push_repo(redis_server, tmp_path_factory):
    """The loan repo with push sources: one feeding two views (its batch source with a
    created-time column), one keyed by a string entity, one whose batch source maps a
    field, one feeding a pre-computed service's view."""
    repo = tmp_path_factory.mktemp("push-repo")
    store = loan_repo.feature_store(
        repo, RedisOnlineStoreConfig(connection_string=redis_server.address)
    )
    zipcode, dob_ssn = loan_repo.entities()
    zipcodes = push_source("zipcode_push", repo, created_timestamp_column="created")
    applicants = push_source("applicant_push", repo)
    mapped = push_source("mapped_push", repo, field_mapping={"given": "m_i64"})
    precomputed = push_source("precomputed_push", repo)
    full = [
        Field(name="p_i64", dtype=Int64),
        Field(name="p_f64", dtype=Float64),
        Field(name="p_text", dtype=String),
        Field(name="p_flag", dtype=Bool),
    ]
    precomputed_view = pushed_view(
        "precomputed_view", zipcode, precomputed, [Field(name="v_i64", dtype=Int64)]
    )
    store.apply(
        [
            pushed_view("pushed_zipcodes", zipcode, zipcodes, full),
            pushed_view("pushed_zipcodes_too", zipcode, zipcodes, [full[0], full[2]]),
            pushed_view("pushed_applicants", dob_ssn, applicants, full),
            pushed_view("mapped_view", zipcode, mapped, [Field(name="m_i64", dtype=Int64)]),
            *(
                [
                    precomputed_view,
                    FeatureService(
                        name="precomputed_service",
                        features=[precomputed_view],
                        precompute_online=True,
                    ),
                ]
                if PRECOMPUTED
                else []
            ),
        ]
    )
    return repo


@pytest.fixture(scope="module")
def servers(redis_server, push_repo):
    with ours_and_stock_servers(push_repo, redis_server.address) as servers:
        yield servers


def stored(redis_server) -> dict[bytes, dict[bytes, bytes]]:
    client = redis_server.client()
    return {key: client.hgetall(key) for key in client.keys("*")}


def written_by_each(redis_server, servers, path: str, *bodies: dict):
    """Posts ``bodies`` in turn to ours then, on an emptied Redis, to stock; returns both
    servers' answers (status, raw body) and what each left in Redis."""
    results = []
    for server in servers:
        redis_server.client().flushall()
        answers = [server.request("POST", path, body) for body in bodies]
        results.append((answers, stored(redis_server)))
    return results


def zipcode_rows(**columns) -> dict:
    rows = {
        "zipcode": [76100, 76101, 76100],
        "p_i64": [1, -(2**40), 3],
        "p_f64": [0.5, 1, -2.25e-3],
        "p_text": ["Fört Wörth", "", "\u2603"],
        "p_flag": [True, False, True],
        "event_timestamp": ["2026-01-02T03:04:05.123456Z"] * 2 + ["2026-01-02T03:04:06.000001Z"],
        "created": ["2026-01-03 00:00:00"] * 3,
        "unused": ["a column no view has", "b", "c"],
    }
    rows.update(columns)
    return rows


def push(source: str, df: dict, **extra) -> dict:
    return {"push_source_name": source, "df": df, **extra}


NATIVE = {
    "two-views": ("/push", [push("zipcode_push", zipcode_rows())]),
    "string-entity": (
        "/push",
        [
            push(
                "applicant_push",
                {
                    **{k: v for k, v in zipcode_rows().items() if k not in ("zipcode", "created")},
                    "dob_ssn": loan_repo.APPLICANTS[:3],
                    "event_timestamp": ["2026-01-02 03:04:05+05:30"] * 3,
                },
            )
        ],
    ),
    "older-after-newer": (
        "/push",
        [
            push("zipcode_push", zipcode_rows()),
            push("zipcode_push", zipcode_rows(p_i64=[7, 8, 9], event_timestamp=["2025-12-31"] * 3)),
            push("zipcode_push", zipcode_rows(p_i64=[4, 5, 6], event_timestamp=["2027-01-01"] * 3)),
        ],
    ),
    "write-to-online-store": (
        "/write-to-online-store",
        [{"feature_view_name": "pushed_zipcodes_too", "df": zipcode_rows()}],
    ),
}


@pytest.mark.parametrize("case", NATIVE, ids=list(NATIVE))
def test_pushes_are_written_natively_as_stock_writes_them(redis_server, servers, case):
    path, bodies = NATIVE[case]
    ours, _ = servers
    before = fallbacks(ours)
    (ours_answers, ours_stored), (stock_answers, stock_stored) = written_by_each(
        redis_server, servers, path, *bodies
    )
    assert fallbacks(ours) == before, "the writes must be native"
    assert ours_answers == stock_answers
    assert {status for status, _ in ours_answers} == {200}
    assert ours_stored and ours_stored == stock_stored


def test_what_was_pushed_is_read_as_stock_reads_it(redis_server, servers):
    read = {
        "features": ["pushed_zipcodes:p_i64", "pushed_zipcodes:p_text", "pushed_zipcodes:p_flag"],
        "entities": {"zipcode": [76100, 76101, 76102]},
    }
    answers = []
    for server in servers:
        redis_server.client().flushall()
        assert server.request("POST", "/push", push("zipcode_push", zipcode_rows()))[0] == 200
        answers.append(server.post("/get-online-features", read))
    (status, ours_read), (stock_status, stock_read) = answers
    assert (status, stock_status) == (200, 200)
    assert columns(ours_read) == columns(stock_read)
    assert columns(ours_read)["p_i64"]["values"] == [3, -(2**40), None]


LEFT_TO_FEAST = {
    "null": push("zipcode_push", zipcode_rows(p_text=["a", None, "c"])),
    "ints-for-a-float": push("zipcode_push", zipcode_rows(p_f64=[1, 2, 3])),
    "times-of-two-shapes": push(
        "zipcode_push",
        zipcode_rows(event_timestamp=["2026-01-02", "2026-01-02 00:00:01"] * 1 + ["2026-01-03"]),
    ),
    "registry-not-cached": push("zipcode_push", zipcode_rows(), allow_registry_cache=False),
    "mapped-field": push(
        "mapped_push", {"zipcode": [76100], "given": [1], "event_timestamp": ["2026-01-01"]}
    ),
    "unknown-source": push("no_such_push", zipcode_rows()),
    # Missing for both views: Feast's push goes through its views in the order of a set,
    # and would write a view that does not need the column before or after failing.
    "column-missing": push(
        "zipcode_push", {k: v for k, v in zipcode_rows().items() if k != "p_text"}
    ),
    "created-missing": push(
        "zipcode_push", {k: v for k, v in zipcode_rows().items() if k != "created"}
    ),
    "unequal-columns": push("zipcode_push", zipcode_rows(p_i64=[1, 2])),
    "no-rows": push("zipcode_push", {k: [] for k in zipcode_rows()}),
    "not-a-push": {"df": zipcode_rows()},
}
if PRECOMPUTED:
    LEFT_TO_FEAST["precomputed-service"] = push(
        "precomputed_push", {"zipcode": [76100], "v_i64": [1], "event_timestamp": ["2026-01-01"]}
    )


@pytest.mark.parametrize("case", LEFT_TO_FEAST, ids=list(LEFT_TO_FEAST))
def test_what_the_native_path_does_not_take_gets_stocks_answer_and_bytes(
    redis_server, servers, case
):
    ours, _ = servers
    before = fallbacks(ours)
    (ours_answers, ours_stored), (stock_answers, stock_stored) = written_by_each(
        redis_server, servers, "/push", LEFT_TO_FEAST[case]
    )
    assert fallbacks(ours) == before + 1, "Feast's app must answer it"
    assert [status for status, _ in ours_answers] == [status for status, _ in stock_answers]
    if ours_answers[0][0] == 200:
        assert ours_answers == stock_answers
    assert ours_stored == stock_stored


def test_a_push_past_the_memory_budget_is_shed_and_writes_nothing(redis_server, push_repo):
    """A push holds its columns, their batch and its encoded rows (a dozen times its
    body) within ``--max-buffered-mb``: past it, 503 with ``Retry-After``."""
    ours_yaml, _ = ours_and_stock_yamls(push_repo, redis_server.address)
    ours = start_server(
        "feast-redis-rs",
        push_repo,
        ours_yaml,
        "--metrics",
        "--max-buffered-mb",
        "1",
        "--max-body-bytes",
        "500000",
    )
    try:
        rows = 2000
        df = zipcode_rows()
        df = {name: (values * rows)[:rows] for name, values in df.items()}
        df["zipcode"] = list(range(rows))
        body = json.dumps(push("zipcode_push", df)).encode()
        assert 100_000 < len(body) < 1024 * 1024
        redis_server.client().flushall()
        before = fallbacks(ours)
        status, answer = ours.request("POST", "/push", raw=body)
        assert status == 503, answer
        assert b"--max-buffered-mb" in answer
        assert fallbacks(ours) == before
        assert redis_server.client().dbsize() == 0
        # A small push still fits.
        assert ours.request("POST", "/push", push("zipcode_push", zipcode_rows()))[0] == 200
        assert redis_server.client().dbsize() == 2
    finally:
        ours.stop()

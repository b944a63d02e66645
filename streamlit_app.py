"""The loan form: an application in the sidebar, the applicant's features read online
from Redis through Feast, the time that read took, the credit model's decision, and SHAP
explanations of it. "Compare read paths" times the same read through stock Feast's Redis
store on the same Redis, and over HTTP through the feature servers that are running
(`make serve`, `make serve-stock`).

    make app        (or: streamlit run streamlit_app.py)
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

import feast_redis_rs
from credit_model import (
    CREDIT_FEATURES,
    FEAST_FEATURES,
    MODEL_FEATURES,
    ZIPCODE_FEATURES,
    CreditScoringModel,
    entity_rows_of,
)
from loan_demo import read_paths
from run import LOAN_REQUEST

if TYPE_CHECKING:
    import altair as alt
    import shap
    from feast import FeatureStore

# Reads per path when comparing, and how many of a session's reads its median covers.
COMPARE_READS = 100
RECENT_READS = 50

HOME_OWNERSHIP = ["RENT", "MORTGAGE", "OWN", "OTHER"]
LOAN_INTENT = [
    "PERSONAL", "EDUCATION", "MEDICAL", "VENTURE", "HOMEIMPROVEMENT", "DEBTCONSOLIDATION",
]  # fmt: skip


@st.cache_resource
def load_model() -> CreditScoringModel:
    model = CreditScoringModel()
    if not model.trained:
        raise RuntimeError("no trained model: run `make demo` (or `python run.py`) first")
    # The first read of a FeatureStore loads the registry and plans the request (tens of
    # ms), as a service does once when it starts; the page times the reads after it.
    model.online_features(entity_rows_of(LOAN_REQUEST))
    return model


@st.cache_resource
def stock_store(_model: CreditScoringModel) -> FeatureStore:
    return read_paths.stock_feature_store(_model.store)


def plotting():
    """SHAP and pyplot (drawing off-screen), imported on first use: 2 s of imports
    that the decision does not wait for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    return shap, plt


@st.cache_resource
def explainer(_model: CreditScoringModel) -> shap.TreeExplainer:
    shap, _ = plotting()
    return shap.TreeExplainer(_model.classifier)


def application_form() -> dict:
    sample = {name: values[0] for name, values in LOAN_REQUEST.items()}
    sidebar = st.sidebar
    sidebar.header("Loan application")
    return {
        "zipcode": [int(sidebar.number_input("Zipcode", 501, 99_999, sample["zipcode"]))],
        "dob_ssn": [sidebar.text_input("Date of birth and SSN (YYYYMMDD_NNNN)", sample["dob_ssn"])],
        "person_age": [int(sidebar.number_input("Age", 18, 150, sample["person_age"]))],
        "person_income": [
            int(sidebar.number_input("Yearly income", 0, 10_000_000, sample["person_income"]))
        ],
        "person_home_ownership": [
            sidebar.selectbox(
                "Home ownership",
                HOME_OWNERSHIP,
                HOME_OWNERSHIP.index(sample["person_home_ownership"]),
            )
        ],
        "person_emp_length": [
            float(
                sidebar.number_input(
                    "Employment length (years)", 0.0, 150.0, sample["person_emp_length"]
                )
            )
        ],
        "loan_intent": [
            sidebar.selectbox("Loan intent", LOAN_INTENT, LOAN_INTENT.index(sample["loan_intent"]))
        ],
        "loan_amnt": [
            int(sidebar.number_input("Loan amount", 100, 1_000_000, sample["loan_amnt"]))
        ],
        "loan_int_rate": [
            float(sidebar.number_input("Interest rate (%)", 0.0, 50.0, sample["loan_int_rate"]))
        ],
    }


def comparison_form() -> tuple[bool, dict[str, str]]:
    """Whether to compare read paths, and the feature servers' URLs to try."""
    sidebar = st.sidebar
    sidebar.header("Latency")
    compare = sidebar.toggle(
        "Compare read paths",
        help=f"{COMPARE_READS} reads of the applicant's features through each path: "
        "feast-redis-rs, stock Feast's Redis store on the same Redis, and the feature "
        "servers below when they are running",
    )
    urls = {name: sidebar.text_input(name, url) for name, url in read_paths.server_urls().items()}
    return compare, urls


@st.cache_resource
def plot_lock() -> threading.Lock:
    """One lock for every session (a module-level lock would be new on each rerun)."""
    return threading.Lock()


def show_shap_plot(place, explanation: shap.Explanation, plot) -> None:
    _, plt = plotting()
    # SHAP draws on pyplot's global figure and matplotlib's mathtext parser is not
    # thread-safe: Streamlit runs sessions (and a rerun overlapping a stopped run) in
    # threads, so drawing is serialized.
    with plot_lock():
        plt.close("all")
        plot(explanation, show=False)
        figure = plt.gcf()
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        place.pyplot(figure)
        plt.close(figure)


def show_read_latency(seconds: float) -> None:
    """This read's time, and the median of the session's recent reads."""
    recent = st.session_state.setdefault("read_ms", [])
    recent.append(seconds * 1000)
    del recent[:-RECENT_READS]
    this_read, median = st.columns(2)
    this_read.metric(
        "Online read (feast-redis-rs)",
        f"{seconds * 1000:.2f} ms",
        help="Feast's get_online_features(...).to_dict() of this applicant's "
        f"{len(FEAST_FEATURES)} features, in this process: one read as the page reruns "
        "(while the browser redraws); Compare read paths times 100 in a row",
    )
    median.metric(
        f"Median of your last {len(recent)} reads", f"{pd.Series(recent).median():.2f} ms"
    )
    if feast_redis_rs.BUILD_PROFILE != "release":
        st.caption(
            f"feast-redis-rs {feast_redis_rs.__version__} is a {feast_redis_rs.BUILD_PROFILE} "
            "build here, several times slower than release: `make app` installs the release build."
        )


def latency_chart(table: pd.DataFrame) -> alt.LayerChart:
    """p50 and p99 of each read path as two dots joined by a line, on a log scale (a
    Python server's p99 can be a hundred times the fastest p50)."""
    import altair as alt

    x = alt.X("ms:Q", scale=alt.Scale(type="log"), title="ms (log scale)")
    y = alt.Y(
        "read path:N", sort=None, title=None, axis=alt.Axis(labelLimit=300, labelOverlap=False)
    )
    wide = table.reset_index()
    spread = (
        alt.Chart(wide)
        .mark_rule(color="lightgray", strokeWidth=3)
        .encode(x=alt.X("p50 ms:Q", scale=alt.Scale(type="log")), x2="p99 ms:Q", y=y)
    )
    long = wide.melt(
        id_vars="read path", value_vars=["p50 ms", "p99 ms"], var_name="percentile", value_name="ms"
    )
    dots = (
        alt.Chart(long)
        .mark_circle(size=90, opacity=1)
        .encode(
            x=x,
            y=y,
            color=alt.Color("percentile:N", legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["read path", "percentile", alt.Tooltip("ms:Q", format=".3f")],
        )
    )
    return alt.layer(spread, dots, height=200)


def compare_read_paths(model: CreditScoringModel, entity_rows: list[dict], urls) -> None:
    """Times the applicant's read through every path and shows p50/p99 of each."""
    st.subheader("Read paths compared")
    reads = {
        read_paths.OURS: read_paths.in_process(model.store, FEAST_FEATURES, entity_rows),
        read_paths.STOCK: read_paths.in_process(stock_store(model), FEAST_FEATURES, entity_rows),
    }
    servers = read_paths.reachable_servers(urls)
    clients = [read_paths.FeatureServerClient(url) for url in servers.values()]
    try:
        for name, client in zip(servers, clients, strict=True):
            reads[name] = partial(client.online_features, FEAST_FEATURES, entity_rows)
        answers = {name: read() for name, read in reads.items()}
        seconds = read_paths.time_reads(reads, COMPARE_READS)
        # A read through another FeatureStore clears Feast's process-wide cache of
        # resolved requests: read through this one so the next decision's read is timed
        # as a single-store service would see it.
        reads[read_paths.OURS]()
    except read_paths.FeatureServerError as error:
        st.warning(str(error))
        return
    finally:
        for client in clients:
            client.close()
    features = ZIPCODE_FEATURES + CREDIT_FEATURES
    expected = {name: answers[read_paths.OURS][name] for name in features}
    differ = [
        path for path, answer in answers.items()
        if {name: answer.get(name) for name in features} != expected
    ]  # fmt: skip
    table = read_paths.latency_table(seconds)
    numbers, chart = st.columns([3, 2])
    numbers.dataframe(table, column_config={
        "p50 ms": st.column_config.NumberColumn(format="%.3f"),
        "p99 ms": st.column_config.NumberColumn(format="%.3f"),
        "vs stock p50": st.column_config.NumberColumn(format="%.1fx"),
    })  # fmt: skip
    chart.altair_chart(latency_chart(table))
    if differ:
        st.warning(f"These paths answered other features than feast-redis-rs: {differ}")
    else:
        st.caption(
            f"{COMPARE_READS} reads per path in alternating blocks, all on the same Redis "
            "keys; every path returned the same features."
        )
    missing = [name for name in urls if name not in servers]
    if missing:
        st.caption(
            f"Not running: {', '.join(f'{name} at {urls[name]}' for name in missing)} "
            "(`make serve` starts feast-redis-rs serve, `make serve-stock` feast serve)."
        )


def main() -> None:
    st.set_page_config(page_title="Loan approval", layout="wide")
    st.title("Loan approval")
    st.caption("Features read online from Redis by Feast, through feast-redis-rs")
    request = application_form()
    compare, server_urls = comparison_form()
    model = load_model()

    st.subheader("Application")
    st.dataframe(pd.DataFrame(request), hide_index=True)

    entity_rows = entity_rows_of(request)
    started = time.perf_counter()
    online = model.online_features(entity_rows)
    read_seconds = time.perf_counter() - started
    try:
        features = model.features_of(request, online)
    except LookupError as error:
        st.warning(str(error))
        return
    st.subheader("Online features")
    st.dataframe(features.drop(columns=list(request)[2:]), hide_index=True)
    show_read_latency(read_seconds)

    decision = model.predict_frame(features)[0]
    st.subheader("Decision")
    if decision == 0:
        st.success("Loan approved!")
    else:
        st.error("Loan rejected!")

    if compare:
        compare_read_paths(model, entity_rows, server_urls)

    shap, _ = plotting()
    matrix = model.encoded(features[MODEL_FEATURES])
    explanation = explainer(model)(matrix)[0, :, 1]
    explanation.data = features[MODEL_FEATURES].iloc[0].to_numpy()
    st.subheader("Why: SHAP values towards rejection")
    left, right = st.columns(2)
    show_shap_plot(left, explanation, shap.plots.waterfall)
    show_shap_plot(right, explanation, shap.plots.bar)


main()

"""The loan form: an application in the sidebar, the applicant's features read online
from Redis through Feast, the credit model's decision, and SHAP explanations of it.

    make app        (or: streamlit run streamlit_app.py)
"""

from __future__ import annotations

import threading

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import shap
import streamlit as st

from credit_model import MODEL_FEATURES, CreditScoringModel
from run import LOAN_REQUEST

HOME_OWNERSHIP = ["RENT", "MORTGAGE", "OWN", "OTHER"]
LOAN_INTENT = [
    "PERSONAL", "EDUCATION", "MEDICAL", "VENTURE", "HOMEIMPROVEMENT", "DEBTCONSOLIDATION",
]  # fmt: skip


@st.cache_resource
def load_model() -> CreditScoringModel:
    model = CreditScoringModel()
    if not model.trained:
        raise RuntimeError("no trained model: run `make demo` (or `python run.py`) first")
    return model


@st.cache_resource
def explainer(_model: CreditScoringModel) -> shap.TreeExplainer:
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


@st.cache_resource
def plot_lock() -> threading.Lock:
    """One lock for every session (a module-level lock would be new on each rerun)."""
    return threading.Lock()


def show_shap_plot(place, explanation: shap.Explanation, plot) -> None:
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


def main() -> None:
    st.set_page_config(page_title="Loan approval", layout="wide")
    st.title("Loan approval")
    st.caption("Features read online from Redis by Feast, through feast-redis-rs")
    request = application_form()
    model = load_model()

    st.subheader("Application")
    st.dataframe(pd.DataFrame(request), hide_index=True)

    try:
        features = model.features_of(request)
    except LookupError as error:
        st.warning(str(error))
        return
    st.subheader("Online features")
    st.dataframe(features.drop(columns=list(request)[2:]), hide_index=True)

    decision = model.predict_frame(features)[0]
    st.subheader("Decision")
    if decision == 0:
        st.success("Loan approved!")
    else:
        st.error("Loan rejected!")

    matrix = model.encoded(features[MODEL_FEATURES])
    explanation = explainer(model)(matrix)[0, :, 1]
    explanation.data = features[MODEL_FEATURES].iloc[0].to_numpy()
    st.subheader("Why: SHAP values towards rejection")
    left, right = st.columns(2)
    show_shap_plot(left, explanation, shap.plots.waterfall)
    show_shap_plot(right, explanation, shap.plots.bar)


main()

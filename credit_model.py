"""The loan demo's credit model: a decision tree over the loan application joined with
the applicant's credit history and their zipcode's features from Feast.

Training joins historical loans with features point-in-time from the offline store
(`get_historical_features`); scoring reads one applicant's features from Redis
(`get_online_features`) through feast-redis-rs.
"""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import pandas as pd
from feast import FeatureStore
from sklearn.preprocessing import OrdinalEncoder
from sklearn.tree import DecisionTreeClassifier

from loan_demo import embedded_redis
from loan_demo.read_paths import FeatureServerClient

ROOT = Path(__file__).resolve().parent
REPO_PATH = ROOT / "feature_repo"
MODEL_PATH = ROOT / "model" / "credit_model.joblib"

ZIPCODE_FEATURES = [
    "city", "state", "location_type", "tax_returns_filed", "population", "total_wages",
]  # fmt: skip
CREDIT_FEATURES = [
    "credit_card_due", "mortgage_due", "student_loan_due", "vehicle_loan_due", "hard_pulls",
    "missed_payments_2y", "missed_payments_1y", "missed_payments_6m", "bankruptcies",
]  # fmt: skip
FEAST_FEATURES = [f"zipcode_features:{name}" for name in ZIPCODE_FEATURES] + [
    f"credit_history:{name}" for name in CREDIT_FEATURES
]
APPLICATION_FIELDS = [
    "person_age", "person_income", "person_home_ownership", "person_emp_length",
    "loan_intent", "loan_amnt", "loan_int_rate",
]  # fmt: skip
ENTITY_FIELDS = ["zipcode", "dob_ssn"]
MODEL_FEATURES = APPLICATION_FIELDS + ZIPCODE_FEATURES + CREDIT_FEATURES
CATEGORICAL_FEATURES = ["person_home_ownership", "loan_intent", "city", "state", "location_type"]
TARGET = "loan_status"


def entity_rows_of(request: dict) -> list[dict]:
    """The entity rows of a loan request (a dict of lists, as `run.LOAN_REQUEST`)."""
    return [
        {"zipcode": int(z), "dob_ssn": str(d)}
        for z, d in zip(request["zipcode"], request["dob_ssn"], strict=True)
    ]


def feature_store() -> FeatureStore:
    """The demo's feature store, with Redis configured (see `loan_demo.embedded_redis`);
    FEAST_FS_YAML_FILE_PATH, as for Feast's CLI, names another `feature_store.yaml` (the
    AWS deployment's `feature_repo/feature_store.aws.yaml`)."""
    embedded_redis.configure_environment()
    other = os.environ.get("FEAST_FS_YAML_FILE_PATH")
    return FeatureStore(repo_path=str(REPO_PATH), fs_yaml_file=Path(other) if other else None)


class CreditScoringModel:
    """Ordinal-encodes the categorical features and classifies with a decision tree;
    `loan_status` 1 means rejected."""

    def __init__(
        self,
        store: FeatureStore | None = None,
        model_path: Path = MODEL_PATH,
        feature_server: str | None = None,
    ):
        """`feature_server`: read online features over HTTP from this URL instead of
        in-process."""
        self.store = store or feature_store()
        self.feature_server = feature_server
        self.model_path = model_path
        self.encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        self.classifier = DecisionTreeClassifier(max_depth=8, min_samples_leaf=25, random_state=0)
        self.trained = False
        if model_path.exists():
            self.encoder, self.classifier = joblib.load(model_path)
            self.trained = True

    def training_frame(self, loans: pd.DataFrame) -> pd.DataFrame:
        """The loans joined point-in-time with their applicant's and zipcode's features."""
        job = self.store.get_historical_features(entity_df=loans, features=FEAST_FEATURES)
        return job.to_df()

    def encoded(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input matrix for a frame with the model's features."""
        matrix = frame[MODEL_FEATURES].copy()
        matrix[CATEGORICAL_FEATURES] = self.encoder.transform(
            matrix[CATEGORICAL_FEATURES].astype(str)
        )
        return matrix.astype(float)

    def fit(self, frame: pd.DataFrame) -> None:
        """Trains on a training frame (see `training_frame`)."""
        self.encoder.fit(frame[CATEGORICAL_FEATURES].astype(str))
        self.classifier.fit(self.encoded(frame), frame[TARGET])
        self.trained = True

    def train(self, loans: pd.DataFrame) -> None:
        """Trains on historical loans and saves the model."""
        self.fit(self.training_frame(loans))
        self.model_path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump((self.encoder, self.classifier), self.model_path)

    def accuracy(self, frame: pd.DataFrame) -> float:
        return float((self.classifier.predict(self.encoded(frame)) == frame[TARGET]).mean())

    def online_features(self, entity_rows: list[dict]) -> dict[str, list]:
        """The model's online features of `entity_rows` by name (Feast's
        `get_online_features(...).to_dict()`, or the feature server's answer)."""
        if self.feature_server:
            with FeatureServerClient(self.feature_server) as server:
                return server.online_features(FEAST_FEATURES, entity_rows)
        return self.store.get_online_features(
            features=FEAST_FEATURES, entity_rows=entity_rows
        ).to_dict()

    def features_of(self, request: dict, online: dict[str, list] | None = None) -> pd.DataFrame:
        """The application with its online features (read now unless given as
        `online`, see `online_features`): one row per application, columns `zipcode`,
        `dob_ssn`, then the model's features in order."""
        entity_rows = entity_rows_of(request)
        if online is None:
            online = self.online_features(entity_rows)
        missing = [
            row["dob_ssn"] for row, city in zip(entity_rows, online["city"], strict=True)
            if city is None
        ]  # fmt: skip
        if missing:
            raise LookupError(
                f"no online features for {missing}: materialize first "
                "(`feast -c feature_repo materialize-incremental <now>`)"
            )
        frame = pd.DataFrame({name: request[name] for name in ENTITY_FIELDS + APPLICATION_FIELDS})
        for name in ZIPCODE_FEATURES + CREDIT_FEATURES:
            frame[name] = online[name]
        return frame[ENTITY_FIELDS + MODEL_FEATURES]

    def predict_frame(self, frame: pd.DataFrame) -> list[int]:
        return [int(v) for v in self.classifier.predict(self.encoded(frame))]

    def predict(self, request: dict) -> int:
        """`loan_status` of the first application in `request` (a dict of lists):
        0 approved, 1 rejected."""
        return self.predict_frame(self.features_of(request))[0]

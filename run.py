"""Scores the guidance's sample loan application: trains the credit model first when
there is none, reads the applicant's features from Redis (in-process, or over HTTP from
a feature server with `--feature-server URL`), and prints the decision."""

import argparse
from pathlib import Path

import pandas as pd

from credit_model import CreditScoringModel

LOAN_REQUEST = {
    "zipcode": [76104],
    "dob_ssn": ["19630621_4278"],
    "person_age": [133],
    "person_income": [59000],
    "person_home_ownership": ["RENT"],
    "person_emp_length": [123.0],
    "loan_intent": ["PERSONAL"],
    "loan_amnt": [35000],
    "loan_int_rate": [16.02],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--feature-server",
        metavar="URL",
        help="read the online features from this feature server (e.g. http://127.0.0.1:6566)",
    )
    args = parser.parse_args()
    model = CreditScoringModel(feature_server=args.feature_server)
    if not model.trained:
        loans = pd.read_parquet(Path(__file__).resolve().parent / "data" / "loan_table.parquet")
        print(f"Training the credit model on {len(loans):,} historical loans...")
        model.train(loans)
    result = model.predict(LOAN_REQUEST)
    print("Loan approved!" if result == 0 else "Loan rejected!")


if __name__ == "__main__":
    main()

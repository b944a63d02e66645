"""Scores the guidance's sample loan application: trains the credit model first when
there is none, reads the applicant's features from Redis, and prints the decision."""

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
    model = CreditScoringModel()
    if not model.trained:
        loans = pd.read_parquet(Path(__file__).resolve().parent / "data" / "loan_table.parquet")
        print(f"Training the credit model on {len(loans):,} historical loans...")
        model.train(loans)
    result = model.predict(LOAN_REQUEST)
    print("Loan approved!" if result == 0 else "Loan rejected!")


if __name__ == "__main__":
    main()

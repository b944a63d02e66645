"""The loan demo's data: a deterministic generator of the three tables the guidance's
feature repository reads (`loan_table`, `zipcode_table`, `credit_history`), with the
guidance's columns and dtypes and distributions calibrated on its published files.

    python -m loan_demo.data [--data-dir data] [--seed 42]

`loan_status` (1 = rejected/defaulted, ~21.7%) follows a logistic model of the loan's
share of income, the interest rate, home ownership, intent and the credit history, so a
model trained on the joined features can learn it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

LOANS = 28_638
APPLICANTS = 28_633
ZIPCODES = 28_844
DEFAULT_RATE = 0.2166

SAMPLE_ZIPCODE = 76104
SAMPLE_DOB_SSN = "19630621_4278"

# The guidance stamps zipcodes 2017-01-01, which leaves `materialize-incremental`'s first
# window (now - the 3650-day ttl) at the end of 2026; a later date keeps the demo working.
ZIPCODE_TIME = datetime(2020, 1, 1, 12, 0, tzinfo=timezone.utc)
CREDIT_TIME = datetime(2020, 4, 26, 18, 1, 4, 746575, tzinfo=timezone.utc)
FIRST_LOAN_TIME = datetime(2020, 8, 25, 20, 34, 41, 361000, tzinfo=timezone.utc)
LOAN_PERIOD = timedelta(days=365)

# First three zipcode digits by state (inclusive ranges), as the USPS assigns them.
STATE_PREFIXES = {
    "MA": [(10, 27)], "RI": [(28, 29)], "NH": [(30, 38)], "ME": [(39, 49)],
    "VT": [(50, 59)], "CT": [(60, 69)], "NJ": [(70, 89)], "NY": [(5, 5), (100, 149)],
    "PA": [(150, 196)], "DE": [(197, 199)], "DC": [(200, 205)], "MD": [(206, 219)],
    "VA": [(220, 246)], "WV": [(247, 268)], "NC": [(270, 289)], "SC": [(290, 299)],
    "GA": [(300, 319)], "FL": [(320, 349)], "AL": [(350, 369)], "TN": [(370, 385)],
    "MS": [(386, 397)], "KY": [(400, 427)], "OH": [(430, 459)], "IN": [(460, 479)],
    "MI": [(480, 499)], "IA": [(500, 528)], "WI": [(530, 549)], "MN": [(550, 567)],
    "SD": [(570, 577)], "ND": [(580, 588)], "MT": [(590, 599)], "IL": [(600, 629)],
    "MO": [(630, 658)], "KS": [(660, 679)], "NE": [(680, 693)], "LA": [(700, 714)],
    "AR": [(716, 729)], "OK": [(730, 749)], "TX": [(750, 799)], "CO": [(800, 816)],
    "WY": [(820, 831)], "ID": [(832, 838)], "UT": [(840, 847)], "AZ": [(850, 865)],
    "NM": [(870, 884)], "NV": [(889, 898)], "CA": [(900, 961)], "HI": [(967, 968)],
    "OR": [(970, 979)], "WA": [(980, 994)], "AK": [(995, 999)],
}  # fmt: skip

CITY_ROOTS = [
    "OAK", "ELM", "PINE", "CEDAR", "MAPLE", "ASH", "BIRCH", "WILLOW", "SPRING", "FAIR",
    "GREEN", "RIVER", "LAKE", "STONE", "ROCK", "HILL", "MILL", "BROOK", "CLEAR", "WHITE",
    "RED", "BLACK", "SILVER", "GOLD", "IRON", "NEW", "MOUNT", "GLEN", "WEST", "EAST",
    "NORTH", "SOUTH", "BRIDGE", "FOREST", "PLEASANT", "SUMMER", "WINTER", "HARBOR", "CLAY",
    "SAND", "MARION", "FRANKLIN", "CLINTON", "MADISON", "GEORGE", "JACKSON", "LINCOLN",
    "WASHING", "HAMIL", "SALEM",
]  # fmt: skip
CITY_SUFFIXES = [
    "TON", "VILLE", "FIELD", "WOOD", "DALE", "FORD", "PORT", "BURG", "LAND", "MONT",
    "VIEW", "CREEK", "HAVEN", "RIDGE", "VALE", "SIDE", " SPRINGS", " CITY", " FALLS",
    " HEIGHTS", " PARK", " GROVE", " JUNCTION", " CENTER", "BORO", "WICK", "STEAD",
]  # fmt: skip
CITY_QUALIFIERS = ["NORTH ", "SOUTH ", "EAST ", "WEST ", "NEW ", "LAKE "]

HOME_OWNERSHIP = {"RENT": 0.508, "MORTGAGE": 0.412, "OWN": 0.0766, "OTHER": 0.0034}
LOAN_INTENT = {
    "EDUCATION": 0.199, "MEDICAL": 0.185, "VENTURE": 0.175, "PERSONAL": 0.170,
    "DEBTCONSOLIDATION": 0.160, "HOMEIMPROVEMENT": 0.111,
}  # fmt: skip
# Log-odds of default added by each category (the reference's rates order them so).
HOME_RISK = {"RENT": 1.1, "OTHER": 0.9, "MORTGAGE": -0.4, "OWN": -1.2}
INTENT_RISK = {
    "DEBTCONSOLIDATION": 0.45, "MEDICAL": 0.4, "HOMEIMPROVEMENT": 0.35, "PERSONAL": 0.05,
    "EDUCATION": -0.15, "VENTURE": -0.35,
}  # fmt: skip

# Count features of the credit history: value -> share, as observed in the reference.
HARD_PULLS = [0.174, 0.174, 0.065, 0.066, 0.068, 0.086, 0.059, 0.078, 0.079, 0.082, 0.069]
MISSED_2Y = [0.187, 0.204, 0.106, 0.111, 0.077, 0.094, 0.118, 0.103]
MISSED_1Y = [0.391, 0.193, 0.193, 0.223]
MISSED_6M = [0.59, 0.41]
BANKRUPTCIES = [0.877, 0.062, 0.061]

CREDIT_FEATURES = [
    "credit_card_due", "mortgage_due", "student_loan_due", "vehicle_loan_due", "hard_pulls",
    "missed_payments_2y", "missed_payments_1y", "missed_payments_6m", "bankruptcies",
]  # fmt: skip


@dataclass(frozen=True)
class Tables:
    loans: pd.DataFrame
    zipcodes: pd.DataFrame
    credit_history: pd.DataFrame


def _timestamps(values: pd.DatetimeIndex | list[datetime]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).dt.as_unit("us")


def _choice(rng: np.random.Generator, shares: dict[str, float], size: int) -> np.ndarray:
    p = np.array(list(shares.values()))
    return rng.choice(list(shares), size=size, p=p / p.sum())


def _counts(rng: np.random.Generator, shares: list[float], size: int) -> np.ndarray:
    p = np.array(shares)
    return rng.choice(len(shares), size=size, p=p / p.sum()).astype(np.int64)


def make_zipcodes(rng: np.random.Generator, count: int = ZIPCODES) -> pd.DataFrame:
    """Zipcodes drawn from the states' prefix ranges; cities cover runs of neighbouring
    zipcodes (a few large cities, many one-zipcode towns)."""
    state_of_prefix = {
        prefix: state
        for state, ranges in STATE_PREFIXES.items()
        for low, high in ranges
        for prefix in range(low, high + 1)
    }
    candidates = np.array(
        [z for prefix in state_of_prefix for z in range(prefix * 100, prefix * 100 + 100)]
    )
    candidates = candidates[(candidates >= 501) & (candidates != SAMPLE_ZIPCODE)]
    zips = np.sort(np.append(rng.choice(candidates, size=count - 1, replace=False), SAMPLE_ZIPCODE))
    states = np.array([state_of_prefix[z // 100] for z in zips])

    names = [q + r + s for q in CITY_QUALIFIERS for r in CITY_ROOTS for s in CITY_SUFFIXES]
    names += [r + s for r in CITY_ROOTS for s in CITY_SUFFIXES]
    cities = np.empty(count, dtype=object)
    start = 0
    while start < count:
        size = min(int(rng.zipf(2.5)), 150)
        end = min(start + size, count)
        same_state = states[start:end] == states[start]
        end = start + int(np.argmin(same_state)) if not same_state.all() else end
        cities[start:end] = names[rng.integers(len(names))]
        start = end
    cities[zips == SAMPLE_ZIPCODE] = "FORT WORTH"

    population = np.clip(np.round(rng.lognormal(np.log(3078), 1.45, count)), 272, 88_503)
    tax_returns = np.maximum(np.round(population * rng.uniform(0.45, 0.7, count)), 250)
    wages = np.round(tax_returns * rng.lognormal(np.log(33_000), 0.45, count))
    return pd.DataFrame(
        {
            "zipcode": zips.astype(np.int64),
            "city": cities,
            "state": states.astype(object),
            "location_type": "PRIMARY",
            "tax_returns_filed": tax_returns.astype(np.int64),
            "population": population.astype(np.int64),
            "total_wages": wages.astype(np.int64),
            "event_timestamp": _timestamps([ZIPCODE_TIME] * count),
            "created_timestamp": _timestamps([ZIPCODE_TIME] * count),
        }
    )


def make_applicants(
    rng: np.random.Generator, first_loan_time: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray]:
    """One distinct `dob_ssn` (`YYYYMMDD_NNNN`) per applicant, from a birth date that
    gives the applicant's age at their first loan; applicant 0 is the guidance's sample
    applicant. Returns the ids and the birth dates."""
    count = len(first_loan_time)
    age_days = (20 + np.clip(rng.lognormal(np.log(6.5), 0.62, count), 0, 74)) * 365.25
    birth = (first_loan_time.tz_localize(None) - pd.to_timedelta(age_days, unit="D")).normalize()
    birth = birth.to_numpy().copy()
    birth[0] = np.datetime64("1963-06-21")
    days = birth.astype("datetime64[D]").astype(str)
    ssn = rng.integers(0, 10_000, count)
    ids: list[str] = []
    seen = {SAMPLE_DOB_SSN}
    for index, (day, number) in enumerate(zip(days, ssn, strict=True)):
        if index == 0:
            ids.append(SAMPLE_DOB_SSN)
            continue
        candidate = f"{day.replace('-', '')}_{number:04d}"
        while candidate in seen:
            candidate = f"{day.replace('-', '')}_{int(rng.integers(0, 10_000)):04d}"
        seen.add(candidate)
        ids.append(candidate)
    return np.array(ids, dtype=object), birth


def make_credit_history(rng: np.random.Generator, dob_ssn: np.ndarray) -> pd.DataFrame:
    count = len(dob_ssn)
    return pd.DataFrame(
        {
            "event_timestamp": _timestamps([CREDIT_TIME] * count),
            "dob_ssn": dob_ssn,
            "credit_card_due": rng.integers(0, 10_000, count),
            "mortgage_due": rng.integers(1_000, 2_000_000, count),
            "student_loan_due": rng.integers(0, 50_000, count),
            "vehicle_loan_due": rng.integers(0, 30_000, count),
            "hard_pulls": _counts(rng, HARD_PULLS, count),
            "missed_payments_2y": _counts(rng, MISSED_2Y, count),
            "missed_payments_1y": _counts(rng, MISSED_1Y, count),
            "missed_payments_6m": _counts(rng, MISSED_6M, count),
            "bankruptcies": _counts(rng, BANKRUPTCIES, count),
            "created_timestamp": _timestamps([CREDIT_TIME] * count),
        }
    )


def _credit_risk(credit: pd.DataFrame) -> np.ndarray:
    """A standardized score of the credit history: higher is riskier."""
    raw = (
        0.35 * credit["missed_payments_2y"]
        + 0.6 * credit["missed_payments_1y"]
        + 1.0 * credit["missed_payments_6m"]
        + 1.5 * credit["bankruptcies"]
        + 0.2 * credit["hard_pulls"]
        + credit["credit_card_due"] / 5_000
    ).to_numpy(dtype=float)
    return (raw - raw.mean()) / raw.std()


def _intercept_for_rate(logit_without_intercept: np.ndarray, rate: float) -> float:
    low, high = -20.0, 20.0
    for _ in range(60):
        middle = (low + high) / 2
        mean = (1 / (1 + np.exp(-(logit_without_intercept + middle)))).mean()
        low, high = (middle, high) if mean < rate else (low, middle)
    return (low + high) / 2


def loan_schedule(
    rng: np.random.Generator, applicants: int = APPLICANTS, count: int = LOANS
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Which applicant takes each loan, and when: every applicant has one loan and the
    few loans left over are second loans. Loan 0 is the sample applicant's and the
    latest, as in the guidance's table; loans are ordered newest first."""
    who = np.concatenate([np.arange(applicants), rng.integers(1, applicants, count - applicants)])
    rng.shuffle(who[1:])
    offsets = np.sort(rng.integers(0, int(LOAN_PERIOD.total_seconds() * 1000), count))[::-1]
    event_time = pd.Timestamp(FIRST_LOAN_TIME) + pd.to_timedelta(offsets, unit="ms")
    return who, pd.DatetimeIndex(event_time)


def first_loan_times(who: np.ndarray, event_time: pd.DatetimeIndex) -> pd.DatetimeIndex:
    first = pd.Series(event_time).groupby(who).min()
    return pd.DatetimeIndex(first.sort_index())


def make_loans(
    rng: np.random.Generator,
    who: np.ndarray,
    event_time: pd.DatetimeIndex,
    credit: pd.DataFrame,
    birth: np.ndarray,
    zipcodes: pd.DataFrame,
) -> pd.DataFrame:
    count = len(who)
    risk = _credit_risk(credit)[who]

    # Many zipcodes never see a loan; a few see several (as in the reference).
    weights = rng.lognormal(0, 0.6, len(zipcodes))
    zips = rng.choice(zipcodes["zipcode"].to_numpy(), size=count, p=weights / weights.sum())
    zips[0] = SAMPLE_ZIPCODE

    age_days = (event_time.tz_localize(None).to_numpy() - birth[who]).astype("timedelta64[D]")
    age = (age_days.astype(np.int64) / 365.25).astype(np.int64)

    income = np.clip(rng.lognormal(np.log(56_000), 0.55, count), 4_000, 6_000_000)
    round_thousands = rng.random(count) < 0.7
    income = np.where(round_thousands, np.round(income, -3), np.round(income)).astype(np.int64)

    emp_length = np.minimum(np.floor(rng.exponential(4.8, count)), np.maximum(age - 16, 0))
    home = _choice(rng, HOME_OWNERSHIP, count)
    intent = _choice(rng, LOAN_INTENT, count)
    amount = np.clip(np.round(rng.lognormal(np.log(8_000), 0.68, count) / 25) * 25, 500, 35_000)
    amount = np.minimum(amount, np.maximum(np.round(income * 0.8 / 25) * 25, 500))
    rate = np.clip(11.0 + 2.4 * (0.7 * risk + 0.7 * rng.normal(size=count)), 5.42, 23.22)
    rate = np.round(rate, 2)

    share = amount / income
    logit = (
        9.0 * (share - 0.17)
        + 0.32 * (rate - 11.0)
        + np.array([HOME_RISK[h] for h in home])
        + np.array([INTENT_RISK[i] for i in intent])
        + 0.6 * risk
        - 0.06 * np.minimum(emp_length, 15)
    )
    probability = 1 / (1 + np.exp(-(logit + _intercept_for_rate(logit, DEFAULT_RATE))))
    status = (rng.random(count) < probability).astype(np.int64)

    return pd.DataFrame(
        {
            "loan_id": np.arange(10_000, 10_000 + count, dtype=np.int64),
            "dob_ssn": credit["dob_ssn"].to_numpy()[who],
            "zipcode": zips.astype(np.int64),
            "person_age": age,
            "person_income": income,
            "person_home_ownership": home.astype(object),
            "person_emp_length": emp_length.astype(np.float64),
            "loan_intent": intent.astype(object),
            "loan_amnt": amount.astype(np.int64),
            "loan_int_rate": rate,
            "loan_status": status,
            "event_timestamp": _timestamps(event_time),
            "created_timestamp": _timestamps(event_time),
        }
    )


def generate(seed: int = 42) -> Tables:
    """The three tables; the same seed gives the same tables."""
    rng = np.random.default_rng(seed)
    zipcodes = make_zipcodes(rng)
    who, event_time = loan_schedule(rng)
    dob_ssn, birth = make_applicants(rng, first_loan_times(who, event_time))
    credit = make_credit_history(rng, dob_ssn)
    loans = make_loans(rng, who, event_time, credit, birth, zipcodes)
    return Tables(loans=loans, zipcodes=zipcodes, credit_history=credit)


def write(data_dir: Path, seed: int = 42) -> Tables:
    """Writes `loan_table.parquet`, `zipcode_table.parquet` and
    `credit_history.parquet` into `data_dir`."""
    tables = generate(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    tables.loans.to_parquet(data_dir / "loan_table.parquet", index=False)
    tables.zipcodes.to_parquet(data_dir / "zipcode_table.parquet", index=False)
    tables.credit_history.to_parquet(data_dir / "credit_history.parquet", index=False)
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    tables = write(args.data_dir, args.seed)
    print(
        f"Wrote {len(tables.loans):,} loans, {len(tables.zipcodes):,} zipcodes and "
        f"{len(tables.credit_history):,} credit histories to {args.data_dir}/"
    )


if __name__ == "__main__":
    main()

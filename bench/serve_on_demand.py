"""`make bench`'s on-demand section: the bench's loan-shaped repo plus one pandas
on-demand view (a debt-to-wages ratio of both views' features and the request's loan
amount), served by stock `feast serve` and by `feast-redis-rs serve`, one Redis, in one
run, with the same 1-row and 100-row `/get-online-features` requests (the demo's
features and the on-demand one). Every answer must be a 200 and ours must answer every
read natively (its fallback counter stays at 0). Writes bench/results_on_demand.json and
prints a table of ratios, beside what Feast's own transformation of the same requests
takes in process (the floor of any server that runs it).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
from feast import Field, OnDemandFeatureView, RequestSource
from feast.types import Float64, Int64

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve import (  # noqa: E402
    FEATURES,
    OURS,
    STOCK,
    bench_repo,
    latency_results,
    latency_rows,
    save_results,
    section_arguments,
    stock_and_ours_latency,
)

from bench import entity_rows, percentile  # noqa: E402  (bench/bench.py, beside this script)

ON_DEMAND = "loan_ratios:debt_to_wages"
DEBTS = ["credit_card_due", "mortgage_due", "student_loan_due", "vehicle_loan_due"]


def debt_to_wages(features: pd.DataFrame) -> pd.DataFrame:
    """The applicant's debts and the loan asked for, over the zipcode's total wages."""
    debts = sum(features[name] for name in DEBTS) + features["loan_amnt"]
    return pd.DataFrame({"debt_to_wages": debts / (features["total_wages"] + 1)})


def add_on_demand_view(repo: Path) -> None:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / "ours.yaml")
    request = RequestSource(name="loan_request", schema=[Field(name="loan_amnt", dtype=Int64)])
    view = OnDemandFeatureView(
        name="loan_ratios",
        sources=[
            store.get_feature_view("zipcode_features"),
            store.get_feature_view("credit_history"),
            request,
        ],
        schema=[Field(name="debt_to_wages", dtype=Float64)],
        udf=debt_to_wages,
        udf_string="debt_to_wages",
    )
    store.apply([request, view])


def on_demand_body(zips, applicants, rows: int, offset: int) -> bytes:
    entities = entity_rows(zips, applicants, rows, offset)
    return json.dumps(
        {
            "features": [*FEATURES, ON_DEMAND],
            "entities": {
                "zipcode": [e["zipcode"] for e in entities],
                "dob_ssn": [e["dob_ssn"] for e in entities],
                "loan_amnt": [1_000 * (offset + i) % 35_000 for i in range(rows)],
            },
        }
    ).encode()


def transformation_floor(repo: Path, bodies: list[bytes]) -> float:
    """Feast's own transformation of these requests, in process: the p50 of stock
    `get_online_features` with the on-demand feature, less its p50 without (the rest of
    the request); no server that runs Feast's transformation answers faster than this."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / "stock.yaml")

    def p50(with_on_demand: bool) -> float:
        times = []
        for raw in bodies:
            request = json.loads(raw)
            features, entities = request["features"], request["entities"]
            if not with_on_demand:
                features = features[:-1]
                entities = {k: v for k, v in entities.items() if k != "loan_amnt"}
            started = time.perf_counter()
            store.get_online_features(features=features, entity_rows=entities)
            times.append(time.perf_counter() - started)
        return percentile(times, 50)

    p50(True)  # warm-up
    return p50(True) - p50(False)


def main() -> None:
    args = section_arguments(__doc__)
    block = 20 if args.quick else 200

    with bench_repo(args.quick) as (tmp_path, _, repo, zips, applicants):
        add_on_demand_view(repo)
        bodies = {
            rows: [on_demand_body(zips, applicants, rows, k * rows) for k in range(block)]
            for rows in (1, 100)
        }
        latency, fallbacks = stock_and_ours_latency(repo, tmp_path, bodies, args.rounds)
        floor = {rows: transformation_floor(repo, block) for rows, block in bodies.items()}
    assert fallbacks == 0, f"{fallbacks} reads went to Feast's app"

    results = latency_results(
        args.rounds,
        block,
        latency,
        request=f"{len(FEATURES)} features of 2 views and {ON_DEMAND} (pandas, request data)",
        fallbacks=fallbacks,
        transformation_floor_ms=floor,
    )
    save_results(results, "results_on_demand.json")
    print(f"| | {STOCK} | {OURS} | ours vs stock | Feast's transformation, in process |")
    print("|---|---|---|---|---|")
    for label, rows, stat, (stock, ours) in latency_rows(latency, (STOCK, OURS)):
        floor_text = f"{floor[rows]:.3f} ms" if stat == "p50_ms" else ""
        print(f"| {label} | {stock:.3f} ms | {ours:.3f} ms | {stock / ours:.1f}x | {floor_text} |")


if __name__ == "__main__":
    main()

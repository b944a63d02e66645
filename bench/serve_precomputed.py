"""`make bench`'s pre-computed section: the bench's loan-shaped repo plus a feature
service of the credit history with `precompute_online` (one stored vector per applicant,
made by Feast's `precompute_feature_service`), served by stock `feast serve` and by
`feast-redis-rs serve`, one Redis, in one run, with the same 1-row and 100-row
`/get-online-features` requests of the service (full feature names: the vectors hold no
other). Every answer must be a 200 and ours must answer every read natively (its
fallback counter stays at 0). Writes bench/results_precomputed.json and prints a table
of ratios.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from feast import FeatureService

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve import (  # noqa: E402
    OURS,
    STOCK,
    bench_repo,
    latency_results,
    latency_rows,
    save_results,
    section_arguments,
    stock_and_ours_latency,
)

from bench import entity_rows  # noqa: E402  (bench/bench.py, beside this script)

SERVICE = "credit_vector"


def add_precomputed_service(repo: Path) -> int:
    """The service, applied and its vectors pre-computed; how many were written."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo), fs_yaml_file=repo / "ours.yaml")
    credit = store.get_feature_view("credit_history")
    store.apply([FeatureService(name=SERVICE, features=[credit], precompute_online=True)])
    return store.precompute_feature_service(SERVICE)


def service_body(zips, applicants, rows: int, offset: int) -> bytes:
    entities = entity_rows(zips, applicants, rows, offset)
    return json.dumps(
        {
            "feature_service": SERVICE,
            "entities": {"dob_ssn": [e["dob_ssn"] for e in entities]},
            "full_feature_names": True,
        }
    ).encode()


def main() -> None:
    args = section_arguments(__doc__)
    block = 20 if args.quick else 200

    with bench_repo(args.quick) as (tmp_path, _, repo, zips, applicants):
        vectors = add_precomputed_service(repo)
        assert vectors == len(applicants), (vectors, len(applicants))
        bodies = {
            rows: [service_body(zips, applicants, rows, k * rows) for k in range(block)]
            for rows in (1, 100)
        }
        latency, fallbacks = stock_and_ours_latency(repo, tmp_path, bodies, args.rounds)
    assert fallbacks == 0, f"{fallbacks} reads went to Feast's app"

    results = latency_results(
        args.rounds,
        block,
        latency,
        request=f"feature service {SERVICE} (precompute_online: the credit history's "
        f"features, one vector per applicant, {vectors} vectors)",
        fallbacks=fallbacks,
    )
    save_results(results, "results_precomputed.json")
    print(f"| | {STOCK} | {OURS} | ours vs stock |")
    print("|---|---|---|---|")
    for label, _, _, (stock, ours) in latency_rows(latency, (STOCK, OURS)):
        print(f"| {label} | {stock:.3f} ms | {ours:.3f} ms | {stock / ours:.1f}x |")


if __name__ == "__main__":
    main()

"""`make bench`'s auth section: a repo protected with Feast's OIDC auth and a reader
permission, served by stock `feast serve` and by `feast-redis-rs serve`, beside
`feast-redis-rs serve` on the same repo without auth, one Redis, in one run, with the
same 1-row and 100-row `/get-online-features` requests (a reader's bearer token for the
protected servers; an issuer made for the run, as the tests make one). Every answer must
be a 200; the protected server's counters must show its reads answered natively (none
by Feast's app) on one decision of Feast's auth. Writes bench/results_auth.json and
prints a table of ratios.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from feast import FeatureStore, FeatureView
from feast.permissions.action import AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serve import (  # noqa: E402
    bench_repo,
    body,
    latency_results,
    latency_rows,
    measure_latency,
    metric,
    save_results,
    section_arguments,
    start_each,
    stop,
)

from tests.oidc_issuer import CLIENT_ID, Issuer  # noqa: E402
from tests.redis_servers import free_port  # noqa: E402

STOCK, OURS, OURS_OPEN = (
    "feast serve (auth)",
    "feast-redis-rs serve (auth)",
    "feast-redis-rs serve (no auth)",
)


def protect(repo: Path, yaml_name: str, issuer: Issuer) -> str:
    """`yaml_name` of `repo` with Feast's OIDC auth by `issuer`, as a new yaml."""
    config = yaml.safe_load((repo / yaml_name).read_text())
    config["auth"] = {
        "type": "oidc",
        "client_id": CLIENT_ID,
        "auth_discovery_url": f"{issuer.url}/.well-known/openid-configuration",
    }
    protected = f"protected-{yaml_name}"
    (repo / protected).write_text(yaml.safe_dump(config))
    return protected


def counters(port: int) -> dict[str, float]:
    return {name: metric(port, name) for name in ("feast_fallbacks_total", "auth_decisions_total")}


def main() -> None:
    args = section_arguments(__doc__)
    block = 20 if args.quick else 200

    issuer = Issuer()
    with bench_repo(args.quick) as (tmp_path, _, repo, zips, applicants):
        processes = []
        try:
            FeatureStore(repo_path=str(repo), fs_yaml_file=repo / "ours.yaml").apply(
                [
                    Permission(
                        name="readers",
                        types=[FeatureView],
                        policy=RoleBasedPolicy(roles=["reader"]),
                        actions=[AuthzedAction.READ_ONLINE],
                    )
                ]
            )
            metrics_port = free_port()
            servers = {
                STOCK: ("feast", protect(repo, "stock.yaml", issuer), ()),
                OURS: (
                    "feast-redis-rs",
                    protect(repo, "ours.yaml", issuer),
                    ("--metrics", "--metrics-port", str(metrics_port)),
                ),
                OURS_OPEN: ("feast-redis-rs", "ours.yaml", ()),
            }
            ports = start_each(servers, repo, tmp_path, processes)
            reader = {"Authorization": f"Bearer {issuer.token(['reader'], lifetime=24 * 3600)}"}
            headers = {STOCK: reader, OURS: reader}
            before = counters(metrics_port)
            latency = {
                rows: measure_latency(
                    ports,
                    [body(zips, applicants, rows, k * rows) for k in range(block)],
                    args.rounds,
                    headers,
                )
                for rows in (1, 100)
            }
            after = counters(metrics_port)
        finally:
            for process in processes:
                stop(process)
            issuer.stop()

    counted = {name: after[name] - before[name] for name in after}
    # Native: no read went to Feast's app, and Feast's auth decided the one question
    # (the token, the features) again only after each registry refresh (every 60 s).
    assert counted["feast_fallbacks_total"] == 0, counted
    assert 1 <= counted["auth_decisions_total"] <= 10, counted
    results = latency_results(args.rounds, block, latency, counted=counted)
    save_results(results, "results_auth.json")
    print(f"| | {STOCK} | {OURS} | {OURS_OPEN} | ours vs stock (auth) | auth vs no auth |")
    print("|---|---|---|---|---|---|")
    for label, _, _, values in latency_rows(latency, (STOCK, OURS, OURS_OPEN)):
        print(
            f"| {label} | "
            + " | ".join(f"{v:.3f} ms" for v in values)
            + f" | {values[0] / values[1]:.1f}x | {values[1] / values[2]:.2f}x |"
        )
    print(f"decisions by Feast's auth: {counted['auth_decisions_total']:.0f}, "
          f"requests to Feast's app: {counted['feast_fallbacks_total']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()

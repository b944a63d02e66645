"""`make lint`'s check of the documentation's reference against the code: every key of
the store's and the engines' configs, and every flag of `feast-redis-rs serve` and
`listen`, appears on its page of docs/ (a key as `name`, a near-cache key as
`near_cache.name`); and every relative link of the READMEs outside docs/ (which MkDocs
does not build) leads to a file. Prints what is missing and exits 1, or exits 0."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from feast_redis_rs.cli import cli
from feast_redis_rs.compute_engine import RedisComputeEngineConfig
from feast_redis_rs.config import NearCacheConfig, RedisOnlineStoreConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
READMES = ["README.md", "infra/README.md", "deploy/kubernetes/README.md"]
# [text](target) and [text](target#anchor), not a web address.
RELATIVE_LINK = re.compile(r"\]\((?!https?://)([^)#\s]+)[^)]*\)")


def keys(config, prefix: str = "") -> list[str]:
    return [f"{prefix}{name}" for name in config.model_fields if name != "type"]


def missing(page: str, names: list[str], shown) -> list[str]:
    text = (DOCS / page).read_text()
    return [f"{page}: {name}" for name in names if not re.search(shown(name), text)]


def broken_links(readme: str) -> list[str]:
    path = ROOT / readme
    return [
        f"{readme}: {target}"
        for target in RELATIVE_LINK.findall(path.read_text())
        if not (path.parent / target).exists()
    ]


def main() -> int:
    as_code = lambda name: rf"`{re.escape(name)}`"  # noqa: E731
    as_flag = lambda flag: rf"{re.escape(flag)}(?![\w-])"  # noqa: E731
    flags = sorted(
        {
            option
            for command in [cli, *cli.commands.values()]
            for parameter in command.params
            for option in parameter.opts
            if option.startswith("--") and option != "--help"
        }
    )
    problems = [
        *missing("configuration.md", keys(RedisOnlineStoreConfig), as_code),
        *missing("configuration.md", keys(NearCacheConfig, "near_cache."), as_code),
        *missing("engines.md", keys(RedisComputeEngineConfig), as_code),
        *missing("server.md", flags, as_flag),
    ]
    for problem in problems:
        print(f"not documented: {problem}", file=sys.stderr)
    links = [link for readme in READMES for link in broken_links(readme)]
    for link in links:
        print(f"no such file: {link}", file=sys.stderr)
    problems += links
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

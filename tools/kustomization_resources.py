"""Print the manifests a kustomization.yaml lists, one path each, after checking that it
lists every YAML file of its folder (a manifest left out would be neither deployed nor
checked) and nothing that is not there. `make lint-kubernetes` validates what it prints."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def resources(folder: Path) -> list[Path]:
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    present = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    if missing := present - set(listed):
        raise SystemExit(f"{folder}/kustomization.yaml does not list {sorted(missing)}")
    if absent := set(listed) - present:
        raise SystemExit(f"{folder}/kustomization.yaml lists {sorted(absent)}, not in {folder}")
    return [folder / name for name in listed]


if __name__ == "__main__":
    print("\n".join(str(path) for path in resources(Path(sys.argv[1]))))

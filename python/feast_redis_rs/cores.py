"""How many cores this process may use: its CPU affinity (``taskset``, a cpuset) and the
CPU quota of its cgroups (a container's CPU limit), the tighter of the two.
``os.cpu_count()`` knows neither, and a server with more threads than it gets cores
answers fewer requests."""

from __future__ import annotations

import math
import os
from pathlib import Path

PROC_CGROUP = Path("/proc/self/cgroup")
PROC_MOUNTINFO = Path("/proc/self/mountinfo")


def cores_available() -> int:
    """Cores this process may run on, at least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return cores


def cgroup_cpu_quota() -> float | None:
    """CPUs the process' cgroups allow (quota / period, the tightest from its own cgroup
    up to the hierarchy's root), or None when none is set or cgroups cannot be read."""
    try:
        memberships = PROC_CGROUP.read_text().splitlines()
        mounts = PROC_MOUNTINFO.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for membership in memberships:
        _, controllers, path = membership.split(":", 2)
        version = 2 if controllers == "" else 1
        if version == 1 and "cpu" not in controllers.split(","):
            continue
        mount = _cgroup_mount(mounts, version)
        if mount is None:
            continue
        mount_point, mount_root = mount
        if not path.startswith(mount_root):
            continue
        directory = mount_point / Path(path).relative_to(mount_root)
        while True:
            quota = _quota(directory, version)
            if quota is not None:
                quotas.append(quota)
            if directory == mount_point:
                break
            directory = directory.parent
    return min(quotas, default=None)


def _cgroup_mount(mounts: list[str], version: int) -> tuple[Path, str] | None:
    """Where the cgroup hierarchy (v2, or v1's with the cpu controller) is mounted, and
    which of its cgroups is the mount's root."""
    for mount in mounts:
        fields, _, after = mount.partition(" - ")
        fs_type, _, super_options = [*after.split(" "), "", "", ""][:3]
        mount_fields = fields.split(" ")
        v2 = version == 2 and fs_type == "cgroup2"
        v1 = version == 1 and fs_type == "cgroup" and "cpu" in super_options.split(",")
        if v1 or v2:
            return Path(mount_fields[4]), mount_fields[3]
    return None


def _quota(directory: Path, version: int) -> float | None:
    try:
        if version == 2:
            quota, period = (directory / "cpu.max").read_text().split()
            return None if quota == "max" else int(quota) / int(period)
        quota_us = int((directory / "cpu.cfs_quota_us").read_text())
        period_us = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us < 0 else quota_us / period_us

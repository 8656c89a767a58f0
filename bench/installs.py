"""Installs the benchmark's system tools (nginx, wrk, curl) with apt when they are missing."""

from __future__ import annotations

import subprocess
from functools import cache

from common import have


@cache
def _apt_updated() -> bool:
    return _apt(["update"])


def _apt(args: list[str]) -> bool:
    try:
        done = subprocess.run(  # noqa: S603 - fixed command
            ["apt-get", "-qq", *args],  # noqa: S607 - apt-get from PATH, as an operator would
            capture_output=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure(tool: str, *packages: str) -> bool:
    """True when `tool` is on PATH, installing the first of `packages` that apt can provide."""
    if have(tool):
        return True
    if not have("apt-get"):
        return False
    print(f"bench: {tool} not found; installing it with apt-get ({' or '.join(packages)})")
    if not _apt_updated():
        return False
    for package in packages:
        if _apt(["install", "-y", "--no-install-recommends", package]) and have(tool):
            return True
    return False


def ensure_all() -> dict[str, bool]:
    found = {
        "nginx": ensure("nginx", "nginx-light", "nginx"),
        "wrk": ensure("wrk", "wrk"),
        "curl": ensure("curl", "curl"),
    }
    if not found["nginx"]:
        print("bench: NOTE: nginx unavailable: Python upstream, and no nginx reference proxy")
    if not found["wrk"]:
        print("bench: NOTE: wrk unavailable: using the (much slower) Python load generator")
    if not found["curl"]:
        raise SystemExit("bench: curl is required for the streaming measurements")
    return found

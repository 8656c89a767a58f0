"""`make audit`, part one: pip-audit over the locked runtime dependencies (requirements.lock).

pip-audit asks PyPI for the known vulnerabilities of each pinned version. Exits 1 when any are
found. When PyPI's vulnerability data cannot be reached (a mirror without the per-release JSON,
no network), pip-audit skips the packages it could not look up: that is said plainly, with the
count, and is not a failure, so the smuggling probes still run.

    python -m tools.dependency_audit [requirements.lock]
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

UNAUDITED = """
NOTE: pip-audit could not reach PyPI's vulnerability data for {skipped} of {total} locked
packages; they were NOT audited. (Mirrors without the per-release JSON, or no network, give
this.) Run `make audit` where pypi.org is reachable to audit them.
"""


def main(argv: Sequence[str] | None = None) -> int:
    lock = (argv or sys.argv[1:] or ["requirements.lock"])[0]
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        lock,
        # Every line of the lock pins an exact version: nothing to resolve, nothing to install.
        "--no-deps",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(result.stderr or result.stdout, file=sys.stderr)
        print("pip-audit failed to run; see above", file=sys.stderr)
        return 1
    dependencies = report.get("dependencies", [])
    vulnerable = [dep for dep in dependencies if dep.get("vulns")]
    skipped = [dep for dep in dependencies if "skip_reason" in dep]
    for dep in vulnerable:
        ids = ", ".join(vuln["id"] for vuln in dep["vulns"])
        print(f"VULNERABLE: {dep['name']} {dep['version']}: {ids}")
    audited = len(dependencies) - len(skipped)
    print(
        f"pip-audit: {audited} of {len(dependencies)} locked packages audited, "
        f"{len(vulnerable)} with known vulnerabilities"
    )
    if skipped:
        print(UNAUDITED.format(skipped=len(skipped), total=len(dependencies)).strip())
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())

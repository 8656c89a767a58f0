"""The house rule that keeps modules readable: about 250 lines each, one concept per module.

A module that outgrows it holds two concepts; carve one out rather than raise the bound.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "authproxy"
MODULES = sorted(PACKAGE.rglob("*.py"))
# "About 250": room for a module to take one more check before it must be split.
MAX_LINES = 280
# The one error tree, kept whole in one module on purpose: a reader sees every failure, its
# status and its translation at the upstream boundary in one place (errors.py's docstring).
WHOLE_BY_DESIGN = {"errors.py": 320}


@pytest.mark.parametrize(
    "module", MODULES, ids=[str(module.relative_to(PACKAGE)) for module in MODULES]
)
def test_modules_stay_small(module: Path) -> None:
    name = str(module.relative_to(PACKAGE))
    bound = WHOLE_BY_DESIGN.get(name, MAX_LINES)
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= bound, f"{name} has {lines} lines (at most {bound}); carve a concept out"

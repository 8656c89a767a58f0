"""The shape config/ keeps: modules of one job each, over leaves that stay leaves.

`settings.py` (with `auth_spec.py`, the auth flow it holds) is the frozen data every package reads;
if it grew I/O or YAML, or imported a package above it, `auth/` and `config/` would import each
other through it. `http_syntax.py` is shared by
config/, upstream/ and server/, so it must not import any of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "authproxy"
CONFIG_MODULES = sorted(PACKAGE.joinpath("config").glob("*.py"))
# The layout rule "no module over about 250 lines", with room for one more check in a module.
MAX_LINES = 260
# What would make frozen data do I/O or parse: the standard library's and our dependencies'.
IO_MODULES = {"os", "io", "pathlib", "socket", "asyncio", "aiohttp", "yaml", "urllib", "redis"}


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CONFIG_MODULES, ids=[module.name for module in CONFIG_MODULES])
def test_config_modules_stay_small(module: Path) -> None:
    lines = len(module.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module.name} has {lines} lines; split it by job"


def test_settings_is_plain_data() -> None:
    modules = imported(PACKAGE / "settings.py")
    ours = {name for name in modules if name.startswith("authproxy")}
    assert ours <= {"authproxy.secrets", "authproxy.http_syntax", "authproxy.auth_spec"}
    assert {name.partition(".")[0] for name in modules} & IO_MODULES == set()


def test_auth_spec_is_plain_data() -> None:
    modules = imported(PACKAGE / "auth_spec.py")
    assert {name for name in modules if name.startswith("authproxy")} <= {"authproxy.secrets"}
    assert {name.partition(".")[0] for name in modules} & IO_MODULES == set()


def test_http_syntax_is_a_leaf() -> None:
    modules = imported(PACKAGE / "http_syntax.py")
    assert {name for name in modules if name.startswith("authproxy")} == set()

"""The commands that work on any OS import nothing POSIX-only (Windows has no fcntl).

Each runs in a subprocess where the POSIX-only modules cannot be imported, as on Windows:
`check`, `schema`, `login` and `token`, the last two with a token file (written without flock).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from proc import START_TIMEOUT

from authproxy.emulators.demo_stack import EmulatorStack, start_emulators

POSIX_ONLY = ("fcntl", "termios", "pwd", "grp", "resource")
# None in sys.modules makes `import NAME` raise ImportError, as it would on Windows.
WITHOUT_POSIX = (
    "import sys\n"
    f"for name in {POSIX_ONLY!r}:\n"
    "    sys.modules[name] = None\n"
    "from authproxy.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


async def run_without_posix(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WITHOUT_POSIX,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PLATFORM_TEST_PASSWORD": "demo-password"},
    )
    out, err = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def stack() -> AsyncIterator[EmulatorStack]:
    async with await start_emulators() as emulators:
        yield emulators


async def test_the_blocker_blocks() -> None:
    code, _, err = await run_without_posix("serve", "--workers", "2", "--help")
    assert code == 0, err  # argparse only: nothing locked yet
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WITHOUT_POSIX.replace("from authproxy.cli.main import main", "import fcntl"),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err_bytes = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert process.returncode == 1
    assert b"ImportError" in err_bytes or b"ModuleNotFoundError" in err_bytes


async def test_check_schema_login_and_token_work_without_posix_modules(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"token_store: {tmp_path / 'tokens.json'}\n"
        "routes:\n  emnify:\n"
        f"    upstream: {stack['emnify'].url}\n"
        "    auth: {preset: emnify, username: demo@example.com, "
        "password: ${PLATFORM_TEST_PASSWORD}}\n"
    )
    code, out, err = await run_without_posix("check", "--config", str(config))
    assert (code, out.strip()) == (0, f"{config}: OK (1 route)"), err
    code, out, err = await run_without_posix("schema")
    assert code == 0, err
    assert '"$schema"' in out
    code, out, err = await run_without_posix("login", "emnify", "--config", str(config))
    assert code == 0, err
    assert out.startswith("emnify: logged in")
    code, out, err = await run_without_posix("token", "emnify", "--config", str(config))
    assert code == 0, err
    assert out.startswith("Authorization: Bearer ")
    assert stack["emnify"].state.logins == 1  # token used the grant login wrote to the file
    written = sorted(path.name for path in os.scandir(tmp_path))
    assert written == ["config.yaml", "tokens.json"]  # no lock files: written without flock

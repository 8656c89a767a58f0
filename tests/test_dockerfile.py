"""The Dockerfile, checked without a container engine.

It is parsed with Docker's own parser (the `dockerfile` package), and its build steps are replayed:
only the files it COPYs go into a fresh directory, its `pip install` runs into a fresh venv, and the
installed `authproxy` then serves, answering the image's own HEALTHCHECK command.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dockerfile
import pytest
from proc import start_proxy

ROOT = Path(__file__).resolve().parent.parent


def instructions() -> list[Any]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def final_stage() -> list[Any]:
    commands = instructions()
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    return commands[last_from:]


def test_final_image_is_slim_and_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    assert stage[0].value[0].endswith("-slim")
    users = [c.value[0] for c in stage if c.cmd == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    # Build tools stay in the build stage: the final stage installs nothing with pip or apt.
    runs = " ".join(" ".join(c.value) for c in stage if c.cmd == "RUN")
    assert "pip install" not in runs
    assert "apt-get" not in runs


def test_image_serves_the_mounted_config_on_all_interfaces_with_a_healthcheck() -> None:
    stage = final_stage()
    (entrypoint,) = [c.value for c in stage if c.cmd == "ENTRYPOINT"]
    (cmd,) = [c.value for c in stage if c.cmd == "CMD"]
    argv = [*entrypoint, *cmd]
    assert argv[:2] == ["authproxy", "serve"]
    assert argv[argv.index("--config") + 1] == "/etc/authproxy/config.yaml"
    assert argv[argv.index("--listen") + 1] == "0.0.0.0:8080"
    assert [c.value for c in stage if c.cmd == "EXPOSE"] == [("8080",)]
    (health,) = [c for c in stage if c.cmd == "HEALTHCHECK"]
    assert "/-/health" in " ".join(health.value)


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """Replay the build stage: copy what the Dockerfile COPYs, run its pip install in a new venv."""
    build = tmp_path / "src"
    build.mkdir()
    for command in instructions():
        if command.cmd == "COPY" and not any(f.startswith("--from") for f in command.flags):
            *sources, _destination = command.value
            for source in sources:
                origin = ROOT / source
                if origin.is_dir():
                    ignore = shutil.ignore_patterns("__pycache__")
                    shutil.copytree(origin, build / source, ignore=ignore)
                else:
                    shutil.copy2(origin, build / source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (install,) = [
        c.value[0] for c in instructions() if c.cmd == "RUN" and "pip install" in c.value[0]
    ]
    target = shlex.split(install.split("pip install", 1)[1])[-1]
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--no-cache-dir", target]
    subprocess.run(pip, cwd=build, check=True)
    return venv


@pytest.mark.slow
async def test_build_steps_replayed_in_a_fresh_venv_give_a_working_proxy(
    installed: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("token_store: memory\nroutes:\n  api:\n    upstream: http://127.0.0.1:9\n")
    python = str(installed / "bin" / "python")
    proxy = await start_proxy(
        "serve", "--config", str(config), "--listen", "127.0.0.1:0", python=python
    )
    try:
        (health,) = [c for c in final_stage() if c.cmd == "HEALTHCHECK"]
        port = proxy.url.rsplit(":", 1)[1]
        _cmd, program, *probe = (
            part.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for part in health.value
        )
        assert program == "python"
        check = await asyncio.create_subprocess_exec(python, *probe)
        assert await asyncio.wait_for(check.wait(), 30) == 0
    finally:
        assert await proxy.stop() == 0

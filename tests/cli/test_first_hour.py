"""The first hour of a new user: starting on another port, and installing without warnings."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from proc import START_TIMEOUT, run_cli, start_proxy
from test_cli import EXAMPLE_ENV

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_a_port_alone_means_loopback(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = await start_proxy("demo", "--listen", str(port))
    try:
        assert proxy.url == f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/-/health") as ok:
            assert ok.status == 200
    finally:
        assert await proxy.stop() == 0
    config = tmp_path / "config.yaml"
    config.write_text(
        "listen: 9000\ntoken_store: memory\nroutes:\n  api:\n    upstream: http://a\n"
    )
    code, out, err = await run_cli("check", "--expand", "--config", str(config))
    assert code == 0, err
    assert json.loads(out)["listen"] == "127.0.0.1:9000"


@pytest.mark.parametrize("command", ["serve", "demo"])
async def test_a_busy_port_says_so_and_shows_the_option(
    command: str, busy_port: int, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("token_store: memory\nroutes:\n  api:\n    upstream: http://127.0.0.1:9\n")
    given = ["--config", str(config)] if command == "serve" else []
    code, _, err = await run_cli(command, *given, "--listen", f"127.0.0.1:{busy_port}")
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{busy_port}: address already in use" in err
    assert "--listen 127.0.0.1:9000" in err
    if command == "demo":
        assert "make run LISTEN=127.0.0.1:9000" in err
    assert "Traceback" not in err


def _make(*args: str) -> subprocess.Popen[bytes]:
    """`make ARGS` in the checkout, in a process group of its own (make starts the demo)."""
    # --assume-old: the test runs the venv it is in; a rebuild would outlast the start timeout.
    return subprocess.Popen(
        ["make", "--no-print-directory", "--assume-old=.venv/.installed", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
async def test_make_run_takes_listen(busy_port: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with _make("run", f"LISTEN=127.0.0.1:{free}") as demo:
        try:
            lines: list[str] = []

            def read_until_listening() -> str:
                assert demo.stdout is not None
                for raw in demo.stdout:
                    lines.append(raw.decode(errors="replace"))
                    if '"authproxy listening"' in lines[-1]:
                        return str(json.loads(lines[-1])["url"])
                raise AssertionError("make run ended before listening:\n" + "".join(lines))

            url = await asyncio.wait_for(asyncio.to_thread(read_until_listening), START_TIMEOUT)
            assert url == f"http://127.0.0.1:{free}"
        finally:
            os.killpg(demo.pid, signal.SIGTERM)
            await asyncio.to_thread(demo.communicate, None, START_TIMEOUT)
    with _make("run", f"LISTEN=127.0.0.1:{busy_port}") as busy:
        output, _ = await asyncio.to_thread(busy.communicate, None, START_TIMEOUT)
    assert busy.returncode != 0
    assert b"address already in use" in output
    assert b"make run LISTEN=127.0.0.1:9000" in output


@pytest.mark.slow
def test_building_the_package_prints_no_license_warning(tmp_path: Path) -> None:
    """setuptools deprecated `license = {text = ...}`: each build used to warn about it."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "authproxy", source / "authproxy")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-w", "out", "."],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    assert "license" not in (build.stdout + build.stderr).lower()
    (wheel,) = (source / "out").glob("authproxy-*.whl")
    assert wheel.exists()


async def test_the_command_the_example_config_shows_runs() -> None:
    """The example's header shows how to check it; that command must work as written."""
    header = (ROOT / "config.example.yaml").read_text().splitlines()[:3]
    (shown,) = [line.split("`")[1] for line in header if "`authproxy check" in line]
    argv = shown.split()[1:]
    argv[argv.index("config.yaml")] = str(ROOT / "config.example.yaml")
    code, out, err = await run_cli(*argv, env=EXAMPLE_ENV)
    assert code == 0, err
    assert json.loads(out)["routes"]


async def test_an_unset_variable_is_reported_once_as_unset() -> None:
    """Checking the unmodified example: one problem per unset variable, and nothing else."""
    env = {name: value for name, value in os.environ.items() if name not in EXAMPLE_ENV}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "check",
        "--config",
        str(ROOT / "config.example.yaml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert process.returncode == 2
    problems = [line for line in err.decode().splitlines() if line.startswith("  - ")]
    assert problems
    assert all(line.endswith("is not set") for line in problems), problems
    variables = [line.split("environment variable ")[1].split()[0] for line in problems]
    assert len(variables) == len(set(variables))
    assert {"EXAMPLE_USER", "EXAMPLE_SECRET"} <= set(variables)


async def test_an_unknown_route_lists_the_prefixes_on_localhost_only(tmp_path: Path) -> None:
    key = "alice-key-0123456789abcdef"
    plain = "token_store: memory\nroutes:\n  api: {upstream: http://127.0.0.1:9}\n"
    plain += "  other: {upstream: http://127.0.0.1:9, prefix: /v2/other}\n"
    gateway = f"{plain}clients:\n  alice: {{key: {key}}}\n"
    answers = []
    for name, text in (("plain", plain), ("gateway", gateway)):
        config = tmp_path / f"{name}.yaml"
        config.write_text(text)
        proxy = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0")
        try:
            headers = {"Authorization": f"Bearer {key}"}
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"{proxy.url}/nope", headers=headers) as answer,
            ):
                assert answer.status == 404
                assert answer.content_type == "application/problem+json"
                answers.append(await answer.json())
        finally:
            assert await proxy.stop() == 0
    localhost, behind_clients = answers
    assert localhost["type"] == "urn:authproxy:problem:unknown-route"
    assert localhost["routes"] == ["/api", "/v2/other"]
    assert localhost["detail"] == "no route matches this path; routes: /api, /v2/other"
    assert behind_clients["type"] == "urn:authproxy:problem:unknown-route"
    assert "routes" not in behind_clients
    assert "/api" not in behind_clients["detail"]

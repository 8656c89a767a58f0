"""`authproxy demo`: the emulators' URLs and demo credentials, and the emulators alone."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import yaml
from proc import START_TIMEOUT, run_cli, start_proxy

NAMES = ("cosmic", "coco", "crux", "cucumberstudio", "emnify")


def free_port_run(count: int) -> int:
    """The first of `count` consecutive loopback ports that are free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                held = socket.socket()
                sockets.append(held)
                held.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for held in sockets:
                held.close()
        return base
    raise AssertionError("no run of free ports found")


def printed_routes(text: str) -> dict[str, object]:
    """The `routes:` block the demo printed, parsed as the YAML it is meant to be."""
    lines = text.splitlines()
    start = lines.index("routes:")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  "))
    routes: dict[str, object] = yaml.safe_load("\n".join(lines[start:end]))["routes"]
    return routes


@asynccontextmanager
async def emulators_only(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`authproxy demo --emulators-only ARGS`, once it has printed its routes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "demo",
        "--emulators-only",
        *args,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=os.environ,
    )
    assert process.stderr is not None
    lines: list[str] = []
    try:
        while "Press Ctrl-C to stop." not in lines:
            raw = await asyncio.wait_for(process.stderr.readline(), START_TIMEOUT)
            assert raw, "the emulators exited:\n" + "\n".join(lines)
            lines.append(raw.decode().rstrip("\n"))
        yield process, "\n".join(lines)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), START_TIMEOUT)


async def test_the_demo_prints_each_emulator_and_its_demo_credentials() -> None:
    proxy = await start_proxy("demo", "--listen", "127.0.0.1:0")
    assert await proxy.stop() == 0
    routes = printed_routes(proxy.text)
    assert tuple(routes) == NAMES
    for name, route in routes.items():
        assert isinstance(route, dict)
        assert route["upstream"].startswith("http://127.0.0.1:")
        assert route["auth"]["preset"] == name
        assert route["auth"]["password"] == "demo-password"


async def test_a_config_of_your_own_against_the_emulators_alone(tmp_path: Path) -> None:
    base = free_port_run(len(NAMES))
    async with emulators_only("--port-base", str(base)) as (process, printed):
        routes = printed_routes(printed)
        ports = [int(str(route["upstream"]).rsplit(":", 1)[1]) for route in routes.values()]  # type: ignore[index]
        assert ports == list(range(base, base + len(NAMES)))
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({"token_store": "memory", "routes": routes}))
        proxy = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0")
        try:
            async with aiohttp.ClientSession() as client:
                for name in NAMES:
                    async with client.get(f"{proxy.url}/{name}/anything") as answer:
                        assert answer.status == 200, name
                        assert (await answer.json())["auth"] == "ok"
        finally:
            assert await proxy.stop() == 0
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), START_TIMEOUT) == 0


async def test_busy_emulator_ports_say_how_to_choose_others() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run_cli("demo", "--emulators-only", "--port-base", str(port))
    assert code == 1
    assert f"cannot listen on ports {port}-{port + 4}" in err
    assert "--port-base N" in err
    assert "Traceback" not in err
    code, _, err = await run_cli("demo", "--port-base", "9000")
    assert code == 2
    assert "--port-base goes with --emulators-only" in err

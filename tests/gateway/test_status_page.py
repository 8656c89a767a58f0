"""The status page as people see it: rendered by a real headless Chromium, screenshot checked."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from authproxy.config.load import parse_settings
from authproxy.emulators import cosmic, emnify
from authproxy.server.app import Proxy

WIDTH, HEIGHT = 1300, 500
# The page's row separator colour (#d0d7de): one full-width line of it under each table row.
RULE = (208, 215, 222)
WRONG_PASSWORD = "not-the-password-91735"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (tools/test-services.sh installs it)")
        pytest.skip("chromium is not installed; `sh tools/test-services.sh` installs it as root")
    return found


async def run_chromium(url: str, profile: Path, *args: str) -> bytes:
    """Headless Chromium with the flags that keep it off the network (only our loopback URL)."""
    process = await asyncio.create_subprocess_exec(
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return out


@asynccontextmanager
async def proxy_with_two_routes() -> AsyncIterator[str]:
    """emnify logs in fine; cosmic's password is wrong, so its row shows a failure."""
    servers = [
        TestServer(emnify.make_app(), host="127.0.0.1"),
        TestServer(cosmic.make_app(), host="127.0.0.1"),
    ]
    for server in servers:
        await server.start_server()
    good, bad = (str(server.make_url("/")).rstrip("/") for server in servers)
    document = {
        "listen": "127.0.0.1:0",
        "token_store": "memory",
        "routes": {
            "emnify": {
                "upstream": good,
                "auth": {
                    "preset": "emnify",
                    "username": emnify.DEMO_CREDENTIALS["username"],
                    "password": emnify.DEMO_CREDENTIALS["password"],
                },
            },
            "cosmic": {
                "upstream": bad,
                "auth": {"preset": "cosmic", "email": "a@example.com", "password": WRONG_PASSWORD},
            },
        },
    }
    proxy = Proxy(parse_settings(document, source="test", environ={}))
    await proxy.start()
    try:
        base = proxy.urls[0]
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{base}/emnify/api/v1/sims") as answer:
                assert answer.status == 200
            async with client.get(f"{base}/cosmic/v1/buckets") as answer:
                assert answer.status == 502
        yield base
    finally:
        await proxy.stop()
        for server in servers:
            await server.close()


async def test_status_page_renders_its_table_in_chromium(tmp_path: Path) -> None:
    async with proxy_with_two_routes() as base:
        dom = (await run_chromium(f"{base}/-/status", tmp_path / "a", "--dump-dom")).decode()
        shot = tmp_path / "status.png"
        await run_chromium(f"{base}/-/status", tmp_path / "b", f"--screenshot={shot}")

    # The DOM after scripts ran: a table with a row per route, states, and a live countdown.
    assert dom.count("<tr>") == 3  # header + two routes
    assert ">valid<" in dom
    assert ">failed<" in dom
    assert "login answered 401" in dom
    assert "3h 59m" in dom or "3h 58m" in dom  # emnify's 240-minute token, counted down by JS
    assert WRONG_PASSWORD not in dom

    # The picture: the table's rules are drawn, one under the header and under each row.
    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    rgb = image.tobytes()

    def at(x: int, y: int) -> tuple[int, int, int]:
        offset = (y * WIDTH + x) * 3
        return rgb[offset], rgb[offset + 1], rgb[offset + 2]

    ruled_rows = [
        y
        for y in range(HEIGHT)
        if sum(1 for x in range(0, WIDTH, 4) if at(x, y) == RULE) > WIDTH // 4 // 2
    ]
    # Group adjacent pixel rows into lines (a rule may be drawn 1-2 px thick).
    lines = [y for i, y in enumerate(ruled_rows) if i == 0 or ruled_rows[i - 1] != y - 1]
    assert len(lines) >= 3
    dark = sum(1 for x in range(0, WIDTH, 2) for y in range(0, HEIGHT, 2) if sum(at(x, y)) < 200)
    assert dark > 500  # text was drawn

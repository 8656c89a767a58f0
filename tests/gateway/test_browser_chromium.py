"""Web pages in a real headless Chromium against a proxy without `clients`.

A page from another local origin tries what an attacker's page would (a no-cors POST, a JSON POST,
a CORS GET, an image): the upstream must see none of it. A page from an origin the route lists in
`cors.origins` posts JSON and reads the answer. Both pages are served on 127.0.0.1 by the test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from fakes import FakeUpstream
from test_status_page import run_chromium
from yarl import URL

from authproxy.config.load import parse_settings
from authproxy.server.app import Proxy

ANSWER = {"items": [1, 2, 3]}

# Every way a page can make the browser send a request it is not allowed to read, then a report.
ATTACK = """
const target = PROXY + "/api/items";
const image = new Promise((resolve) => {
  const img = new Image();
  img.onload = img.onerror = () => resolve("image");
  img.src = target + "?as=image";
});
Promise.allSettled([
  fetch(target, {method: "POST", mode: "no-cors", body: "simple"}),
  fetch(target, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}),
  fetch(target),
  image,
]).then((results) => {
  document.body.textContent = "done " + results.map((r) => r.status).join(",");
});
"""

# What the listed origin's app does: a JSON POST with a custom header (so a preflight first).
APP = """
fetch(PROXY + "/api/items", {
  method: "POST",
  headers: {"Content-Type": "application/json", "X-Trace": "t-1"},
  body: JSON.stringify({n: 1}),
})
  .then((response) => response.json())
  .then((answer) => { document.body.textContent = "answer " + JSON.stringify(answer); })
  .catch((error) => { document.body.textContent = "failed " + error; });
"""


@asynccontextmanager
async def page(script: str, proxy: list[str]) -> AsyncIterator[URL]:
    """Serve one HTML page on 127.0.0.1:0 whose script runs against `proxy[0]` (set later)."""

    async def index(_request: web.Request) -> web.Response:
        code = f"const PROXY = {json.dumps(proxy[0])};\n{script}"
        html = f"<!doctype html><html><body>waiting</body><script>{code}</script></html>"
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield URL(f"http://127.0.0.1:{runner.addresses[0][1]}/")
    finally:
        await runner.cleanup()


async def answer(_request: web.BaseRequest) -> web.StreamResponse:
    return web.json_response(ANSWER)


async def dom_after_scripts(url: URL, profile: Path) -> str:
    # Virtual time runs the page's timers and waits for its fetches before the DOM is dumped.
    out = await run_chromium(str(url), profile, "--virtual-time-budget=10000", "--dump-dom")
    return out.decode()


@asynccontextmanager
async def proxy_for(upstream: URL, listed: URL) -> AsyncIterator[str]:
    document = {
        "listen": "127.0.0.1:0",
        "token_store": "memory",
        "routes": {
            "api": {
                "upstream": str(upstream),
                "auth": {
                    "credentials": {"key": "upstream-api-key-3141592653"},
                    "inject": {"headers": {"X-Api-Key": "{key}"}},
                },
                "cors": {"origins": [str(listed.origin())], "headers": ["X-Trace"]},
            }
        },
    }
    proxy = Proxy(parse_settings(document, source="test", environ={}))
    await proxy.start()
    try:
        yield proxy.urls[0]
    finally:
        await proxy.stop()


async def test_a_page_of_another_origin_cannot_make_the_upstream_see_a_request(
    tmp_path: Path,
) -> None:
    base: list[str] = [""]
    async with (
        FakeUpstream(answer) as upstream,
        page(ATTACK, base) as attacker,
        page(APP, base) as listed,
        proxy_for(upstream.url, listed) as proxy,
    ):
        base[0] = proxy
        dom = await dom_after_scripts(attacker, tmp_path / "profile")
    assert "done fulfilled,rejected,rejected,fulfilled" in dom
    assert upstream.requests == []


async def test_a_page_of_a_listed_origin_reads_a_json_answer(tmp_path: Path) -> None:
    base: list[str] = [""]
    async with (
        FakeUpstream(answer) as upstream,
        page(APP, base) as listed,
        proxy_for(upstream.url, listed) as proxy,
    ):
        base[0] = proxy
        dom = await dom_after_scripts(listed, tmp_path / "profile")
    assert f"answer {json.dumps(ANSWER, separators=(',', ':'))}" in dom
    # The preflight was answered by the proxy; only the POST itself went on, with the key added.
    assert [seen.method for seen in upstream.requests] == ["POST"]
    seen = upstream.requests[0]
    assert seen.headers["X-Api-Key"] == "upstream-api-key-3141592653"
    assert seen.headers["X-Trace"] == "t-1"

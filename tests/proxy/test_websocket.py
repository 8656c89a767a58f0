"""WebSocket upgrades through the proxy: frames both ways, subprotocols, closes, refusals,
redirects (handed back, never followed) and the message size limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from aiohttp import ClientSession, WSMsgType, WSServerHandshakeError, web
from authfakes import running_proxy as auth_proxy
from authfakes import settings_for
from fakes import (
    BOUND,
    FakeUpstream,
    RawResponse,
    raw_connection,
    read_response,
    route,
    running_proxy,
)
from multidict import CIMultiDict
from proc import start_proxy
from yarl import URL

from authproxy.upstream.pool import ForeignOriginRefused, UpstreamPool


class WsUpstream:
    """Echoes frames (text upper-cased, binary reversed) and records how the client closed."""

    def __init__(self) -> None:
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self.headers: CIMultiDict[str] = CIMultiDict()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.raw_path == "/refuse":
            return web.Response(status=403, text="no sockets for you")
        self.headers = CIMultiDict(request.headers)
        ws = web.WebSocketResponse(protocols=("v2.chat",))
        await ws.prepare(request)
        await ws.send_str("hello from upstream")
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                if message.data == "close please":
                    await ws.close(code=4002, message=b"upstream done")
                    break
                await ws.send_str(message.data.upper())
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        self.close_code = ws.close_code
        self.closed.set()
        return ws


async def test_frames_flow_both_ways_and_the_client_close_reaches_the_upstream() -> None:
    fake = WsUpstream()
    async with (
        FakeUpstream(fake) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
        client.ws_connect(proxy.with_path("/api/ws"), protocols=("v1.chat", "v2.chat")) as ws,
    ):
        assert ws.protocol == "v2.chat"
        assert (await ws.receive_str(timeout=BOUND)) == "hello from upstream"
        await ws.send_str("hi there")
        assert (await ws.receive_str(timeout=BOUND)) == "HI THERE"
        await ws.send_bytes(b"\x00\x01\x02\xff")
        assert (await ws.receive_bytes(timeout=BOUND)) == b"\xff\x02\x01\x00"
        await ws.close(code=4001)
        await asyncio.wait_for(fake.closed.wait(), BOUND)
    assert fake.close_code == 4001
    assert fake.headers["X-Forwarded-For"] == "127.0.0.1"
    assert "X-Request-Id" in fake.headers


async def test_an_upstream_close_reaches_the_client() -> None:
    async with (
        FakeUpstream(WsUpstream()) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
        client.ws_connect(proxy.with_path("/api/ws")) as ws,
    ):
        assert ws.protocol is None
        assert (await ws.receive_str(timeout=BOUND)) == "hello from upstream"
        await ws.send_str("close please")
        message = await ws.receive(timeout=BOUND)
        assert message.type == WSMsgType.CLOSE
        assert ws.close_code == 4002


async def test_a_refused_upgrade_is_a_502() -> None:
    async with (
        FakeUpstream(WsUpstream()) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
    ):
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect(proxy.with_path("/api/refuse"))
        assert refused.value.status == 502

        async with raw_connection(proxy) as (reader, writer):
            writer.write(
                b"GET /api/refuse HTTP/1.1\r\nHost: proxy.test\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            response = await asyncio.wait_for(read_response(reader), BOUND)
        assert response.status == 502
        problem = json.loads(response.body)
        assert problem["route"] == "api"
        assert "403" in problem["detail"]
        assert "no sockets for you" not in response.body.decode()


# ---- redirected handshakes -------------------------------------------------------------------

API_TOKEN = "coco-api-token-5f0c2e7d91"
UPGRADE = (
    "GET {target} HTTP/1.1\r\nHost: proxy.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


async def raw_upgrade(base: URL, target: str) -> RawResponse:
    async with raw_connection(base) as (reader, writer):
        writer.write(UPGRADE.format(target=target).encode())
        return await asyncio.wait_for(read_response(reader), BOUND)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirected_handshake_is_handed_back_and_no_credential_leaves(status: int) -> None:
    async with FakeUpstream() as elsewhere:

        async def redirect(request: web.BaseRequest) -> web.StreamResponse:
            away = request.raw_path.endswith("/away")
            location = f"{elsewhere.url}/steal" if away else f"{upstream.url}/v2/socket"
            headers = {"Location": location, "X-Upstream": "kept"}
            return web.Response(status=status, headers=headers, text="moved")

        async with FakeUpstream(redirect) as upstream:
            auth = {"preset": "coco", "api_token": API_TOKEN}
            settings = settings_for({"coco": {"upstream": str(upstream.url), "auth": auth}})
            async with auth_proxy(settings) as proxy:
                away = await raw_upgrade(proxy.base, "/coco/ws/away")
                home = await raw_upgrade(proxy.base, "/coco/ws/home")
    assert elsewhere.requests == []  # nothing followed the redirect, credentials or not
    assert [seen.headers["X-API-TOKEN"] for seen in upstream.requests] == [API_TOKEN] * 2
    assert (away.status, home.status) == (status, status)
    assert away.headers["Location"] == f"{elsewhere.url}/steal"  # not ours to hide
    assert home.headers["Location"] == "http://proxy.test/coco/v2/socket"  # kept on the proxy
    assert away.headers["X-Upstream"] == "kept"
    assert away.body == b""
    assert API_TOKEN not in (away.head + home.head).decode()


async def test_no_session_request_leaves_the_upstream_origin(tmp_path: Path) -> None:
    """Belt and braces for logins and any later use: the session itself refuses other origins."""
    async with FakeUpstream() as elsewhere:

        async def redirect(_request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(status=302, headers={"Location": f"{elsewhere.url}/steal"})

        async with FakeUpstream(redirect) as upstream:
            pool = UpstreamPool([route(upstream.url)])
            try:
                session = pool.session("api")
                with pytest.raises(ForeignOriginRefused):
                    await session.get(elsewhere.url.with_path("/direct"))
                with pytest.raises(ForeignOriginRefused):
                    await session.get(upstream.url.with_path("/redirects"), headers={"X-K": "v"})
            finally:
                await pool.close()
    assert len(upstream.requests) == 1
    assert elsewhere.requests == []


# ---- message size limit ----------------------------------------------------------------------

LIMIT = 4 * 1024 * 1024


class SizedUpstream:
    """Answers "send N" with an N-byte binary message, echoes the size of what it receives."""

    def __init__(self) -> None:
        self.close_code: int | None = None
        self.closed = asyncio.Event()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT and message.data.startswith("send "):
                await ws.send_bytes(b"u" * int(message.data.removeprefix("send ")))
            elif message.type == WSMsgType.BINARY:
                await ws.send_str(f"got {len(message.data)}")
        self.close_code = ws.close_code
        self.closed.set()
        return ws


async def test_a_message_of_the_limit_passes_both_ways() -> None:
    async with (
        FakeUpstream(SizedUpstream()) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
        client.ws_connect(proxy.with_path("/api/ws"), max_msg_size=0) as ws,
    ):
        await ws.send_bytes(b"c" * LIMIT)
        assert await ws.receive_str(timeout=BOUND) == f"got {LIMIT}"
        await ws.send_str(f"send {LIMIT}")
        assert len(await ws.receive_bytes(timeout=BOUND)) == LIMIT


async def test_a_client_message_over_the_limit_closes_1009_and_the_upstream_gets_1001() -> None:
    sized = SizedUpstream()
    async with (
        FakeUpstream(sized) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
        client.ws_connect(proxy.with_path("/api/ws"), max_msg_size=0) as ws,
    ):
        with contextlib.suppress(ConnectionError):
            await ws.send_bytes(b"c" * (5 * 1024 * 1024))
        message = await ws.receive(timeout=BOUND)
        assert (message.type, message.data) == (WSMsgType.CLOSE, 1009)
        await asyncio.wait_for(sized.closed.wait(), BOUND)
    assert sized.close_code == 1001


async def test_an_upstream_message_over_the_limit_closes_1009_and_the_client_gets_1001() -> None:
    sized = SizedUpstream()
    async with (
        FakeUpstream(sized) as upstream,
        running_proxy(route(upstream.url), websocket_message=1000) as proxy,
        ClientSession() as client,
        client.ws_connect(proxy.with_path("/api/ws"), max_msg_size=0) as ws,
    ):
        await ws.send_str("send 1000")
        assert len(await ws.receive_bytes(timeout=BOUND)) == 1000
        await ws.send_str("send 1001")
        message = await ws.receive(timeout=BOUND)
        assert (message.type, message.data) == (WSMsgType.CLOSE, 1001)
        await asyncio.wait_for(sized.closed.wait(), BOUND)
    assert sized.close_code == 1009


def peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (Linux: VmHWM in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
async def test_an_oversized_message_does_not_grow_the_proxy_process(tmp_path: Path) -> None:
    """The 64 MiB message is refused from its frame header: the proxy never holds it."""
    big = 64 * 1024 * 1024
    async with FakeUpstream(SizedUpstream()) as upstream:
        config = tmp_path / "config.yaml"
        config.write_text(f"token_store: memory\nroutes:\n  api:\n    upstream: {upstream.url}\n")
        proxy = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0")
        try:
            async with (
                ClientSession() as client,
                client.ws_connect(f"{proxy.url}/api/ws", max_msg_size=0) as ws,
            ):
                await ws.send_bytes(b"w" * 1024)  # the whole path has run once
                assert await ws.receive_str(timeout=BOUND) == "got 1024"
                before = peak_rss(proxy.process.pid)
                with contextlib.suppress(ConnectionError):
                    await ws.send_bytes(b"x" * big)
                message = await ws.receive(timeout=BOUND)
                grown = peak_rss(proxy.process.pid) - before
        finally:
            assert await proxy.stop() == 0
    assert grown < big // 8, f"peak RSS grew by {grown} bytes"
    assert (message.type, message.data) == (WSMsgType.CLOSE, 1009)

"""WebSocket upgrades through the proxy: frames both ways, subprotocols, closes, refusals."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import ClientSession, WSMsgType, WSServerHandshakeError, web
from fakes import BOUND, FakeUpstream, raw_connection, read_response, route, running_proxy
from multidict import CIMultiDict


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

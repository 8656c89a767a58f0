"""The pool of outgoing clients: one session and one lean client per origin and TLS settings.

Routes are real `Route`s; the upstream is a raw asyncio server on 127.0.0.1:0, so that the close
of a pooled connection is seen where it happens, at the upstream's end of the socket.
"""

from __future__ import annotations

import asyncio
import dataclasses

from fakes import BOUND, RawUpstream, route
from multidict import CIMultiDict
from yarl import URL

from authproxy.settings import OutboundProxy, Timeouts, TlsSettings
from authproxy.upstream.client import OriginClient
from authproxy.upstream.pool import UpstreamPool
from authproxy.upstream.proxied import ForwardingClient, TunnelClient

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_routes_of_one_origin_share_its_clients_and_close_closes_both() -> None:
    hung_up = asyncio.Event()

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                hung_up.set()
                return
            writer.write(OK)
            await writer.drain()

    async with RawUpstream(keep_alive) as upstream:
        elsewhere = URL.build(scheme="http", host="::1", port=upstream.url.port)
        routes = [
            route(upstream.url, "/a"),
            route(upstream.url, "/b", base="/v2"),  # the same origin under another path
            route(elsewhere, "/c"),
            dataclasses.replace(route(upstream.url, "/d"), tls=TlsSettings(verify=False)),
        ]
        pool = UpstreamPool(routes)
        sessions = {pool.session(name) for name in "abcd"}
        try:
            assert pool.client("a") is pool.client("b")
            assert pool.session("a") is pool.session("b")
            for other in ("c", "d"):
                assert pool.client(other) is not pool.client("a")
                assert pool.session(other) is not pool.session("a")
            response = await pool.client("b").request(
                "GET", "/", CIMultiDict(), None, Timeouts(read=BOUND)
            )
            body = b""
            while chunk := await asyncio.wait_for(response.read_chunk(), BOUND):
                body += chunk
            response.release()  # the connection now waits, idle, in the pool
            assert (response.status, body) == (200, b"ok")
        finally:
            await pool.close()
        assert len(sessions) == 3
        assert all(session.closed for session in sessions)
        # The lean client's idle connection was closed with its session.
        await asyncio.wait_for(hung_up.wait(), BOUND)
    assert upstream.connections == 1


async def test_direct_or_through_a_proxy_is_decided_per_origin_when_the_pool_is_built() -> None:
    """The direct origin gets the plain client, which does no proxy work per request."""
    corp = OutboundProxy("127.0.0.1", 3128)
    plain, secure = URL("http://127.0.0.1:8001"), URL("https://127.0.0.1:8002")
    routes = [
        route(plain, "/direct"),
        dataclasses.replace(route(plain, "/forwarded"), proxy=corp),
        dataclasses.replace(route(secure, "/tunnelled"), proxy=corp),
    ]
    pool = UpstreamPool(routes)
    try:
        assert type(pool.client("direct")) is OriginClient
        assert type(pool.client("forwarded")) is ForwardingClient
        assert type(pool.client("tunnelled")) is TunnelClient
        # WebSocket upgrades to a plain-HTTP origin behind a proxy get a session of tunnels.
        assert pool.upgrade_session("direct") is pool.session("direct")
        assert pool.upgrade_session("forwarded") is not pool.session("forwarded")
        assert pool.upgrade_session("tunnelled") is pool.session("tunnelled")
        sessions = {pool.session(name) for name in ("direct", "forwarded", "tunnelled")}
        sessions.add(pool.upgrade_session("forwarded"))
    finally:
        await pool.close()
    assert len(sessions) == 4
    assert all(session.closed for session in sessions)

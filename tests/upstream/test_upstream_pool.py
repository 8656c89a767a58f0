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

from authproxy.settings import Timeouts, TlsSettings
from authproxy.upstream.pool import UpstreamPool

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

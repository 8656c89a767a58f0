"""Real sockets for proxy tests: fake upstreams, an in-process `Proxy`, and a raw HTTP client.

Fake upstreams are aiohttp servers on 127.0.0.1 port 0 that record every request they see and
the connections it arrived on. `raw_request` speaks HTTP/1.1 over a bare socket, for the inputs
aiohttp's client refuses to send or rewrites (`..` segments, `Connection: X-Foo`, bad framing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from authproxy.config.load import parse_settings
from authproxy.server.app import Proxy
from authproxy.settings import ListenAddress, Route, Settings, Timeouts

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# A safety net for every network wait: a hang fails the test instead of freezing the suite.
BOUND = 10.0
# The name raw requests give the proxy in their Host header.
PROXY_HOST = "proxy.test"


@dataclass(slots=True)
class Seen:
    """One request as the fake upstream received it: the raw target, never a decoded one."""

    method: str
    raw_path: str
    headers: CIMultiDictProxy[str]


async def echo(request: web.BaseRequest) -> web.StreamResponse:
    """Answer with what arrived: method, raw target and body, as JSON."""
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path,
            "body": body.decode("latin-1"),
            "headers": [[name, value] for name, value in request.headers.items()],
        }
    )


class FakeUpstream:
    """An aiohttp server on 127.0.0.1:0 that records requests and the connections they used."""

    def __init__(self, handler: Handler = echo, *, cancel_on_disconnect: bool = False) -> None:
        self._handler = handler
        self._cancel = cancel_on_disconnect
        self.requests: list[Seen] = []
        # Transports are held (not their ids) so a closed one cannot be mistaken for a new one.
        self._transports: list[asyncio.BaseTransport] = []
        self._runner: web.ServerRunner | None = None
        self.url = URL()

    @property
    def connections(self) -> int:
        return len(self._transports)

    async def _record(self, request: web.BaseRequest) -> web.StreamResponse:
        self.requests.append(Seen(request.method, request.raw_path, request.headers))
        transport = request.transport
        if transport is not None and all(t is not transport for t in self._transports):
            self._transports.append(transport)
        return await self._handler(request)

    async def start(self) -> URL:
        server = web.Server(self._record, handler_cancellation=self._cancel, access_log=None)
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = URL.build(scheme="http", host=host, port=port)
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


class RawUpstream:
    """A TCP server that is not HTTP: it runs `script` on each connection (garbage, resets)."""

    def __init__(
        self, script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        self._script = script
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.url = URL()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            await self._script(reader, writer)
        finally:
            writer.close()

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = URL.build(scheme="http", host="127.0.0.1", port=port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()


def route(
    upstream: URL,
    prefix: str = "/api",
    *,
    name: str | None = None,
    base: str = "",
    read_timeout: float = 10.0,
    forwarded_headers: bool = True,
) -> Route:
    return Route(
        name=name or prefix.strip("/") or "root",
        upstream=upstream.with_path(base) if base else upstream,
        prefix=prefix,
        timeout=Timeouts(connect=5.0, read=read_timeout),
        forwarded_headers=forwarded_headers,
    )


def auth_route(upstream: URL, prefix: str = "/auth") -> Route:
    """A route with static credentials: its small bodies are buffered, for a replay after a 401."""
    auth = {"credentials": {"key": "static-key-1"}, "inject": {"headers": {"X-Key": "{key}"}}}
    name = prefix.strip("/")
    document = {"routes": {name: {"upstream": str(upstream), "prefix": prefix, "auth": auth}}}
    return parse_settings(document, source="test", environ={}).routes[0]


@asynccontextmanager
async def running_proxy(*routes: Route, **settings: Any) -> AsyncIterator[URL]:
    """A `Proxy` on 127.0.0.1:0 in this event loop; yields its base URL.

    `get` names the proxy `proxy.test`, so that name is in `allowed_hosts` unless a test says
    otherwise (the Host check refuses names that are not the proxy's own).
    """
    settings.setdefault("allowed_hosts", (PROXY_HOST,))
    proxy = Proxy(Settings(listen=ListenAddress("127.0.0.1", 0), routes=routes, **settings))
    await proxy.start()
    try:
        yield URL(proxy.urls[0])
    finally:
        await proxy.stop()


@dataclass(slots=True)
class RawResponse:
    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes
    head: bytes = field(repr=False, default=b"")


def parse_head(head: bytes) -> tuple[int, str, CIMultiDict[str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    _version, status, *reason = status_line.split(" ", 2)
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return int(status), " ".join(reason), headers


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (RFC 9112 §7.1), trailers skipped."""
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> RawResponse:
    """Read one response; the body by Content-Length, chunked framing, or up to EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    status, reason, headers = parse_head(head[:-4])
    if head_only or status in (100, 101, 204, 304):
        return RawResponse(status, reason, headers, b"", head)
    if "Content-Length" in headers:
        body = await reader.readexactly(int(headers["Content-Length"]))
    elif headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = await read_chunked(reader)
    else:
        body = await reader.read()
    return RawResponse(status, reason, headers, body, head)


@asynccontextmanager
async def raw_connection(
    base: URL,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    assert base.host is not None
    assert base.port is not None
    reader, writer = await asyncio.open_connection(base.host, base.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def raw_request(base: URL, data: bytes, *, head_only: bool = False) -> RawResponse:
    """Send `data` as written on a fresh connection and read one response."""
    async with raw_connection(base) as (reader, writer):
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader, head_only=head_only), BOUND)


def get(target: str, *headers: str) -> bytes:
    """A minimal `GET target` request as raw bytes; `headers` are `Name: value` lines."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {PROXY_HOST}", *headers, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")

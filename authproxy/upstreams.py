"""The one owner of outgoing connections: a pooled ClientSession per upstream, closed on shutdown.

Routes that point at the same origin with the same TLS settings share a session, so keep-alive
connections are reused across them. Sessions never decompress, never keep cookies, never follow
redirects and add no headers of their own: the proxy forwards what it was given.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import structlog
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector

from authproxy.config import Route, TlsSettings

log = structlog.get_logger("authproxy.upstreams")

# aiohttp would otherwise add these when the client sent none; a transparent proxy must not.
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

# Larger reads mean fewer wake-ups per megabyte when streaming big bodies.
READ_BUFSIZE = 2**18

SessionKey = tuple[str, bool, str | None]


def ssl_context_for(tls: TlsSettings) -> ssl.SSLContext | bool:
    if not tls.verify:
        return False
    context = ssl.create_default_context()
    if tls.ca_file:
        # Adds to the system trust store rather than replacing it (an internal CA next to public).
        context.load_verify_locations(cafile=tls.ca_file)
    return context


def timeout_for(route: Route) -> ClientTimeout:
    # No total limit: streams may run for hours. `sock_read` bounds each wait for bytes.
    return ClientTimeout(
        total=None, connect=None, sock_connect=route.timeout.connect, sock_read=route.timeout.read
    )


class UpstreamPool:
    """Build it inside the running loop (aiohttp sessions bind to it); `close()` closes them all."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._sessions: dict[SessionKey, ClientSession] = {}
        self._by_route: dict[str, ClientSession] = {}
        for route in routes:
            self.add(route)

    @staticmethod
    def _key(route: Route) -> SessionKey:
        return (str(route.upstream.origin()), route.tls.verify, route.tls.ca_file)

    def add(self, route: Route) -> None:
        key = self._key(route)
        session = self._sessions.get(key)
        if session is None:
            if not route.tls.verify and route.upstream.scheme == "https":
                log.warning(
                    "TLS verification is off: the upstream's identity is not checked",
                    route=route.name,
                    upstream=str(route.upstream.origin()),
                )
            connector = TCPConnector(
                limit=0, ssl=ssl_context_for(route.tls), keepalive_timeout=30.0
            )
            session = ClientSession(
                connector=connector,
                auto_decompress=False,
                cookie_jar=DummyCookieJar(),
                skip_auto_headers=SKIP_AUTO_HEADERS,
                read_bufsize=READ_BUFSIZE,
                trust_env=False,
            )
            self._sessions[key] = session
        self._by_route[route.name] = session

    def session(self, route_name: str) -> ClientSession:
        return self._by_route[route_name]

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        self._by_route.clear()

"""The one owner of outgoing connections, per upstream origin, all closed on shutdown.

Each origin (with its TLS settings and outbound proxy) gets two clients that share nothing but
their settings:
- an `OriginClient` (upstream/client.py): the lean keep-alive pool that forwards requests;
- an aiohttp `ClientSession`, for what the hot path does not do: logins (auth/driver.py) and
  WebSocket upgrades (proxy/websocket.py).
Routes that point at the same origin with the same settings share both, so keep-alive connections
are reused across them. None decompresses, keeps cookies, follows redirects or adds headers of its
own: the proxy forwards what it was given.

Through an outbound proxy (`Route.proxy`) both clients go through it (upstream/proxied.py), and a
plain-HTTP origin gets a third client, a session of CONNECT tunnels for its WebSocket upgrades
(upstream/tunnel.py says why). Direct or not is decided here, once per origin: the direct client
does no proxy work per request.

Every request of a session passes `OriginGuard`, which keeps the injected credentials on the origin
they were configured for: a request for any other origin is refused before it is sent, and a
redirected WebSocket handshake is handed back to the caller instead of followed (aiohttp's
`ws_connect` has no `allow_redirects`).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from aiohttp import (
    ClientError,
    ClientHandlerType,
    ClientRequest,
    ClientResponse,
    ClientSession,
    ClientTimeout,
    DummyCookieJar,
    TCPConnector,
)
from multidict import CIMultiDict
from yarl import URL

from authproxy.settings import OutboundProxy, Route, TlsSettings
from authproxy.upstream.client import OriginClient
from authproxy.upstream.proxied import ProxyFailures, lean_client, session_proxy
from authproxy.upstream.tunnel import TunnelConnector

log = structlog.get_logger("authproxy.upstream.pool")

# aiohttp would otherwise add these when the client sent none; a transparent proxy must not.
SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

# Larger reads mean fewer wake-ups per megabyte when streaming big bodies.
READ_BUFSIZE = 2**18

# Idle connections of the sessions are closed after this many seconds.
KEEPALIVE_SECONDS = 30.0

# An origin with its TLS settings and proxy: routes with the same key share its clients.
OriginKey = tuple[str, bool, str | None, OutboundProxy | None]

# The statuses aiohttp's redirect loop follows.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class ForeignOriginRefused(ClientError):
    """A session was asked to send to an origin other than its own; nothing was sent."""


class UpgradeRedirected(Exception):
    """The upstream answered a WebSocket handshake with a redirect: the client gets it as it is."""

    def __init__(self, status: int, reason: str | None, headers: CIMultiDict[str]) -> None:
        super().__init__(status)
        self.status = status
        self.reason = reason
        self.headers = headers


class OriginGuard:
    """aiohttp client middleware: each hop of a session's requests stays on the session's origin.

    A redirect elsewhere would carry the route's credentials (`X-API-TOKEN`, devise's
    `access-token`, custom inject headers) to whoever the upstream names: aiohttp strips only
    `Authorization` and cookies across origins. Logins pass `allow_redirects=False`; the handshake
    cannot, so its redirect is raised as `UpgradeRedirected` before aiohttp's loop follows it, and
    a request for a foreign origin (from any redirect, whatever passed it) is never sent.
    """

    __slots__ = ("_origin",)

    def __init__(self, origin: URL) -> None:
        self._origin = _origin_key(origin)

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        if _origin_key(request.url) != self._origin:
            raise ForeignOriginRefused("the request's origin is not the upstream's")
        response = await handler(request)
        if response.status in REDIRECT_STATUSES and _is_upgrade(request):
            redirected = UpgradeRedirected(
                response.status, response.reason, CIMultiDict(response.headers)
            )
            response.close()  # the handshake's connection is of no further use
            raise redirected
        return response


def _origin_key(url: URL) -> tuple[str, str, int | None]:
    # Scheme and host are compared as yarl normalises them; `port` is the effective one, so
    # `http://h` and `http://h:80` are one origin.
    return (url.scheme, url.host or "", url.port)


def _is_upgrade(request: ClientRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def ssl_context_for(tls: TlsSettings) -> ssl.SSLContext | bool:
    if not tls.verify:
        return False
    context = ssl.create_default_context()
    if tls.ca_file:
        # Adds to the system trust store rather than replacing it (an internal CA next to public).
        context.load_verify_locations(cafile=tls.ca_file)
    return context


def unverified_context() -> ssl.SSLContext:
    """`verify: false`: encrypt, but check neither the certificate nor the host name."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def timeout_for(route: Route) -> ClientTimeout:
    # No total limit: streams may run for hours. `sock_read` bounds each wait for bytes.
    return ClientTimeout(
        total=None, connect=None, sock_connect=route.timeout.connect, sock_read=route.timeout.read
    )


@dataclass(frozen=True, slots=True)
class OriginClients:
    """The clients of one origin with its TLS settings and proxy, made and closed together.

    `upgrades` serves WebSocket handshakes: `session` itself, except for a plain-HTTP origin
    behind a proxy, where it is a session of CONNECT tunnels.
    """

    session: ClientSession
    client: OriginClient
    upgrades: ClientSession


class UpstreamPool:
    """Build it inside the running loop (aiohttp sessions bind to it); `close()` closes them all."""

    def __init__(self, routes: Iterable[Route], *, busy_poll_us: int = 0) -> None:
        self._busy_poll = busy_poll_us / 1_000_000  # seconds, for each OriginClient
        self._origins: dict[OriginKey, OriginClients] = {}
        self._by_route: dict[str, OriginClients] = {}
        for route in routes:
            self.add(route)

    @staticmethod
    def _key(route: Route) -> OriginKey:
        return (str(route.upstream.origin()), route.tls.verify, route.tls.ca_file, route.proxy)

    def add(self, route: Route) -> None:
        key = self._key(route)
        clients = self._origins.get(key)
        if clients is None:
            clients = self._origins[key] = self._open(route)
        self._by_route[route.name] = clients

    def _open(self, route: Route) -> OriginClients:
        if not route.tls.verify and route.upstream.scheme == "https":
            log.warning(
                "TLS verification is off: the upstream's identity is not checked",
                route=route.name,
                upstream=str(route.upstream.origin()),
            )
        # A plain-HTTP origin needs no TLS context (each one loads the CA store: 0.7 MiB).
        context: ssl.SSLContext | bool = True
        lean_context: ssl.SSLContext | None = None
        if route.upstream.scheme == "https":
            context = ssl_context_for(route.tls)
            lean_context = context if isinstance(context, ssl.SSLContext) else unverified_context()
        origin, proxy = route.upstream.origin(), route.proxy
        connector = TCPConnector(limit=0, ssl=context, keepalive_timeout=KEEPALIVE_SECONDS)
        session = _session(connector, origin, proxy)
        client = lean_client(origin, lean_context, proxy, self._busy_poll)
        upgrades = session
        if proxy is not None and origin.scheme == "http":
            tunnels = TunnelConnector(proxy, keepalive_timeout=KEEPALIVE_SECONDS)
            upgrades = _session(tunnels, origin, proxy, tunnelled=True)
        return OriginClients(session, client, upgrades)

    def session(self, route_name: str) -> ClientSession:
        """The route's aiohttp session: logins and refreshes (auth/driver.py)."""
        return self._by_route[route_name].session

    def upgrade_session(self, route_name: str) -> ClientSession:
        """The session for the route's WebSocket handshakes (proxy/websocket.py)."""
        return self._by_route[route_name].upgrades

    def client(self, route_name: str) -> OriginClient:
        return self._by_route[route_name].client

    async def close(self) -> None:
        for clients in self._origins.values():
            clients.client.close()
            await clients.session.close()
            if clients.upgrades is not clients.session:
                await clients.upgrades.close()
        self._origins.clear()
        self._by_route.clear()


def _session(
    connector: TCPConnector,
    origin: URL,
    proxy: OutboundProxy | None,
    *,
    tunnelled: bool = False,
) -> ClientSession:
    """An aiohttp session that adds nothing of its own and never leaves `origin`. Through a proxy,
    aiohttp's (`proxy=`, absolute form or CONNECT) unless the connector already `tunnelled`; the
    environment is never read (`trust_env=False`): config/outbound.py decided."""
    guards: tuple[OriginGuard | ProxyFailures, ...] = (OriginGuard(origin),)
    if proxy is not None:
        guards += (ProxyFailures(proxy),)
    return ClientSession(
        connector=connector,
        middlewares=guards,
        proxy=None if proxy is None or tunnelled else session_proxy(proxy),
        auto_decompress=False,
        cookie_jar=DummyCookieJar(),
        skip_auto_headers=SKIP_AUTO_HEADERS,
        read_bufsize=READ_BUFSIZE,
        trust_env=False,
    )

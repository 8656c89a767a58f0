"""Clients of an origin that is reached through an outbound proxy (`Route.proxy`).

Which client an origin gets is decided once, when the pool is built (upstream/pool.py), so the
direct `OriginClient` does no proxy work per request. Through a proxy:
- an http upstream: `ForwardingClient` sends each request in absolute form
  (`GET http://host:port/path`, RFC 9112 §3.2.2) on keep-alive connections to the proxy, with
  `Proxy-Authorization` when the proxy has credentials;
- an https upstream: `TunnelClient` opens each connection as a CONNECT tunnel (upstream/tunnel.py),
  then TLS with the upstream, verified as it would be directly.

aiohttp's sessions (logins and WebSocket upgrades) go through the same proxy (`session_proxy`),
and `ProxyFailures` tells what the proxy refused there as the lean client does: a `ProxyFailed`
that names the proxy, so the client's 502 points at the proxy and not at the upstream.
"""

from __future__ import annotations

import asyncio
import ssl

from aiohttp import (
    ClientHandlerType,
    ClientHttpProxyError,
    ClientProxyConnectionError,
    ClientRequest,
    ClientResponse,
    ConnectionTimeoutError,
)
from multidict import CIMultiDict
from yarl import URL

from authproxy.errors import ConnectionBroken, ProxyFailed, TimedOut, UpstreamFailure
from authproxy.settings import OutboundProxy, Timeouts
from authproxy.upstream.client import OriginClient, tls_failure
from authproxy.upstream.connection import UpstreamConnection
from authproxy.upstream.request import RequestBody
from authproxy.upstream.response import UpstreamResponse
from authproxy.upstream.tunnel import (
    TIMED_OUT,
    UNREACHABLE,
    open_tunnel,
    proxy_authorization,
    refusal,
)


def lean_client(
    origin: URL, tls: ssl.SSLContext | None, proxy: OutboundProxy | None, busy_poll: float
) -> OriginClient:
    """The hot path's client for `origin`: direct, or the one its proxy needs."""
    if proxy is None:
        return OriginClient(origin, tls, busy_poll=busy_poll)
    if tls is None:
        return ForwardingClient(origin, proxy, busy_poll=busy_poll)
    return TunnelClient(origin, tls, proxy, busy_poll=busy_poll)


class ForwardingClient(OriginClient):
    """An http origin through a forward proxy: requests in absolute form, on proxy connections."""

    def __init__(self, origin: URL, proxy: OutboundProxy, *, busy_poll: float = 0.0) -> None:
        super().__init__(origin, None, busy_poll=busy_poll)
        self._proxy = proxy
        self._absolute = f"http://{self.host_header}"
        self._authorization = proxy_authorization(proxy)

    async def request(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: RequestBody,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """As `OriginClient.request`, through the proxy; `headers` gain `Proxy-Authorization`
        (the proxy forwarder drops a client's own). A 407 is the proxy's (no origin sends one)."""
        if self._authorization is not None:
            headers["Proxy-Authorization"] = self._authorization
        response = await super().request(method, self._absolute + target, headers, body, timeouts)
        if response.status == 407:
            response.release()
            credentials = self._authorization is not None
            raise ProxyFailed(str(self._proxy), refusal(407, credentials=credentials))
        return response

    async def _connect(self, seconds: float) -> UpstreamConnection:
        self._loop = loop = asyncio.get_running_loop()
        proxy = self._proxy
        try:
            async with asyncio.timeout(seconds):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(loop), proxy.host, proxy.port
                )
        except TimeoutError:
            raise ProxyFailed(str(proxy), TIMED_OUT) from None
        except OSError:
            raise ProxyFailed(str(proxy), UNREACHABLE) from None
        return conn


class TunnelClient(OriginClient):
    """An https origin through a forward proxy: each connection a CONNECT tunnel, then TLS."""

    def __init__(
        self, origin: URL, tls: ssl.SSLContext, proxy: OutboundProxy, *, busy_poll: float = 0.0
    ) -> None:
        super().__init__(origin, tls, busy_poll=busy_poll)
        self._proxy = proxy
        self._authorization = proxy_authorization(proxy)

    async def _connect(self, seconds: float) -> UpstreamConnection:
        self._loop = loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        host, port = self._host, self._port
        sock = await open_tunnel(self._proxy, self._authorization, host, port, deadline)
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(loop), sock=sock, ssl=self._ssl, server_hostname=host
                )
        except OSError as error:  # the upstream's: the tunnel is open (TimeoutError, SSLError)
            sock.close()
            raise _tls_over_tunnel_failure(error) from None
        except BaseException:
            sock.close()
            raise
        return conn


def _tls_over_tunnel_failure(error: OSError) -> UpstreamFailure:
    if isinstance(error, TimeoutError):
        return TimedOut()
    if isinstance(error, ssl.SSLError):
        return tls_failure(error)
    return ConnectionBroken()


def session_proxy(proxy: OutboundProxy) -> URL:
    """The proxy as aiohttp takes it: a URL, credentials in it (aiohttp sends them as Basic)."""
    return URL.build(
        scheme="http",
        host=proxy.host,
        port=proxy.port,
        user=proxy.username.reveal() if proxy.username is not None else None,
        password=proxy.password.reveal() if proxy.password is not None else None,
    )


class ProxyFailures:
    """aiohttp client middleware of a session through `proxy`: the proxy's refusals (connection,
    CONNECT answer, 407) as a `ProxyFailed` that names it. aiohttp's own errors carry the proxy's
    URL, credentials included; they are never passed on."""

    __slots__ = ("_credentials", "_name")

    def __init__(self, proxy: OutboundProxy) -> None:
        self._name = str(proxy)
        self._credentials = proxy.username is not None or proxy.password is not None

    async def __call__(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        try:
            response = await handler(request)
        except ClientProxyConnectionError:
            raise ProxyFailed(self._name, UNREACHABLE) from None
        except ClientHttpProxyError as error:
            raise ProxyFailed(self._name, self._refusal(error.status)) from None
        except ConnectionTimeoutError:
            # Every connection of this session is opened to the proxy first.
            raise ProxyFailed(self._name, TIMED_OUT) from None
        if response.status == 407:
            response.close()
            raise ProxyFailed(self._name, self._refusal(407))
        return response

    def _refusal(self, status: int) -> str:
        return refusal(status, credentials=self._credentials)

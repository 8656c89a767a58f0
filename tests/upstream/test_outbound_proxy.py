"""Outbound proxies against a real forward proxy: tinyproxy, on a loopback port, with its own log.

tinyproxy's log names every request it was given (tests/tinyproxy.py), so each test proves from
the proxy's side what went through it (a login, a forwarded request, a CONNECT tunnel, a WebSocket
handshake) and what went around it (`NO_PROXY`, `proxy: none`). The upstreams are the emulators
and aiohttp servers on 127.0.0.1:0, plain or TLS with a throwaway CA (`tls.ca_file`).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, WSMsgType, web
from authfakes import RunningProxy, running_proxy
from certs import make_certificates
from fakes import FakeUpstream, RawUpstream
from tinyproxy import free_port, running_tinyproxy
from yarl import URL

from authproxy.auth.clock import ManualClock
from authproxy.config.load import parse_settings
from authproxy.emulators import emnify
from authproxy.errors import CertificateRejected
from authproxy.settings import OutboundProxy, Settings
from authproxy.upstream.pool import ForeignOriginRefused, UpstreamPool

EMNIFY = {"preset": "emnify", "username": "demo@example.com", "password": "demo-password"}
STATIC = {"credentials": {"key": "static-key-0a1b"}, "inject": {"headers": {"X-Key": "{key}"}}}
PROBLEM = "application/problem+json"
# Each request's safety net: tinyproxy runs a thread per connection, slow on a busy machine.
PATIENCE = 60.0


def settings_with(routes: Mapping[str, object], environ: Mapping[str, str]) -> Settings:
    """Settings through the real loader, with `environ` as the process environment."""
    document = {"listen": "127.0.0.1:0", "token_store": "memory", "routes": dict(routes)}
    return parse_settings(document, source="test", environ=dict(environ))


@asynccontextmanager
async def serving(app: web.Application, tls: ssl.SSLContext | None = None) -> AsyncIterator[URL]:
    """Serve `app` on 127.0.0.1:0 (over TLS with `tls`) until the block ends; yields its URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
        port = runner.addresses[0][1]
        yield URL.build(scheme="https" if tls else "http", host="127.0.0.1", port=port)
    finally:
        await runner.cleanup()


def server_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1, and the CA file that trusts it."""
    ca, cert, key = make_certificates(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, ca


def emnify_app(clock: ManualClock) -> web.Application:
    return emnify.make_app(clock=clock.now)


def authority(url: URL) -> str:
    return f"{url.host}:{url.port}"


async def get(proxy: RunningProxy, path: str) -> tuple[int, str, dict[str, Any] | str]:
    """(status, content type, JSON body or text) of a GET through the running authproxy."""
    reply = await proxy.get(path, timeout=ClientTimeout(total=PATIENCE))
    content_type = reply.headers.get("Content-Type", "").split(";")[0]
    body: dict[str, Any] | str = reply.json() if "json" in content_type else reply.body.decode()
    return reply.status, content_type, body


async def upgrade(proxy: RunningProxy, path: str) -> tuple[int, str, dict[str, Any] | str]:
    """A WebSocket handshake through the running authproxy, answered with a problem."""
    key = base64.b64encode(b"sixteen byte key").decode()
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
    }
    reply = await proxy.get(path, headers=headers, timeout=ClientTimeout(total=PATIENCE))
    return reply.status, reply.headers.get("Content-Type", "").split(";")[0], reply.json()


# ---- through the proxy, and around it -----------------------------------------------------------


async def test_the_login_and_the_forwarded_request_go_through_the_environments_proxy(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    with running_tinyproxy(tmp_path / "tinyproxy") as tiny:
        async with serving(emnify_app(clock)) as upstream:
            routes = {"emnify": {"upstream": str(upstream), "auth": EMNIFY}}
            # The lower-case name wins over the upper-case one, as curl reads them.
            environ = {"http_proxy": tiny.url(), "HTTP_PROXY": f"http://127.0.0.1:{free_port()}"}
            async with running_proxy(settings_with(routes, environ), clock) as proxy:
                status, _, body = await get(proxy, "/emnify/api/v1/sims")
                assert (await get(proxy, "/emnify/api/v1/sims/2"))[0] == 200
    assert status == 200, body
    assert isinstance(body, dict)
    assert "tinyproxy" in dict(body["headers"]).get("Via", "")  # the upstream saw it come via
    assert tiny.requests() == [
        f"POST {upstream}/api/v1/authenticate HTTP/1.1",
        f"GET {upstream}/api/v1/sims HTTP/1.1",
        f"GET {upstream}/api/v1/sims/2 HTTP/1.1",
    ]


@pytest.mark.parametrize(
    ("no_proxy", "direct"),
    [
        ("127.0.0.1", True),
        ("{host}:{port}", True),
        ("*", True),
        (" example.com , 127.0.0.0/8 ", True),
        (".0.0.1", False),  # a name suffix never matches an address
        ("localhost", False),  # names are not resolved: 127.0.0.1 is not "localhost"
        ("{host}:1", False),  # another port
    ],
)
async def test_no_proxy_sends_the_upstreams_it_names_around_the_proxy(
    tmp_path: Path, no_proxy: str, direct: bool
) -> None:
    clock = ManualClock()
    with running_tinyproxy(tmp_path / "tinyproxy") as tiny:
        async with serving(emnify_app(clock)) as upstream:
            routes = {"emnify": {"upstream": str(upstream), "auth": EMNIFY}}
            named = no_proxy.format(host=upstream.host, port=upstream.port)
            environ = {"HTTP_PROXY": tiny.url(), "NO_PROXY": named}
            async with running_proxy(settings_with(routes, environ), clock) as proxy:
                status, _, body = await get(proxy, "/emnify/api/v1/sims")
    assert status == 200, body
    assert isinstance(body, dict)
    assert ("Via" not in dict(body["headers"])) is direct
    assert len(tiny.requests()) == (0 if direct else 2)  # the login and the request


async def test_a_routes_proxy_overrides_the_environment_and_none_goes_around_it(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    with running_tinyproxy(tmp_path / "tinyproxy", "BasicAuth proxyuser pr0xy-pass") as tiny:
        async with serving(emnify_app(clock)) as upstream:
            routes = {
                "direct": {"upstream": str(upstream), "auth": EMNIFY, "proxy": "none"},
                "via": {
                    "upstream": str(upstream),
                    "auth": EMNIFY,
                    "proxy": "http://proxyuser:${PROXY_PASSWORD}@" + tiny.address,
                },
            }
            # The environment names a proxy that refuses every connection: neither route uses it.
            environ = {
                "HTTP_PROXY": f"http://127.0.0.1:{free_port()}",
                "PROXY_PASSWORD": "pr0xy-pass",
            }
            async with running_proxy(settings_with(routes, environ), clock) as proxy:
                direct = await get(proxy, "/direct/api/v1/sims")
                via = await get(proxy, "/via/api/v1/other")
    assert (direct[0], via[0]) == (200, 200), (direct, via)
    assert tiny.requests() == [
        f"POST {upstream}/api/v1/authenticate HTTP/1.1",
        f"GET {upstream}/api/v1/other HTTP/1.1",
    ]


# ---- HTTPS: a CONNECT tunnel, and TLS verified as usual -----------------------------------------


async def test_an_https_upstream_is_reached_through_a_connect_tunnel_and_verified(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    tls, ca = server_tls(tmp_path)
    with running_tinyproxy(tmp_path / "tinyproxy") as tiny:
        async with serving(emnify_app(clock), tls) as upstream:
            routes = {
                "emnify": {"upstream": str(upstream), "auth": EMNIFY, "tls": {"ca_file": str(ca)}},
                # The same upstream without its CA: the tunnel opens, the certificate is refused.
                "untrusted": {"upstream": str(upstream)},
            }
            async with running_proxy(
                settings_with(routes, {"HTTPS_PROXY": tiny.url()}), clock
            ) as proxy:
                status, _, body = await get(proxy, "/emnify/api/v1/sims")
                refused = await get(proxy, "/untrusted/api/v1/sims")
    assert status == 200, body
    assert refused[0] == 502
    assert isinstance(refused[2], dict)
    assert refused[2]["detail"] == CertificateRejected.reason
    tunnel = f"CONNECT {authority(upstream)} HTTP/1.1"
    # One tunnel for the login's session, one for the forwarding client, one refused by TLS.
    assert tiny.requests() == [tunnel] * 3


# ---- WebSocket upgrades -------------------------------------------------------------------------


def websocket_app() -> web.Application:
    """Echoes text frames upper-cased, after a first frame with the X-Key it was given."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str(f"key={request.headers.get('X-Key')}")
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                await socket.send_str(message.data.upper())
        return socket

    app = web.Application()
    app.router.add_get("/ws", echo)
    return app


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_websocket_upgrades_go_through_the_proxy(tmp_path: Path, scheme: str) -> None:
    tls, ca = server_tls(tmp_path)
    with running_tinyproxy(tmp_path / "tinyproxy") as tiny:
        async with serving(websocket_app(), tls if scheme == "https" else None) as upstream:
            route = {"upstream": str(upstream), "auth": STATIC, "tls": {"ca_file": str(ca)}}
            environ = {"HTTP_PROXY": tiny.url(), "HTTPS_PROXY": tiny.url()}
            async with (
                running_proxy(settings_with({"live": route}, environ)) as proxy,
                ClientSession() as client,
                client.ws_connect(proxy.base.with_path("/live/ws")) as socket,
            ):
                first = await socket.receive_str(timeout=PATIENCE)
                await socket.send_str("through the tunnel")
                echoed = await socket.receive_str(timeout=PATIENCE)
    assert (first, echoed) == ("key=static-key-0a1b", "THROUGH THE TUNNEL")
    # A plain-HTTP upgrade is tunnelled too: forward proxies drop `Upgrade` from absolute form.
    assert tiny.requests() == [f"CONNECT {authority(upstream)} HTTP/1.1"]


# ---- a proxy that refuses is a 502 that names it ------------------------------------------------


async def test_a_proxy_that_refuses_connections_is_a_502_naming_it(tmp_path: Path) -> None:
    clock = ManualClock()
    tls, _ = server_tls(tmp_path)
    port = free_port()  # nothing listens there
    async with serving(emnify_app(clock)) as plain, serving(emnify_app(clock), tls) as secure:
        routes = {
            "plain": {"upstream": str(plain)},
            "secure": {"upstream": str(secure)},
            "login": {"upstream": str(plain), "auth": EMNIFY},
        }
        dead = f"http://127.0.0.1:{port}"
        environ = {"HTTP_PROXY": dead, "HTTPS_PROXY": dead}
        async with running_proxy(settings_with(routes, environ), clock) as proxy:
            answers = {name: await get(proxy, f"/{name}/api/v1/sims") for name in routes}
            answers["ws"] = await upgrade(proxy, "/plain/ws")
    named = f"the outbound proxy 127.0.0.1:{port} refused the connection or could not be reached"
    for name, (status, content_type, body) in answers.items():
        assert (status, content_type) == (502, PROBLEM), name
        assert isinstance(body, dict)
        assert body["detail"] == named, name
        kind = "login-unavailable" if name == "login" else "proxy-unavailable"
        assert body["type"] == f"urn:authproxy:problem:{kind}", name


async def test_a_proxy_that_asks_for_credentials_is_a_502_naming_it(tmp_path: Path) -> None:
    clock = ManualClock()
    tls, ca = server_tls(tmp_path)
    with running_tinyproxy(tmp_path / "tinyproxy", "BasicAuth proxyuser pr0xy-pass") as tiny:
        async with (
            serving(emnify_app(clock)) as plain,
            serving(emnify_app(clock), tls) as secure,
            serving(websocket_app()) as sockets,
        ):
            via = tiny.url()  # no credentials
            routes = {
                "plain": {"upstream": str(plain), "proxy": via},
                "secure": {"upstream": str(secure), "proxy": via, "tls": {"ca_file": str(ca)}},
                "login": {"upstream": str(plain), "proxy": via, "auth": EMNIFY},
            }
            sockets_route = {"upstream": str(sockets), "proxy": via}
            settings = settings_with({**routes, "live": sockets_route}, {})
            async with running_proxy(settings, clock) as proxy:
                answers = {name: await get(proxy, f"/{name}/api/v1/sims") for name in routes}
                answers["live"] = await upgrade(proxy, "/live/ws")  # a tunnel, for ws://
    named = (
        f"the outbound proxy {tiny.address} asks for credentials (407); give them in the proxy URL"
    )
    for name, (status, content_type, body) in answers.items():
        assert (status, content_type) == (502, PROBLEM), name
        assert isinstance(body, dict)
        assert body["detail"] == named, name
    # Each was sent to the proxy, which refused it.
    assert sorted(tiny.requests()) == sorted(
        [
            f"CONNECT {authority(secure)} HTTP/1.1",
            f"CONNECT {authority(sockets)} HTTP/1.1",
            f"GET {plain}/api/v1/sims HTTP/1.1",
            f"POST {plain}/api/v1/authenticate HTTP/1.1",
        ]
    )


async def test_refused_proxy_credentials_are_a_502_naming_the_proxy(tmp_path: Path) -> None:
    """tinyproxy 1.11 answers wrong credentials with 401 instead of 407 (tinyproxy#532), so this
    proxy is a script that refuses every request with a 407, and records what it was sent."""
    clock = ManualClock()
    tls, ca = server_tls(tmp_path)
    sent: list[bytes] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n'
        )
        await writer.drain()

    async with (
        RawUpstream(refuse) as refusing,
        serving(emnify_app(clock)) as plain,
        serving(emnify_app(clock), tls) as secure,
    ):
        via = f"http://proxyuser:wr%40ng-pass@{authority(refusing.url)}"
        routes = {
            "plain": {"upstream": str(plain), "proxy": via},
            "secure": {"upstream": str(secure), "proxy": via, "tls": {"ca_file": str(ca)}},
            "login": {"upstream": str(plain), "proxy": via, "auth": EMNIFY},
        }
        async with running_proxy(settings_with(routes, {}), clock) as proxy:
            answers = {name: await get(proxy, f"/{name}/api/v1/sims") for name in routes}
    named = f"the outbound proxy {authority(refusing.url)} refused the proxy credentials (407)"
    for name, (status, _, body) in answers.items():
        assert status == 502, name
        assert isinstance(body, dict)
        assert body["detail"] == named, name
        assert "wr@ng" not in str(body)
    basic = "Basic " + base64.b64encode(b"proxyuser:wr@ng-pass").decode()
    heads = sorted(head.decode().split("\r\n")[0] for head in sent)
    assert heads == [
        f"CONNECT {authority(secure)} HTTP/1.1",
        f"GET {plain}/api/v1/sims HTTP/1.1",
        f"POST {plain}/api/v1/authenticate HTTP/1.1",
    ]
    assert all(f"Proxy-Authorization: {basic}\r\n".encode() in head for head in sent)


async def test_a_refused_tunnel_is_a_502_naming_the_proxy(tmp_path: Path) -> None:
    tls, ca = server_tls(tmp_path)
    # CONNECT only to port 443: the upstream's port is refused.
    with running_tinyproxy(tmp_path / "tinyproxy", "ConnectPort 443") as tiny:
        async with serving(websocket_app(), tls) as secure:
            route = {"upstream": str(secure), "tls": {"ca_file": str(ca)}}
            async with running_proxy(
                settings_with({"secure": route}, {"HTTPS_PROXY": tiny.url()})
            ) as proxy:
                status, content_type, body = await get(proxy, "/secure/anything")
    assert (status, content_type) == (502, PROBLEM)
    assert isinstance(body, dict)
    assert body["detail"].startswith(f"the outbound proxy {tiny.address} refused the tunnel")
    assert body["type"] == "urn:authproxy:problem:proxy-unavailable"
    assert tiny.requests() == [f"CONNECT {authority(secure)} HTTP/1.1"]


# ---- the pool ----------------------------------------------------------------------------------


async def test_the_session_guard_keeps_a_proxied_session_on_its_origin(tmp_path: Path) -> None:
    """Logins and upgrades go through aiohttp's session: through a proxy too, nothing it sends
    leaves the upstream's origin, and a redirect elsewhere is refused, not followed."""
    with running_tinyproxy(tmp_path / "tinyproxy") as tiny:
        async with FakeUpstream() as elsewhere:

            async def redirect(_request: web.BaseRequest) -> web.StreamResponse:
                return web.Response(status=302, headers={"Location": f"{elsewhere.url}/steal"})

            async with FakeUpstream(redirect) as upstream:
                settings = settings_with({"api": {"upstream": str(upstream.url)}}, {})
                routes = [replace(settings.routes[0], proxy=OutboundProxy("127.0.0.1", tiny.port))]
                pool = UpstreamPool(routes)
                try:
                    session = pool.session("api")
                    with pytest.raises(ForeignOriginRefused):
                        await session.get(elsewhere.url.with_path("/direct"))
                    with pytest.raises(ForeignOriginRefused):
                        await session.get(upstream.url.with_path("/redirects"))
                finally:
                    await pool.close()
    assert elsewhere.requests == []
    assert tiny.requests() == [f"GET {upstream.url}/redirects HTTP/1.1"]

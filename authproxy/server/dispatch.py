"""One request, start to end: its id, the target checks, the browser and client gates, routing,
forwarding, the problem answers, and the access-log line and metrics it leaves behind.

It holds no auth logic (a route's `RouteAuth` does) and decides nothing about configs: `Proxy`
hands it a `Routing` (server/routing.py) per config and swaps it whole on reload.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import time

import structlog
from aiohttp import HttpVersion10, HttpVersion11, web

from authproxy.errors import UpstreamError
from authproxy.gateway.browser import answer_headers, is_preflight
from authproxy.gateway.clients import Caller, ClientGate
from authproxy.gateway.endpoints import is_own, unauthorized
from authproxy.gateway.metrics import Metrics
from authproxy.logs.setup import info_fast
from authproxy.problems import problem_for, problem_response
from authproxy.proxy.forward import Exchange, forward
from authproxy.proxy.request_body import ReplayBudget
from authproxy.proxy.routes import AmbiguousPath, UnsafePath
from authproxy.server.protocol import close_after_answer
from authproxy.server.routing import Routing

access_log = structlog.get_logger("authproxy.access")

# nginx's convention for "the client went away before the answer": not an HTTP status on the wire.
CLIENT_CLOSED = 499


# New ids are a random per-process prefix plus a counter: unique, 24 hex digits like before, and
# without an os.urandom call per request.
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def request_id_of(request: web.BaseRequest) -> str:
    """The client's X-Request-Id when it is sane, else a new unique one."""
    given = request.headers.get("X-Request-Id")
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


class Dispatcher:
    """`handle` answers every request the proxy accepts, with the current `routing`."""

    def __init__(self, routing: Routing, metrics: Metrics, replay_budget: ReplayBudget) -> None:
        self.routing = routing
        self._metrics = metrics
        self._replay_budget = replay_budget

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        exchange = Exchange(request_id=request_id_of(request))
        response: web.StreamResponse | None = None
        self._metrics.in_flight.inc()
        try:
            response = await self._dispatch(request, exchange, self.routing)
            return response
        except UpstreamError as error:
            response = problem_for(error)
            if error.closes_connection:
                close_after_answer(request)
            response.headers.extend(exchange.answer_headers)  # a listed origin may read why
            return response
        except asyncio.CancelledError:
            exchange.status = exchange.status or CLIENT_CLOSED
            raise
        finally:
            self._metrics.in_flight.dec()
            self._replay_budget.release(exchange.replay_held)
            if response is not None:
                exchange.status = exchange.status or response.status
                if not response.prepared:
                    response.headers["X-Request-Id"] = exchange.request_id
                    exchange.bytes_out = exchange.bytes_out or len(getattr(response, "body", b""))
            info_fast(
                access_log,
                "request",
                request_id=exchange.request_id,
                route=exchange.route,
                client=exchange.client,
                # The peer's address (none on a Unix socket), never a client-sent X-Forwarded-For.
                remote=request.remote or None,
                method=request.method,
                path=request.raw_path,
                protocol=_PROTOCOLS.get(request.version) or _protocol(request),
                user_agent=request.headers.get("User-Agent"),
                referer=request.headers.get("Referer"),
                status=exchange.status,
                bytes_in=exchange.bytes_in,
                bytes_out=exchange.bytes_out,
                upstream_ms=_ms(exchange.upstream_ms),
                total_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            self._metrics.request_done(
                exchange.route, exchange.client, exchange.status, exchange.upstream_ms
            )

    async def _dispatch(
        self, request: web.BaseRequest, exchange: Exchange, routing: Routing
    ) -> web.StreamResponse:
        target = request.raw_path
        if request.method == "CONNECT":
            return problem_response(
                405,
                "authproxy is a reverse proxy; CONNECT is not supported",
                headers={"Allow": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"},
            )
        if not target.startswith("/"):
            return problem_response(400, "only origin-form request targets (/path) are accepted")
        browsers = routing.browsers
        request, refusal = browsers.admit(request)
        if refusal is not None:
            return refusal
        if is_own(target):
            # Read-only, but no other origin needs them: refusing keeps the status page, metrics
            # and probes out of reach of cross-site timing and of no-cors requests.
            if (refusal := browsers.cross_site(request.headers, None)) is not None:
                return refusal
            return await routing.endpoints.answer(request, target.partition("?")[0], exchange)
        if is_preflight(request) and (answer := _preflight(routing, target, request)) is not None:
            return answer
        caller, refusal = await _identify(routing.gate, request, exchange)
        if refusal is not None:
            return refusal
        try:
            match = routing.table.match(target)
        except UnsafePath as error:
            return problem_response(400, str(error))
        except AmbiguousPath as error:
            return problem_response(400, str(error), kind="ambiguous-path")
        if match is None:
            return _unknown_route(routing)
        route = match.route
        exchange.route = route.name
        if caller is not None and not routing.gate.allows(caller.client, route.name):
            return problem_response(
                403,
                "this client may not use this route",
                kind="route-forbidden",
                route=route.name,
            )
        if (refusal := browsers.cross_site(request.headers, route.cors)) is not None:
            return refusal
        exchange.answer_headers = answer_headers(request.headers, route.cors)
        return await forward(request, routing.runtimes[route.name], match.upstream_url, exchange)


async def _identify(
    gate: ClientGate, request: web.BaseRequest, exchange: Exchange
) -> tuple[Caller | None, web.Response | None]:
    """The calling client on a gateway (None without clients), or the refusal to send."""
    if not gate.enabled:
        return None, None
    # Before routing: an unknown route answers 401 too, so nobody can probe which exist.
    caller = gate.identify(request.headers)
    if caller is None:
        return None, unauthorized()
    exchange.client = caller.client.name
    exchange.strip = frozenset({caller.carrier.lower()})
    if wait := await gate.retry_after(caller.client):
        return caller, problem_response(
            429,
            "this client's rate limit is used up; retry later",
            kind="rate-limited",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return caller, None


def _preflight(routing: Routing, target: str, request: web.BaseRequest) -> web.Response | None:
    """Answer a CORS preflight before any client key is asked for: browsers never send one
    on a preflight (Fetch §4.8). None: handle it as an ordinary request."""
    try:
        match = routing.table.match(target)
    except (UnsafePath, AmbiguousPath):
        return None  # refused below, after the client key, like any request on this path
    return routing.browsers.preflight(request.headers, None if match is None else match.route.cors)


_PROTOCOLS = {HttpVersion11: "HTTP/1.1", HttpVersion10: "HTTP/1.0"}


def _protocol(request: web.BaseRequest) -> str:
    return f"HTTP/{request.version.major}.{request.version.minor}"


def _unknown_route(routing: Routing) -> web.Response:
    """404, naming the route prefixes on a localhost proxy, where whoever calls is its user.
    A gateway (clients) never does: it does not tell a caller which routes exist."""
    if routing.gate.enabled:
        return problem_response(404, "no route matches this path", kind="unknown-route")
    prefixes = sorted(route.prefix for route in routing.table.routes)
    return problem_response(
        404,
        f"no route matches this path; routes: {', '.join(prefixes)}",
        kind="unknown-route",
        extra={"routes": prefixes},
    )


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)

"""What one config makes of its routes: each route's runtime, and the `Routing` dispatch reads.

`Proxy` builds a whole `Routing` before it switches to it, and a request reads the one it finds
once (server/dispatch.py), so no request ever sees half of two configs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from authproxy.gateway.browser import CORS_RESPONSE_HEADERS, BrowserGuard
from authproxy.gateway.clients import ClientGate
from authproxy.gateway.endpoints import Endpoints, Fleet
from authproxy.gateway.rates import ClientRates
from authproxy.proxy.forward import RouteRuntime
from authproxy.proxy.headers import LocationRewriter
from authproxy.proxy.request_body import BodyLimits, ReplayBudget
from authproxy.proxy.routes import RouteTable
from authproxy.settings import HeaderEdits, Route, Settings
from authproxy.upstream.pool import UpstreamPool, timeout_for

if TYPE_CHECKING:
    from authproxy.auth.grant import Grant
    from authproxy.auth.manager import TokenManager


@dataclass(frozen=True, slots=True)
class Routing:
    """What one config decides about requests. A reload replaces it whole, and a request reads
    it once: in-flight requests finish with the objects they started with."""

    table: RouteTable
    runtimes: Mapping[str, RouteRuntime[Grant]]
    gate: ClientGate
    browsers: BrowserGuard
    endpoints: Endpoints


def build_routing(
    settings: Settings,
    runtimes: Mapping[str, RouteRuntime[Grant]],
    managers: Mapping[str, TokenManager],
    *,
    bound_port: int,
    fleet: Fleet,
    rates: ClientRates,
    now: Callable[[], float],
) -> Routing:
    gate = ClientGate(settings.clients, rates)
    return Routing(
        table=RouteTable(settings.routes),
        runtimes=runtimes,
        gate=gate,
        browsers=BrowserGuard(settings, bound_port),
        endpoints=Endpoints(settings, managers, gate, fleet, now),
    )


def route_runtime(
    route: Route,
    auth: TokenManager | None,
    settings: Settings,
    pool: UpstreamPool,
    replay_budget: ReplayBudget,
) -> RouteRuntime[Grant]:
    """Everything a request on `route` needs, prepared once per config."""
    rules = route.headers
    return RouteRuntime(
        route=route,
        session=pool.upgrade_session(route.name),
        client=pool.client(route.name),
        timeout=timeout_for(route),
        rewriter=LocationRewriter(
            str(route.upstream.origin()), route.upstream.raw_path.rstrip("/"), route.prefix
        ),
        auth=auth,
        drop_request=auth.request_headers if auth else frozenset(),
        # The proxy answers CORS itself (gateway/browser.py): the upstream's never passes.
        drop_response=(auth.response_headers if auth else frozenset())
        | CORS_RESPONSE_HEADERS
        | (rules.response.remove if rules else frozenset()),
        bodies=BodyLimits(settings.body_timeout, replay_budget),
        websocket_message=settings.websocket_message,
        request_edits=rules.request if rules and rules.request != HeaderEdits() else None,
        response_assign=rules.response.assign if rules else (),
    )

"""A route's login driver and the sessions it logs in through: the upstream's, and one for each
other origin the route logs in at (an identity provider's token endpoint).

Both `serve` (`app.Proxy`) and `authproxy login` / `token` (`oneshot.py`) log in with these, so a
login from the command line reaches the network exactly as the proxy's own does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from authproxy.auth.driver import AuthDriver
from authproxy.auth.endpoints import elsewhere
from authproxy.auth_spec import AuthSpec
from authproxy.settings import Route
from authproxy.upstream.pool import UpstreamPool, timeout_for

if TYPE_CHECKING:
    from aiohttp import ClientSession
    from yarl import URL


def auth_driver(route: Route, pool: UpstreamPool) -> AuthDriver:
    """The driver of a route's logins, on the route's own session: what `serve` and
    `authproxy login` log in with."""
    assert route.auth is not None
    return AuthDriver(
        route.name,
        pool.session(route.name),
        route.upstream.origin(),
        timeout_for(route),
        deadline=route.auth.timeout,
        elsewhere=login_sessions(route, route.auth, pool),
    )


def login_sessions(
    route: Route, auth: AuthSpec, pool: UpstreamPool
) -> list[tuple[URL, ClientSession]]:
    """A session for each other origin the route logs in at (an identity provider).

    Each comes from the pool as if it were a route of its own to that origin, with the route's
    TLS settings and that origin's outbound-proxy decision: it refuses every other origin like
    the upstream's session does.
    """
    sessions = []
    for origin in elsewhere(auth, route.upstream):
        # A space is never in a route name: this one cannot take a configured route's place.
        login = replace(
            route,
            name=f"{route.name} login at {origin}",
            upstream=origin,
            proxy=route.login_proxies.get(str(origin)),
        )
        pool.add(login)
        sessions.append((origin, pool.session(login.name)))
    return sessions

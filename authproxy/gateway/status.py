"""What the proxy knows about each route's token, for people (`/-/status`) and probes (`/-/ready`).

Only states, times and counters: a status document never holds a token or a credential, and
config values in it (the upstream URL) are masked where a `${...}` secret went into them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from authproxy.auth.stats import TokenStatus
from authproxy.secrets import masked
from authproxy.settings import Settings


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


NO_AUTH_TOKEN: dict[str, object] = {
    "state": "none",
    "static": False,
    "expires_at": None,
    "expires_in_seconds": None,
    "obtained_at": None,
    "last_login": {"at": None, "outcome": None},
    "logins": 0,
    "refreshes": 0,
    "failures": 0,
    "recent_errors": [],
    "learned_lifetime_seconds": None,
}


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def token_status(token: TokenStatus, now: float) -> dict[str, object]:
    expires_at = token.expires_at
    return {
        "state": token.state,
        "static": token.static,
        "expires_at": iso(expires_at),
        "expires_in_seconds": None if expires_at is None else round(expires_at - now, 1),
        "obtained_at": iso(token.obtained_at),
        "last_login": {"at": iso(token.last_login_at), "outcome": token.last_outcome},
        "logins": token.logins,
        "refreshes": token.refreshes,
        "failures": token.failures,
        "recent_errors": list(token.recent_errors),
        # How long tokens of an API that does not say were seen to live (see auth/lifetimes.py).
        "learned_lifetime_seconds": _rounded(token.learned_lifetime),
    }


def status_document(
    settings: Settings,
    tokens: Mapping[str, TokenStatus],
    now: float,
    from_store: frozenset[str] = frozenset(),
) -> dict[str, object]:
    """`/-/status`: every route, and the token of each route with auth (`tokens` by route);
    `from_store`: routes whose token is the shared store's, not the answering process's."""
    routes: dict[str, object] = {}
    for route in settings.routes:
        token = tokens.get(route.name)
        described = NO_AUTH_TOKEN
        if token is not None:
            described = token_status(token, now)
            described["source"] = "store" if route.name in from_store else "process"
        routes[route.name] = {
            "prefix": route.prefix,
            "upstream": str(route.upstream),
            # The outbound proxy as host:port (never its credentials), or null: directly.
            "proxy": str(route.proxy) if route.proxy else None,
            "preset": route.auth.preset if route.auth else None,
            "auth": token is not None,
            # Same shape for every route, so a client can read token.state without a special case.
            "token": described,
        }
    return masked({"now": iso(now), "routes": routes})


def readiness_failures(tokens: Mapping[str, TokenStatus]) -> dict[str, str]:
    """Routes that cannot serve now: their last login failed and the backoff has not run out."""
    return {
        name: token.last_error or "login failed"
        for name, token in tokens.items()
        if not token.ready
    }

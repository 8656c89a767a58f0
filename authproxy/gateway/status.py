"""What the proxy knows about each route's token, for people (`/-/status`) and probes (`/-/ready`).

Only states, times and counters: a status document never holds a token or a credential, and
config values in it (the upstream URL) are masked where a `${...}` secret went into them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from authproxy.auth.manager import TokenManager
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


def token_status(manager: TokenManager, now: float) -> dict[str, object]:
    grant, stats = manager.current_grant, manager.stats
    if manager.failing(now):
        state = "failed"
    elif grant is None:
        state = "expired" if stats.logins or stats.refreshes else "none"
    elif not manager.usable(now):
        # The manager's view, leeway included: a token it will no longer inject is "expired"
        # here too, not "expiring" for its last seconds.
        state = "expired"
    elif manager.renew_at is not None and now >= manager.renew_at:
        state = "expiring"
    else:
        state = "valid"
    expires_at = grant.expires_at if grant is not None else None
    return {
        "state": state,
        "static": manager.spec.is_static,
        "expires_at": iso(expires_at),
        "expires_in_seconds": None if expires_at is None else round(expires_at - now, 1),
        "obtained_at": iso(grant.obtained_at) if grant is not None and stats.logins else None,
        "last_login": {"at": iso(stats.last_login_at), "outcome": stats.last_outcome},
        "logins": stats.logins,
        "refreshes": stats.refreshes,
        "failures": stats.failures,
        "recent_errors": list(stats.recent_errors),
        # How long tokens of an API that does not say were seen to live (see auth/lifetimes.py).
        "learned_lifetime_seconds": _rounded(manager.lifetimes.learned),
    }


def status_document(
    settings: Settings, managers: Mapping[str, TokenManager], now: float
) -> dict[str, object]:
    routes: dict[str, object] = {}
    for route in settings.routes:
        manager = managers.get(route.name)
        routes[route.name] = {
            "prefix": route.prefix,
            "upstream": str(route.upstream),
            "preset": route.auth.preset if route.auth else None,
            "auth": manager is not None,
            # Same shape for every route, so a client can read token.state without a special case.
            "token": token_status(manager, now) if manager else NO_AUTH_TOKEN,
        }
    return masked({"now": iso(now), "routes": routes})


def readiness_failures(managers: Mapping[str, TokenManager], now: float) -> dict[str, str]:
    """Routes that cannot serve now: their last login failed and the backoff has not run out."""
    return {
        name: manager.stats.last_error or "login failed"
        for name, manager in managers.items()
        # Not `current_grant is None`: an expired grant is still held but never injected, so a
        # route whose token expired while its login fails answers 502 and must not read as ready.
        if manager.failing(now) and not manager.usable(now)
    }

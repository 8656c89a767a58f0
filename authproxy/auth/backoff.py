"""How long a route waits after a failed login before it tries again.

A rejected login (4xx: wrong credentials) waits `relogin_after_rejection`, so an account that
locks after three bad passwords never locks; a transient failure (connection error, 5xx, timeout)
backs off exponentially from 1 s, capped at 5 minutes. While a failure holds, requests get it at
once and no login is attempted. A successful login clears it.
"""

from __future__ import annotations

import structlog

from authproxy.errors import LoginFailed, LoginRejected

log = structlog.get_logger("authproxy.auth")

BACKOFF_START, BACKOFF_CAP = 1.0, 300.0


class LoginBackoff:
    __slots__ = ("_after_rejection", "_next_wait", "_retry_at", "failure", "route")

    def __init__(self, route: str, after_rejection: float) -> None:
        self.route = route
        self._after_rejection = after_rejection
        self.failure: LoginFailed | None = None
        self._retry_at = 0.0
        self._next_wait = BACKOFF_START

    def holding(self, now: float) -> LoginFailed | None:
        """The failure that still holds logins off, or None."""
        return self.failure if self.failure is not None and now < self._retry_at else None

    def hold_until(self, until: float, failure: LoginFailed) -> None:
        """A hold recorded in the token store (`holds.py`): no login before `until`."""
        self.failure = failure
        self._retry_at = max(self._retry_at, until)

    def succeeded(self) -> None:
        self.failure = None
        self._next_wait = BACKOFF_START

    def failed(self, error: LoginFailed, now: float) -> None:
        if isinstance(error, LoginRejected):
            wait = self._after_rejection
        else:
            wait = self._next_wait
            self._next_wait = min(self._next_wait * 2, BACKOFF_CAP)
        self.failure = error
        self._retry_at = now + wait
        log.warning(
            "login failed",
            route=self.route,
            reason=error.detail,
            upstream_status=error.upstream_status,
            retry_in_seconds=round(wait, 1),
        )

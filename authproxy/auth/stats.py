"""What a route's token manager has done, counted; and the snapshot the gateway reads.

The gateway (`/-/status`, `/-/ready`, `/-/metrics`) sees a route's auth only through
`TokenStatus`, a frozen snapshot: it never holds a token, and it never reaches into the manager.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from authproxy.auth.grant import Grant
from authproxy.errors import LoginFailed, LoginRejected

RECENT_ERRORS = 5


def outcome_of(error: LoginFailed) -> str:
    return "rejected" if isinstance(error, LoginRejected) else "unavailable"


@dataclass(slots=True)
class AuthStats:
    logins: int = 0
    refreshes: int = 0
    failures: int = 0
    last_login_at: float | None = None
    last_outcome: str | None = None
    last_error: str | None = None
    recent_errors: list[str] = field(default_factory=list)
    login_outcomes: Counter[str] = field(default_factory=Counter)
    refresh_outcomes: Counter[str] = field(default_factory=Counter)

    def refreshed(self, error: LoginFailed | None) -> None:
        self.refreshes += 1
        self.refresh_outcomes["ok" if error is None else outcome_of(error)] += 1
        if error is None:
            self.last_outcome = "refreshed"

    def logged_in(self, error: LoginFailed | None) -> None:
        self.logins += 1
        self.login_outcomes["ok" if error is None else outcome_of(error)] += 1
        if error is None:
            self.last_outcome = "ok"

    def failed(self, error: LoginFailed, now: float) -> None:
        self.failures += 1
        self.last_login_at = now
        self.last_error = error.detail
        self.recent_errors = [*self.recent_errors[-(RECENT_ERRORS - 1) :], error.detail]
        self.last_outcome = outcome_of(error)


@dataclass(frozen=True, slots=True)
class TokenStatus:
    """One route's token as the gateway may show it: states, times and counts, never a value.

    `state` is `valid`, `expiring` (due for renewal), `expired` (held but never injected),
    `none` or `failed` (the last login failed and its backoff holds).
    """

    state: str
    static: bool
    usable: bool  # a request now gets a token without waiting on a login (fresh or stale)
    expires_at: float | None
    obtained_at: float | None
    last_login_at: float | None
    last_outcome: str | None
    last_error: str | None
    logins: int
    refreshes: int
    failures: int
    recent_errors: tuple[str, ...]
    learned_lifetime: float | None
    login_outcomes: Mapping[str, int]
    refresh_outcomes: Mapping[str, int]

    @property
    def ready(self) -> bool:
        """Whether a request gets a token now or can log in for one (for `/-/ready`).

        Not `usable` alone: an expired grant is held (its refresh token may still serve) but never
        injected, so a route whose token expired while its login fails must not read as ready.
        """
        return self.state != "failed" or self.usable

    @classmethod
    def of(
        cls,
        stats: AuthStats,
        grant: Grant | None,
        now: float,
        *,
        static: bool,
        usable: bool,
        failing: bool,
        renew_at: float | None,
        learned_lifetime: float | None,
    ) -> TokenStatus:
        if failing:
            state = "failed"
        elif grant is None:
            state = "expired" if stats.logins or stats.refreshes else "none"
        elif not usable:
            state = "expired"  # the manager's view, leeway included: it will not inject it
        elif renew_at is not None and now >= renew_at:
            state = "expiring"
        else:
            state = "valid"
        return cls(
            state=state,
            static=static,
            usable=usable,
            expires_at=None if grant is None else grant.expires_at,
            obtained_at=grant.obtained_at if grant is not None and stats.logins else None,
            last_login_at=stats.last_login_at,
            last_outcome=stats.last_outcome,
            last_error=stats.last_error,
            logins=stats.logins,
            refreshes=stats.refreshes,
            failures=stats.failures,
            recent_errors=tuple(stats.recent_errors),
            learned_lifetime=learned_lifetime,
            login_outcomes=MappingProxyType(dict(stats.login_outcomes)),
            refresh_outcomes=MappingProxyType(dict(stats.refresh_outcomes)),
        )

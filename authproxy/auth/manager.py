"""One route's token lifecycle: hold, renew early, single-flight, back off, recover from a 401.

States, from the hot path's view (`authorize`):
    FRESH    a grant not yet due for renewal: a dict read and the injection, nothing else
    STALE    past its renew deadline, not expired: used, and a background renewal is started
    INVALID  none, or expired: the request waits on the one login in flight (single-flight)
    FAILED   the last login failed and its backoff has not run out: 502 at once, no login

New grants come from `supply.py` (another process's, or one login at a time, backed off after a
failure), refused tokens are judged in `refusals.py`, lifetimes the API does not announce are
learned in `lifetimes.py`, and the route's entries in its stores are kept by `records.py`: this
module is the state machine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import structlog
from multidict import CIMultiDict

from authproxy.auth.clock import Clock
from authproxy.auth.driver import AuthDriver
from authproxy.auth.flow import adopt_from_response
from authproxy.auth.flow import static_grant as make_static_grant
from authproxy.auth.grant import Grant
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.lifetimes import LifetimeLearner
from authproxy.auth.ports import Answer, TokenStore
from authproxy.auth.refusals import RefusalEvidence
from authproxy.auth.shared import SharedTokens
from authproxy.auth.stats import AuthStats, TokenStatus
from authproxy.auth.supply import GrantSupply
from authproxy.auth_spec import AuthSpec
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.auth")


class TokenManager:
    """The `RouteAuth[Grant]` of a route with an `auth` block."""

    def __init__(
        self,
        route: str,
        spec: AuthSpec,
        *,
        driver: AuthDriver,
        store: TokenStore,
        store_key: str,
        clock: Clock,
        tasks: Tasks,
        rng: random.Random | None = None,
        shared: SharedTokens | None = None,
    ) -> None:
        self.route = route
        self.spec = spec
        self.store_key = store_key
        self.stats = AuthStats()
        self.lifetimes = LifetimeLearner()
        self._clock = clock
        self._tasks = tasks
        self._rng = rng or random.Random()
        self._injector = CompiledInjector.from_spec(spec)
        # The client's own Authorization never reaches an upstream whose auth we manage.
        self.request_headers = self._injector.names | {"authorization"}
        self.response_headers = frozenset(name.lower() for name in spec.strip_response_headers)
        self._refusals = RefusalEvidence(route)
        self._grant: Grant | None = None
        self._renew_at: float | None = None
        self._used_since_login = False
        self._supply = GrantSupply(
            route,
            spec,
            driver=driver,
            store=store,
            store_key=store_key,
            injector=self._injector,
            clock=clock,
            tasks=tasks,
            stats=self.stats,
            shared=shared,
            current=lambda: self._grant,
            install=lambda grant, logged_in: self._install(grant, announce=logged_in),
        )
        self._sharing = self._supply.sharing
        self._records = self._supply.records
        if spec.is_static:
            self._grant = make_static_grant(spec, clock.now())
        elif (stored := self._records.grant()) is not None and self._supply.fits(stored):
            self._install(stored, announce=False)
        self._supply.resume_hold()  # after that install, which ends any hold

    @property
    def current_grant(self) -> Grant | None:
        return self._grant

    @property
    def logging_in(self) -> bool:
        """A login or refresh is in flight."""
        return self._supply.busy

    def usable(self, now: float) -> bool:
        """True when a request now gets a token without waiting on a login (fresh or stale).

        An expired grant is kept (its refresh token may still serve) but is never injected.
        """
        grant = self._grant
        return grant is not None and not grant.expired(now)

    def status(self, now: float) -> TokenStatus:
        """The snapshot the gateway shows: states, times and counts, never a value."""
        return TokenStatus.of(
            self.stats,
            self._grant,
            now,
            static=self.spec.is_static,
            usable=self.usable(now),
            failing=self._supply.holding(now) is not None,
            renew_at=self._renew_at,
            learned_lifetime=self.lifetimes.learned,
        )

    # ---- the hot path -----------------------------------------------------------------------

    async def authorize(self, headers: CIMultiDict[str]) -> Grant:
        """A grant for one request, its headers set on `headers`; raises LoginFailed."""
        grant = self._grant
        if grant is None or (self._renew_at is not None and not self._fresh(grant)):
            grant = await self._supply.obtain()
        self._injector.apply(headers, grant)
        return grant

    def _fresh(self, grant: Grant) -> bool:
        """FRESH (True), or STALE (True, and a renewal starts); False: INVALID, wait for one."""
        now = self._clock.now()
        assert self._renew_at is not None
        if now < self._renew_at:
            self._used_since_login = True
            return True
        if not grant.expired(now):
            self._supply.renew_in_background()
            return True
        return False

    def answered(self, grant: Grant, answer: Answer, *, replayed: bool = False) -> bool:
        """The upstream's answer to a request sent with `grant` (`replayed`: sent again with it
        after a refusal): evidence for the refusal rules, and tokens rotated on it to adopt.

        True means the answer refuses the token; `reauthorize` may then give one to replay with.
        """
        status = answer.status
        refused = status in self.spec.invalid_statuses and not self.spec.is_static
        current = grant is self._grant
        if replayed:
            if refused:
                self._refusals.replay_refused(current=current, now=self._clock.now())
            elif status < 400:
                self._refusals.replay_accepted(current=current)
        elif current and status < 400:
            self._refusals.accepted()
        if current and status < 400 and self.lifetimes.lifted_by(grant, self._clock.now()):
            log.info("a token outlived the learned lifetime; learning it again", route=self.route)
            self._renew_at = self._renew_deadline(grant)
        adopt = self.spec.adopt
        if adopt is not None and answer.headers.get(adopt.trigger):
            self._adopt(answer.headers)
        return refused

    async def reauthorize(self, grant: Grant, headers: CIMultiDict[str]) -> Grant | None:
        """The upstream refused `grant`: a new grant (injected into `headers`) to replay with, or
        None when the refusal is to be passed on (see refusals.py)."""
        now = self._clock.now()
        if grant is self._grant and not self._supply.busy:
            if not self._refusals.ends(now):
                return None
            if not self._refusals.unproven and grant.expires_at is None:
                self.lifetimes.died(now - grant.obtained_at)
            log.info("token refused by the upstream; logging in again", route=self.route)
            self._drop()
            if (token := grant.values.get("token")) is not None and self._sharing is not None:
                await self._sharing.forget(token)
        renewed = self._grant
        if renewed is None or renewed is grant or not self.usable(now):
            if not self._supply.busy and self._refusals.holding(now):
                return None
            renewed = await self._supply.obtain()
        self._injector.apply(headers, renewed)
        return renewed

    def _adopt(self, headers: Mapping[str, str]) -> None:
        current = self._grant
        if current is None:
            return
        lowered = {name.lower(): value for name, value in headers.items()}
        rotated = adopt_from_response(self.spec, current, lowered, self._clock.now())
        if rotated is not None:
            if self._sharing is not None:
                self._sharing.go_private()
            self._install(rotated, announce=False)

    # ---- the grant held: installed, renewed when due, dropped --------------------------------

    def _install(self, grant: Grant, *, announce: bool) -> None:
        """Make `grant` the current one; `announce`: this process just logged in for it."""
        now = self._clock.now()
        previous = self._grant
        if announce and previous is not None:
            sticky = self.lifetimes.sticky
            grant = self.lifetimes.renewed(previous, grant, now)
            if self.lifetimes.sticky and not sticky:
                log.info("logging in again gives the token already held", route=self.route)
        self._grant = grant
        self._used_since_login = False
        self._refusals.installed(fresh=announce)
        self._renew_at = self._renew_deadline(grant)
        self._records.save(grant)
        self._supply.installed(logged_in=announce)
        if announce:
            self.stats.last_login_at = now
            lifetime = None if grant.expires_at is None else round(grant.expires_at - now, 1)
            log.info("token obtained", route=self.route, lifetime_seconds=lifetime)
            if self._renew_at is not None:
                self._tasks.spawn(self._renew_when_due(grant), name=f"renew-timer:{self.route}")

    def _renew_deadline(self, grant: Grant) -> float | None:
        if self.spec.is_static:
            return None  # static credentials cannot be renewed: used until refused
        return self.lifetimes.deadline(grant, self.spec.renew_at, self._rng.random())

    async def _renew_when_due(self, grant: Grant) -> None:
        """Renew ahead of expiry if the route was used since the login; idle routes stay idle."""
        assert self._renew_at is not None
        await self._clock.sleep_until(self._renew_at)
        if self._grant is grant and self._used_since_login:
            self._supply.renew_in_background()

    def _drop(self) -> None:
        self._grant = None
        self._renew_at = None
        self._records.forget()

"""One route's token lifecycle: hold, renew early, single-flight, back off, recover from a 401.

States, from the hot path's view (`authorize`):
    FRESH    a grant not yet due for renewal: a dict read and the injection, nothing else
    STALE    past its renew deadline, not expired: used, and a background renewal is started
    INVALID  none, or expired: the request waits on the one login in flight (single-flight)
    FAILED   the last login failed and its backoff has not run out: 502 at once, no login

Failed logins back off in `backoff.py`, refused tokens are judged in `refusals.py`, lifetimes the
API does not announce are learned in `lifetimes.py`, logins run one at a time in `flight.py`, the
route's entries in its stores are kept by `records.py`, and the shared store is used through
`shared.RouteSharing`: this module is the state machine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import structlog
from multidict import CIMultiDict

from authproxy.auth.backoff import LoginBackoff
from authproxy.auth.clock import Clock
from authproxy.auth.driver import AuthDriver
from authproxy.auth.flight import LoginFlight
from authproxy.auth.flow import adopt_from_response
from authproxy.auth.flow import static_grant as make_static_grant
from authproxy.auth.grant import Grant
from authproxy.auth.holds import held_failure, hold_record
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.lifetimes import LifetimeLearner
from authproxy.auth.ports import Answer, TokenStore
from authproxy.auth.records import RouteRecords
from authproxy.auth.refusals import RefusalEvidence
from authproxy.auth.renewal import renew_or_login
from authproxy.auth.shared import RouteSharing, SharedTokens
from authproxy.auth.stats import AuthStats, TokenStatus
from authproxy.auth_spec import AuthSpec
from authproxy.errors import LoginFailed, LoginRejected
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
        self._driver = driver
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
        self._flight = LoginFlight(
            route,
            tasks,
            self._attempt,
            succeeded=lambda grant, obtained: self._install(grant, announce=obtained),
            failed=self._record_failure,
        )
        self._backoff = LoginBackoff(route, spec.relogin_after_rejection)
        self._used_since_login = False
        self._sharing: RouteSharing | None = None
        if shared is not None and not spec.is_static:
            self._sharing = RouteSharing(
                route,
                store_key,
                shared,
                current=lambda: self._grant,
                adopt=lambda grant: self._install(grant, announce=False),
                acceptable=self._fits,
                clock=clock,
                tasks=tasks,
            )
        self._records = RouteRecords(route, store, store_key, self._sharing)
        if spec.is_static:
            self._grant = make_static_grant(spec, clock.now())
        elif (stored := self._records.grant()) is not None and self._fits(stored):
            self._install(stored, announce=False)
        if not spec.is_static and (hold := self._records.hold(clock.now())):
            # A login refused shortly before (another process, `authproxy login`, or this proxy
            # before a restart): a restart loop must not try the same password again.
            self._backoff.hold_until(hold.until, held_failure(route, hold))

    @property
    def current_grant(self) -> Grant | None:
        return self._grant

    @property
    def logging_in(self) -> bool:
        """A login or refresh is in flight."""
        return self._flight.busy

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
            failing=self._backoff.holding(now) is not None,
            renew_at=self._renew_at,
            learned_lifetime=self.lifetimes.learned,
        )

    # ---- the hot path -----------------------------------------------------------------------

    async def authorize(self, headers: CIMultiDict[str]) -> Grant:
        """A grant for one request, its headers set on `headers`; raises LoginFailed."""
        grant = self._grant
        if grant is None or (self._renew_at is not None and not self._fresh(grant)):
            grant = await self._obtain()
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
            self._renew_in_background()
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
        if grant is self._grant and not self._flight.busy:
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
            if not self._flight.busy and self._refusals.holding(now):
                return None
            renewed = await self._obtain()
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

    # ---- obtaining tokens ---------------------------------------------------------------------

    def _fits(self, grant: Grant) -> bool:
        """A stored grant this route can use: the values its headers read, and not expired.

        A grant stored under an older custom flow may lack a value the current inject reads, and
        would fail every request (KeyError).
        """
        return self._injector.accepts(grant) and not grant.expired(self._clock.now())

    async def _obtain(self) -> Grant:
        if not self._flight.busy and (stored := self._take_stored()) is not None:
            return stored
        if not self._flight.busy and (failure := self._backoff.holding(self._clock.now())):
            raise failure
        return await self._flight.join()

    def _take_stored(self) -> Grant | None:
        """A usable grant another process put in this process's store (`authproxy login` on
        the token file), installed; None when there is none. A shared store is read by the
        login itself (`RouteSharing`); a memory store only holds what this process put there."""
        if self._sharing is not None:
            return None
        stored = self._records.grant()
        current = self._grant
        if stored is None or stored is current or not self._fits(stored):
            return None
        if current is not None and stored.values == current.values:
            return None
        log.info("using a token another process stored", route=self.route)
        self._install(stored, announce=False)
        return stored

    def _renew_in_background(self) -> None:
        if self._backoff.holding(self._clock.now()) is None:
            self._flight.start_in_background()

    async def _attempt(self) -> tuple[Grant, bool]:
        """A new grant and whether this process logged in for it (False: another one did)."""
        if self._sharing is None:
            return await self._renew_or_login(), True
        return await self._sharing.obtain(self._renew_or_login)

    async def _renew_or_login(self) -> Grant:
        return await renew_or_login(
            self.spec, self._driver, self._grant, self._clock.now(), self.stats
        )

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
        self._backoff.succeeded()
        self._used_since_login = False
        self._refusals.installed(fresh=announce)
        self._renew_at = self._renew_deadline(grant)
        self._records.save(grant)
        if announce:
            self._records.keep_hold(None)  # credentials that log in are held off no more
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
            self._renew_in_background()

    def _drop(self) -> None:
        self._grant = None
        self._renew_at = None
        self._records.forget()

    def _record_failure(self, error: LoginFailed) -> None:
        now = self._clock.now()
        self.stats.failed(error, now)
        self._backoff.failed(error, now)
        if isinstance(error, LoginRejected):
            self._records.keep_hold(hold_record(error, now, self.spec.relogin_after_rejection))

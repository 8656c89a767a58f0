"""Where a route's next grant comes from: another process's, or a login of this one's own.

In order: a usable grant another process put in this process's store (`authproxy login` on the
token file) is taken without a login; else requests wait on the one login in flight (`flight.py`),
unless a failed login still holds logins off (`backoff.py`; across processes and restarts,
`holds.py`). With a shared store the login itself looks there first (`shared.RouteSharing`), for
a grant another process obtained; else it refreshes or logs in (`renewal.py`). A grant taken from
a store must fit the route: carry the values its headers read, and not be expired.

`GrantSupply` hands every new grant to the token manager (`install`), which alone decides what
requests use.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from authproxy.auth.backoff import LoginBackoff
from authproxy.auth.clock import Clock
from authproxy.auth.driver import AuthDriver
from authproxy.auth.flight import LoginFlight
from authproxy.auth.grant import Grant
from authproxy.auth.holds import held_failure, hold_record
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.ports import TokenStore
from authproxy.auth.records import RouteRecords
from authproxy.auth.renewal import renew_or_login
from authproxy.auth.shared import RouteSharing, SharedTokens
from authproxy.auth.stats import AuthStats
from authproxy.auth_spec import AuthSpec
from authproxy.errors import LoginFailed, LoginRejected
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.auth")

# A new grant, and whether this process just logged in for it (False: it was stored or shared).
Install = Callable[[Grant, bool], None]


class GrantSupply:
    """New grants for one route's token manager, which holds the current one (`current`)."""

    def __init__(
        self,
        route: str,
        spec: AuthSpec,
        *,
        driver: AuthDriver,
        store: TokenStore,
        store_key: str,
        injector: CompiledInjector,
        clock: Clock,
        tasks: Tasks,
        stats: AuthStats,
        shared: SharedTokens | None,
        current: Callable[[], Grant | None],
        install: Install,
    ) -> None:
        self._route = route
        self._spec = spec
        self._driver = driver
        self._injector = injector
        self._clock = clock
        self._stats = stats
        self._current = current
        self._install = install
        self._flight = LoginFlight(
            route, tasks, self._attempt, succeeded=install, failed=self._record_failure
        )
        self._backoff = LoginBackoff(route, spec.relogin_after_rejection)
        self.sharing: RouteSharing | None = None
        if shared is not None and not spec.is_static:
            self.sharing = RouteSharing(
                route,
                store_key,
                shared,
                current=current,
                adopt=lambda grant: install(grant, False),
                acceptable=self.fits,
                clock=clock,
                tasks=tasks,
            )
        self.records = RouteRecords(route, store, store_key, self.sharing)

    @property
    def busy(self) -> bool:
        """A login or refresh is in flight."""
        return self._flight.busy

    def holding(self, now: float) -> LoginFailed | None:
        """The failed login that still holds logins off, or None."""
        return self._backoff.holding(now)

    def fits(self, grant: Grant) -> bool:
        """A stored grant this route can use: the values its headers read, and not expired.

        A grant stored under an older custom flow may lack a value the current inject reads, and
        would fail every request (KeyError).
        """
        return self._injector.accepts(grant) and not grant.expired(self._clock.now())

    async def obtain(self) -> Grant:
        """A grant for requests that have none they can use; raises LoginFailed."""
        if not self._flight.busy and (stored := self._take_stored()) is not None:
            return stored
        if not self._flight.busy and (failure := self._backoff.holding(self._clock.now())):
            raise failure
        return await self._flight.join()

    def resume_hold(self) -> None:
        """Hold logins off as a hold in the store says: a login was refused shortly before (in
        another process, by `authproxy login`, or in this proxy before a restart), and a restart
        loop must not try the same password again."""
        if not self._spec.is_static and (hold := self.records.hold(self._clock.now())):
            self._backoff.hold_until(hold.until, held_failure(self._route, hold))

    def renew_in_background(self) -> None:
        if self._backoff.holding(self._clock.now()) is None:
            self._flight.start_in_background()

    def installed(self, *, logged_in: bool) -> None:
        """A grant became the current one; `logged_in`: this process just logged in for it."""
        self._backoff.succeeded()
        if logged_in:
            self.records.keep_hold(None)  # credentials that log in are held off no more

    def _take_stored(self) -> Grant | None:
        """A usable grant another process put in this process's store (`authproxy login` on
        the token file), installed; None when there is none. A shared store is read by the
        login itself (`RouteSharing`); a memory store only holds what this process put there."""
        if self.sharing is not None:
            return None
        stored = self.records.grant()
        current = self._current()
        if stored is None or stored is current or not self.fits(stored):
            return None
        if current is not None and stored.values == current.values:
            return None
        log.info("using a token another process stored", route=self._route)
        self._install(stored, False)
        return stored

    async def _attempt(self) -> tuple[Grant, bool]:
        """A new grant and whether this process logged in for it (False: another one did)."""
        if self.sharing is None:
            return await self._renew_or_login(), True
        return await self.sharing.obtain(self._renew_or_login)

    async def _renew_or_login(self) -> Grant:
        return await renew_or_login(
            self._spec, self._driver, self._current(), self._clock.now(), self._stats
        )

    def _record_failure(self, error: LoginFailed) -> None:
        now = self._clock.now()
        self._stats.failed(error, now)
        self._backoff.failed(error, now)
        if isinstance(error, LoginRejected):
            self.records.keep_hold(hold_record(error, now, self._spec.relogin_after_rejection))

"""One route's token lifecycle: hold, renew early, single-flight, back off, recover from a 401.

States, from the hot path's view (`acquire`):
    FRESH    a grant not yet due for renewal: a dict read, nothing else
    STALE    past its renew deadline, not expired: used, and a background renewal is started
    INVALID  none, or expired: the request waits on the one login in flight (single-flight)
    FAILED   the last login failed and its backoff has not run out: 502 at once, no login

A rejected login (4xx) waits `relogin_after_rejection` (an account that locks after three bad
passwords never locks); a transient failure backs off exponentially from 1 s, capped.

A refusal of a token (401) is judged by evidence, never by how long ago the login was:
- a token the upstream accepted before (or one this process did not just obtain itself: from a
  store, or from another process) is stale: drop it, log in once, replay;
- a token refused on its very first use right after a login is suspect. The first such refusal in
  a while still gets one new login and a replay (a revocation can land between a login and the
  token's first use); when that does not help, the request gets the upstream's answer, and
  further refusals are passed on for a backoff that doubles from 1 s. An upstream that refuses
  everything (or a path that always answers 401) therefore never causes a login per request;
  a replay that succeeds ends the backoff.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from dataclasses import dataclass, field

import structlog
from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.auth.clock import Clock
from authproxy.auth.driver import AuthDriver
from authproxy.auth.expiry import renew_deadline
from authproxy.auth.flow import adopt_from_response, can_refresh, login_flow, refresh_flow
from authproxy.auth.flow import static_grant as make_static_grant
from authproxy.auth.grant import Grant
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.lifetimes import LifetimeLearner
from authproxy.auth.ports import TokenStore
from authproxy.auth.shared import SharedTokens
from authproxy.errors import (
    LoginFailed,
    LoginRejected,
    LoginTimeout,
    LoginUnavailable,
    StoreUnavailable,
)
from authproxy.settings import AuthSpec
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.auth")

BACKOFF_START, BACKOFF_CAP = 1.0, 300.0
# Never inject a token this close to its expiry: it would arrive expired. Capped so that a token
# of a few seconds keeps most of its life.
EXPIRY_LEEWAY_SHARE, EXPIRY_LEEWAY_CAP = 0.02, 5.0
PUBLISH_RETRY_SECONDS = 2.0


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


class TokenManager:
    """The `RouteAuth` of a route with an `auth` block."""

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
        self.stats = AuthStats()
        self._driver = driver
        self._store = store
        self._key = store_key
        self.store_key = store_key
        self._shared = None if spec.is_static else shared
        self._shared_down = False
        self._publishing = False
        # Set once the upstream rotated a token on an ordinary answer (devise_token_auth): one
        # session cannot be shared between processes then, each rotation would refuse the
        # others' copies, so this process keeps its own session and its own sign-in.
        self._private = False
        # Tokens the upstream refused: never taken back from the shared store.
        self._refused: deque[str] = deque(maxlen=4)
        self._clock = clock
        self._tasks = tasks
        self._rng = rng or random.Random()
        self._injector = CompiledInjector.from_spec(spec)
        # The client's own Authorization never reaches an upstream whose auth we manage.
        self.request_headers = self._injector.names | {"authorization"}
        self.response_headers = frozenset(name.lower() for name in spec.strip_response_headers)
        self._grant: Grant | None = None
        self._renew_at: float | None = None
        self._inflight: asyncio.Future[Grant] | None = None
        self._failure: LoginFailed | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_START
        self._used_since_login = False
        # The current grant came from this process's own login or refresh and the upstream has
        # not accepted it yet; `_suspect`: it was refused on its first use.
        self._unproven = False
        self._suspect = False
        # Refusals of tokens on their first use since the last replay that succeeded, and the
        # time until which refusals are passed on without a login.
        self._fresh_refusals = 0
        self._hold_until = 0.0
        self.lifetimes = LifetimeLearner()
        if spec.is_static:
            self._grant = make_static_grant(spec, clock.now())
        else:
            stored = store.load(store_key)
            # The key does not cover the flow's shape: a token stored under an older custom flow
            # may lack a value the current inject reads, and would fail every request (KeyError).
            if (
                stored is not None
                and self._injector.accepts(stored)
                and not self._expired(stored, clock.now())
            ):
                self._install(stored, announce=False)

    @property
    def current_grant(self) -> Grant | None:
        return self._grant

    @property
    def renew_at(self) -> float | None:
        return self._renew_at

    @property
    def logging_in(self) -> bool:
        """A login or refresh is in flight."""
        return self._inflight is not None

    def failing(self, now: float) -> bool:
        """True while the last login's failure still holds requests off."""
        return self._failure is not None and now < self._retry_at

    def usable(self, now: float) -> bool:
        """True when a request now gets a token without waiting on a login (fresh or stale).

        An expired grant is kept (its refresh token may still serve) but is never injected, so it
        does not make the route usable: `/-/ready` must not say 200 while every request gets 502.
        """
        grant = self._grant
        return grant is not None and not self._expired(grant, now)

    # ---- the hot path -----------------------------------------------------------------------

    async def acquire(self) -> Grant:
        grant = self._grant
        if grant is not None:
            renew_at = self._renew_at
            if renew_at is None:
                return grant
            now = self._clock.now()
            if now < renew_at:
                self._used_since_login = True
                return grant
            if not self._expired(grant, now):
                self._renew_in_background()
                return grant
        return await self._obtain()

    def inject(self, headers: CIMultiDict[str], grant: object) -> None:
        assert isinstance(grant, Grant)
        self._injector.apply(headers, grant)

    def rejects(self, status: int) -> bool:
        return status in self.spec.invalid_statuses and not self.spec.is_static

    async def after_rejection(self, grant: object) -> Grant | None:
        """The upstream refused `grant`: a grant to replay the request with, or None.

        None means the refusal is passed on to the client: the refused token never worked and
        logging in again would only repeat that (see the module docstring).
        """
        now = self._clock.now()
        if grant is self._grant and self._inflight is None:
            assert isinstance(grant, Grant)
            if not self._ends(grant, now):
                return None
            if not self._unproven and grant.expires_at is None:
                self.lifetimes.died(now - grant.obtained_at)
            log.info("token refused by the upstream; logging in again", route=self.route)
            self._drop()
            await self._forget_refused(grant)
        if self._grant is not None and self._grant is not grant and self.usable(now):
            return self._grant  # already replaced: replaying costs no login
        if self._inflight is None and now < self._hold_until:
            return None
        return await self._obtain()

    def _ends(self, grant: Grant, now: float) -> bool:
        """Whether a refusal of the current `grant` ends it (True: log in again and replay)."""
        if now < self._hold_until:
            return False
        if not self._unproven or self._suspect:
            return True  # accepted before, or a suspect whose backoff ran out
        self._suspect = True
        if self._fresh_refusals == 0:
            self._fresh_refusals = 1
            return True
        self._hold_refusals(now)
        return False

    def _hold_refusals(self, now: float) -> None:
        wait = min(BACKOFF_START * 2 ** max(0, self._fresh_refusals - 1), BACKOFF_CAP)
        self._fresh_refusals += 1
        self._hold_until = now + wait
        log.warning(
            "the upstream refuses tokens on their first use; passing its answers on",
            route=self.route,
            retry_in_seconds=round(wait, 1),
        )

    def answered(
        self,
        grant: object,
        status: int,
        headers: CIMultiDictProxy[str],
        *,
        replayed: bool = False,
    ) -> None:
        """The upstream's final answer to a request sent with `grant` (`replayed`: sent again
        with it after a refusal): evidence for the refusal rules, and rotated tokens to adopt."""
        if replayed:
            self._replay_answered(grant, status)
        elif grant is self._grant and status < 400 and self._unproven:
            # A token this process just obtained worked on its first use. That settles a single
            # retry after a refusal that was left open (its replay never came back), but not a
            # backoff that has grown: only a replay that succeeds ends that one.
            if not self._suspect and self._fresh_refusals == 1:
                self._fresh_refusals = 0
            self._unproven = self._suspect = False
        if status < 400 and grant is self._grant and self.lifetimes.learned is not None:
            assert isinstance(grant, Grant)
            self._accepted_at_age(grant)
        adopt = self.spec.adopt
        if adopt is not None and headers.get(adopt.trigger):
            self._adopt(headers)

    def _replay_answered(self, grant: object, status: int) -> None:
        now = self._clock.now()
        if status in self.spec.invalid_statuses:
            # The new token was refused too: logging in did not help this request. Concurrent
            # replays refused together count once.
            if grant is self._grant:
                self._suspect = True
            if now >= self._hold_until:
                self._fresh_refusals = max(self._fresh_refusals, 1)
                self._hold_refusals(now)
        elif status < 400:
            if grant is self._grant:
                self._unproven = self._suspect = False
            self._fresh_refusals = 0
            self._hold_until = 0.0

    def _accepted_at_age(self, grant: Grant) -> None:
        learned = self.lifetimes.learned
        if grant.expires_at is None and learned is not None:
            age = self._clock.now() - grant.obtained_at
            if age > learned:
                self.lifetimes.accepted(age)
                log.info(
                    "a token outlived the learned lifetime; learning it again",
                    route=self.route,
                    learned_seconds=round(learned, 1),
                )
                self._renew_at = self._renew_deadline(grant)

    def _adopt(self, headers: CIMultiDictProxy[str]) -> None:
        current = self._grant
        if current is None:
            return
        lowered = {name.lower(): value for name, value in headers.items()}
        rotated = adopt_from_response(self.spec, current, lowered, self._clock.now())
        if rotated is None:
            return
        if self._shared is not None and not self._private:
            self._private = True
            log.info(
                "the upstream rotates tokens on its answers; this process keeps a session of "
                "its own",
                route=self.route,
            )
        self._install(rotated, announce=False)

    async def _forget_refused(self, grant: Grant) -> None:
        token = grant.values.get("token")
        if token is None:
            return
        self._refused.append(token)
        if self._shared is not None and not self._private:
            try:
                await self._shared.forget(self._key, token)
            except StoreUnavailable:
                self._store_unreachable()

    # ---- obtaining tokens ---------------------------------------------------------------------

    def _expired(self, grant: Grant, now: float) -> bool:
        if grant.expires_at is None:
            return False
        lifetime = max(0.0, grant.expires_at - grant.obtained_at)
        leeway = min(EXPIRY_LEEWAY_CAP, lifetime * EXPIRY_LEEWAY_SHARE)
        return now >= grant.expires_at - leeway

    async def _obtain(self) -> Grant:
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        if self._failure is not None and self._clock.now() < self._retry_at:
            raise self._failure
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._inflight = future
        self._tasks.spawn(self._login_into(future), name=f"login:{self.route}")
        return await asyncio.shield(future)

    def _renew_in_background(self) -> None:
        if self._inflight is not None:
            return
        if self._failure is not None and self._clock.now() < self._retry_at:
            return
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._inflight = future
        # Nobody awaits this one; mark its outcome as seen so a failure is not reported twice.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._tasks.spawn(self._login_into(future), name=f"renew:{self.route}")

    async def _login_into(self, future: asyncio.Future[Grant]) -> None:
        try:
            grant, obtained = await self._obtain_grant()
        except LoginFailed as error:
            self._record_failure(error)
            future.set_exception(error)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - a bug must fail the waiters, not hang them
            log.error("login crashed", route=self.route, error=repr(error))
            failure = LoginUnavailable(self.route, "the login failed unexpectedly")
            self._record_failure(failure)
            future.set_exception(failure)
        else:
            self._install(grant, announce=obtained)
            future.set_result(grant)
        finally:
            self._inflight = None

    async def _obtain_grant(self) -> tuple[Grant, bool]:
        """A new grant and whether this process logged in for it (False: another one did)."""
        if self._shared is None or self._private:
            return await self._renew_or_login(), True
        try:
            outcome = await self._shared.obtain(self._key, self._acceptable, self._renew_or_login)
        except StoreUnavailable:
            # No request fails only because the shared store is down: log in here, share later.
            self._store_unreachable()
            grant = await self._renew_or_login()
            self._publish_later()
            return grant, True
        if self._shared_down:
            self._shared_down = False
            log.info("shared token store reachable again", route=self.route)
        if not outcome.published:
            self._store_unreachable()
            self._publish_later()
        return outcome.grant, outcome.logged_in

    def _acceptable(self, grant: Grant) -> bool:
        """Whether a grant found in the shared store can be used instead of logging in."""
        if self._expired(grant, self._clock.now()) or not self._injector.accepts(grant):
            return False
        if grant.values.get("token") in self._refused:
            return False
        # Renewing: only a different token than the one held now is of any help.
        current = self._grant
        return current is None or grant.values != current.values

    def _store_unreachable(self) -> None:
        if not self._shared_down:
            self._shared_down = True
            log.warning(
                "shared token store unreachable; logging in locally and sharing the token later",
                route=self.route,
            )

    def _publish_later(self) -> None:
        if not self._publishing:
            self._publishing = True
            self._tasks.spawn(self._publish_when_back(), name=f"publish:{self.route}")

    async def _publish_when_back(self) -> None:
        """Retry sharing the held grant until the store answers; adopt a better one found there."""
        assert self._shared is not None
        try:
            while (grant := self._grant) is not None:
                await self._clock.sleep_until(self._clock.now() + PUBLISH_RETRY_SECONDS)
                if self._grant is not grant:
                    continue
                try:
                    shared = await self._shared.publish(self._key, grant, self._acceptable)
                except StoreUnavailable:
                    continue
                if shared is not grant and self._grant is grant:
                    self._install(shared, announce=False)
                self._shared_down = False
                log.info("token shared again after the store came back", route=self.route)
                return
        finally:
            self._publishing = False

    async def _renew_or_login(self) -> Grant:
        current = self._grant
        if current is not None and can_refresh(self.spec, current):
            try:
                grant = await self._driver.run(
                    refresh_flow(self.spec, self.route, current, self._clock.now())
                )
            except LoginFailed as error:
                self.stats.refreshes += 1
                self.stats.refresh_outcomes[_outcome(error)] += 1
                if isinstance(error, LoginTimeout):
                    raise  # the upstream does not answer: a login would wait just as long
                log.info(
                    "refresh failed; logging in with credentials",
                    route=self.route,
                    reason=error.detail,
                )
            else:
                self.stats.refreshes += 1
                self.stats.refresh_outcomes["ok"] += 1
                self.stats.last_outcome = "refreshed"
                return grant
        self.stats.logins += 1
        try:
            grant = await self._driver.run(login_flow(self.spec, self.route, self._clock.now()))
        except LoginFailed as error:
            self.stats.login_outcomes[_outcome(error)] += 1
            raise
        self.stats.login_outcomes["ok"] += 1
        self.stats.last_outcome = "ok"
        return grant

    def _install(self, grant: Grant, *, announce: bool) -> None:
        """Make `grant` the current one; `announce`: this process just logged in for it."""
        now = self._clock.now()
        previous = self._grant
        if announce and previous is not None:
            grant = self._renewed(previous, grant, now)
        self._grant = grant
        self._failure = None
        self._backoff = BACKOFF_START
        self._used_since_login = False
        self._unproven = announce
        self._suspect = False
        self._renew_at = self._renew_deadline(grant)
        self._save(grant)
        if announce:
            self.stats.last_login_at = now
            lifetime = None if grant.expires_at is None else round(grant.expires_at - now, 1)
            log.info("token obtained", route=self.route, lifetime_seconds=lifetime)
            if self._renew_at is not None:
                self._tasks.spawn(self._renew_when_due(grant), name=f"renew-timer:{self.route}")

    def _renewed(self, previous: Grant, grant: Grant, now: float) -> Grant:
        """`grant`, which replaces a `previous` one still held (a renewal before any refusal)."""
        token = grant.values.get("token")
        if token is None or token != previous.values.get("token"):
            self.lifetimes.replaced()
            return grant
        if grant.expires_at is not None:
            return grant  # its announced expiry says how long it lives
        # The login answered with the token already held (Django REST framework's
        # get_or_create): it is as old as it was, and renewing it early cannot work.
        if not self.lifetimes.sticky:
            self.lifetimes.sticky = True
            log.info("logging in again gives the token already held", route=self.route)
        self.lifetimes.accepted(now - previous.obtained_at)
        return Grant(grant.values, None, previous.obtained_at)

    def _renew_deadline(self, grant: Grant) -> float | None:
        """When to renew `grant`: `renew_at` of its lifetime, announced or learned; None: never
        ahead of a refusal. Static credentials cannot be renewed at all."""
        if self.spec.is_static:
            return None
        expires = grant.expires_at
        learned = self.lifetimes.learned
        if expires is None and learned is not None:
            if self.lifetimes.sticky:
                # A login before the token dies gets the same token back: renew at its death.
                return grant.obtained_at + learned
            expires = grant.obtained_at + learned
        return renew_deadline(grant.obtained_at, expires, self.spec.renew_at, self._rng.random())

    async def _renew_when_due(self, grant: Grant) -> None:
        """Renew ahead of expiry if the route was used since the login; idle routes stay idle."""
        assert self._renew_at is not None
        await self._clock.sleep_until(self._renew_at)
        if self._grant is grant and self._used_since_login:
            self._renew_in_background()

    def _drop(self) -> None:
        self._grant = None
        self._renew_at = None
        self._store.delete(self._key)

    def _save(self, grant: Grant) -> None:
        try:
            self._store.save(self._key, grant)
        except OSError as error:
            log.warning("could not persist the token", route=self.route, error=type(error).__name__)

    def _record_failure(self, error: LoginFailed) -> None:
        now = self._clock.now()
        self.stats.failures += 1
        self.stats.last_login_at = now
        self.stats.last_error = error.detail
        self.stats.recent_errors = [*self.stats.recent_errors[-4:], error.detail]
        if isinstance(error, LoginRejected):
            self.stats.last_outcome = "rejected"
            wait = self.spec.relogin_after_rejection
        else:
            self.stats.last_outcome = "unavailable"
            wait = self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_CAP)
        self._failure = error
        self._retry_at = now + wait
        log.warning(
            "login failed",
            route=self.route,
            reason=error.detail,
            upstream_status=error.upstream_status,
            retry_in_seconds=round(wait, 1),
        )


def _outcome(error: LoginFailed) -> str:
    return "rejected" if isinstance(error, LoginRejected) else "unavailable"

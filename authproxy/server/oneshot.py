"""One route's auth outside a running proxy: what `authproxy login` and `authproxy token` do.

The pieces are the proxy's own: the route's session and login driver
(`login_driver.auth_driver`), the flows through `renewal.renew_or_login`, the stores `open_stores`
chooses, the names tokens are stored under, the injector. So a grant obtained here is one a proxy
on the same token file or Redis takes up when it next needs one, and a rejection here holds its
logins off too (`auth/holds.py`).

The token file is written through `FileTokenStore` where `flock` exists: every write re-reads
the file under its lock, so none of a running proxy's entries is lost, and the login takes the
same per-route lock as the workers of `serve --workers N`. Without `flock` (Windows), the file
is rewritten directly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from multidict import CIMultiDict

from authproxy.auth.flow import static_grant
from authproxy.auth.grant import Grant
from authproxy.auth.holds import Hold, hold_key, hold_of, hold_record
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.renewal import renew_or_login
from authproxy.auth.shared import LOCK_LEASE, SharedTokens
from authproxy.auth.stats import AuthStats
from authproxy.auth_spec import AuthSpec
from authproxy.errors import ConfigError, ConfigProblem, LoginRejected, StoreUnavailable
from authproxy.server.login_driver import auth_driver
from authproxy.settings import Route, Settings
from authproxy.stores import Stores, open_stores
from authproxy.upstream.pool import UpstreamPool

LogIn = Callable[[], Awaitable[Grant]]


class HeldOff(Exception):
    """A login was refused shortly before: none is tried until the hold ends (`--force`)."""

    def __init__(self, route: str, hold: Hold) -> None:
        self.route = route
        self.hold = hold
        super().__init__(f"route {route!r}: logins are held off")


def auth_route(settings: Settings, name: str, *, static: bool = False) -> Route:
    """The route `name`, with a login (`static`: or static credentials); ConfigError naming
    the choices otherwise."""
    routes = {route.name: route for route in settings.routes}
    route = routes.get(name)
    if route is None:
        choices = ", ".join(routes) or "none"
        problem = ConfigProblem("ROUTE", f"no route named {name!r}; routes: {choices}")
        raise ConfigError(settings.source, [problem])
    if route.auth is None or (route.auth.is_static and not static):
        what = "no auth block" if route.auth is None else "static credentials only"
        problem = ConfigProblem(f"routes.{name}", f"has no login: {what}")
        raise ConfigError(settings.source, [problem])
    return route


class RouteLogin:
    """One route's login with its stores and its pool: `async with RouteLogin(...) as login:`."""

    def __init__(self, settings: Settings, route: Route) -> None:
        assert route.auth is not None
        self.settings = settings
        self.route = route
        self.spec: AuthSpec = route.auth
        self._injector = CompiledInjector.from_spec(self.spec)
        self._pool: UpstreamPool | None = None
        self._stores: Stores | None = None
        self.key = ""

    async def __aenter__(self) -> RouteLogin:
        store = self.settings.token_store
        locking = store.kind == "file" and _has_flock()
        # As one of several workers: the file is then shared, written under its lock.
        self._stores = await open_stores(store, workers=2 if locking else 1)
        self._pool = UpstreamPool([self.route])
        self.key = self._stores.name(self.route)  # under an older key of a rotation too
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stores is not None:
            await self._stores.close()
        if self._pool is not None:
            await self._pool.close()

    @property
    def kept(self) -> bool:
        """Whether what is obtained here outlives this process (not `token_store: memory`)."""
        return self.settings.token_store.kind != "memory"

    async def hold(self, now: float) -> Hold | None:
        """The hold after a rejection that the stores record for this route, if it still runs."""
        return hold_of(await self._load(hold_key(self.key)), now)

    async def login(self, *, force: bool = False) -> Grant:
        """Log in now, as the proxy would, and store the grant; raises HeldOff, LoginFailed."""
        return await self._obtain(None, force=force)

    async def headers(self) -> tuple[CIMultiDict[str], Grant]:
        """The headers the proxy would inject now: with the stored grant while it is usable,
        else after a refresh or a login (the hold honoured)."""
        if self.spec.is_static:
            grant = static_grant(self.spec, time.time())
        elif (stored := await self._load(self.key)) is not None and self._usable(stored):
            grant = stored
        else:
            grant = await self._obtain(stored)
        headers: CIMultiDict[str] = CIMultiDict()
        self._injector.apply(headers, grant)
        return headers, grant

    # ---- the parts --------------------------------------------------------------------------

    def _usable(self, grant: Grant) -> bool:
        return self._injector.accepts(grant) and not grant.expired(time.time())

    async def _obtain(self, current: Grant | None, *, force: bool = False) -> Grant:
        """A new grant (a refresh of `current` when it can, else a login), kept in the stores."""
        now = time.time()
        if not force and (hold := await self.hold(now)) is not None:
            raise HeldOff(self.route.name, hold)
        driver = auth_driver(self.route, self._pools())

        async def log_in() -> Grant:
            return await renew_or_login(self.spec, driver, current, now, AuthStats())

        try:
            grant = await self._under_lock(log_in, fresh=current is None)
        except LoginRejected as error:
            wait = self.spec.relogin_after_rejection
            await self._keep(hold_key(self.key), hold_record(error, now, wait))
            raise
        await self._forget(hold_key(self.key))
        return grant

    async def _under_lock(self, log_in: LogIn, *, fresh: bool) -> Grant:
        """`log_in` under the shared store's login lock, the grant kept; without a shared store,
        kept in the local one. `fresh`: a login even if another process just stored a grant."""
        stores = self._stored()
        if stores.shared is None:
            grant = await log_in()
            stores.local.save(self.key, grant)
            return grant
        shared = SharedTokens(stores.shared)
        if fresh:
            async with stores.shared.login_lock(self.key, lease=LOCK_LEASE) as lock:
                grant = await log_in()
                await stores.shared.save(self.key, grant, fence=lock.fence)
            return grant
        outcome = await shared.obtain(self.key, self._usable, log_in)
        return outcome.grant

    async def _load(self, key: str) -> Grant | None:
        stores = self._stored()
        if (grant := stores.local.load(key)) is not None or stores.shared is None:
            return grant
        return await stores.shared.load(key)

    async def _keep(self, key: str, record: Grant) -> None:
        stores = self._stored()
        if stores.shared is None:
            stores.local.save(key, record)
        else:
            await SharedTokens(stores.shared).put(key, record)

    async def _forget(self, key: str) -> None:
        stores = self._stored()
        stores.local.delete(key)
        if stores.shared is not None:
            # A store that does not answer keeps the hold until it runs out.
            with contextlib.suppress(StoreUnavailable):
                await stores.shared.delete(key)

    def _stored(self) -> Stores:
        assert self._stores is not None, "use RouteLogin in `async with`"
        return self._stores

    def _pools(self) -> UpstreamPool:
        assert self._pool is not None, "use RouteLogin in `async with`"
        return self._pool


def _has_flock() -> bool:
    """Whether this OS has `flock` (not Windows): the token file is then written under it."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True

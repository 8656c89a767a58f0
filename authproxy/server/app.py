"""`Proxy`: one process's start, stop and reload, and what it owns meanwhile.

It owns the listening socket, the upstream pool, the token stores, the token managers and the
background tasks. A config becomes a `Routing` (server/routing.py), which server/dispatch.py
answers every request with. It holds no auth logic; a route's token manager does.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog
from multidict import CIMultiDict

from authproxy.auth.clock import Clock, SystemClock
from authproxy.auth.manager import TokenManager
from authproxy.auth.ports import TokenStore
from authproxy.auth.shared import SharedTokens
from authproxy.config.gateway_block import is_loopback, startup_problems
from authproxy.errors import ConfigError, StartupError, UpstreamError
from authproxy.gateway.browser import BrowserGuard
from authproxy.gateway.metrics import Metrics
from authproxy.gateway.rates import ClientRates, LocalRates
from authproxy.logs.setup import use_access_format
from authproxy.proxy.forward import RouteRuntime
from authproxy.proxy.request_body import ReplayBudget
from authproxy.server.dispatch import Dispatcher
from authproxy.server.fleet import Fleet
from authproxy.server.listener import Listener, listen
from authproxy.server.login_driver import auth_driver
from authproxy.server.routing import Routing, build_routing, route_runtime
from authproxy.settings import Route, Settings
from authproxy.stores import Stores, open_stores
from authproxy.stores.memory import MemoryStore
from authproxy.stores.names import EPHEMERAL_NAME_KEY
from authproxy.tasks import Tasks
from authproxy.upstream.pool import UpstreamPool

if TYPE_CHECKING:
    from authproxy.auth.grant import Grant

log = structlog.get_logger("authproxy.server.app")


class Proxy:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        store: TokenStore | None = None,
        workers: int = 1,
        rates: ClientRates | None = None,
        listen_fd: int | None = None,
    ) -> None:
        """`workers` > 1: this is one of that many processes of `serve --workers`, `rates`
        its clients' rate limits, in the table the workers share (gateway/rates.py), and
        `listen_fd` the Unix socket its supervisor listens on, if it does.

        `settings` keep the start-up rules on `settings.listen`: the loader checks them on the
        file's address, and the CLI on the address `--listen` puts in its place.
        """
        self.settings = settings
        self.workers = workers
        self.rates = rates if rates is not None else ClientRates(LocalRates())
        self._listen_fd = listen_fd
        use_access_format(settings.log_format)
        self.tasks = Tasks()
        self.clock: Clock = clock or SystemClock()
        self._store = store
        self.managers: dict[str, TokenManager] = {}
        # One budget for every buffered replay body of this process (limits.replay_buffer_total).
        self.replay_budget = ReplayBudget(settings.replay_buffer_total)
        self.metrics = Metrics()
        # What /-/status and /-/metrics show: every worker's counts, the shared tokens.
        self.fleet = Fleet(self.metrics, lambda: self.managers, self.clock.now, workers)
        self._pool: UpstreamPool | None = None
        self._stores = Stores(MemoryStore(), None, EPHEMERAL_NAME_KEY, "memory")
        self._shared: SharedTokens | None = None
        self._listener: Listener | None = None
        self._bound_port = settings.listen.port
        self.urls: list[str] = []
        self.dispatcher = Dispatcher(self._routing(settings, {}), self.metrics, self.replay_budget)

    async def start(self) -> None:
        """Open upstream sessions and bind the listening socket; raises StartupError."""
        settings = self.settings
        self._pool = UpstreamPool(settings.routes, busy_poll_us=settings.busy_poll_us)
        self._stores = stores = await open_stores(
            settings.token_store, workers=self.workers, tasks=self.tasks, local=self._store
        )
        self._shared = None if stores.shared is None else SharedTokens(stores.shared)
        self.fleet.shared = stores.shared
        if settings.token_store.kind == "redis" and settings.token_store.url is not None:
            # Redis shares the tokens between replicas: it shares their clients' limits too.
            # Imported here: redis-py costs ~7 MiB that a proxy without Redis never needs.
            from authproxy.stores.redis_rates import RedisRates

            self.rates.remote = RedisRates(settings.token_store.url.reveal())
        self._apply_routes(settings, {})
        await stores.migrate()  # tokens stored under an older token_store_key
        try:
            listener = await listen(
                self.dispatcher.handle,
                settings,
                reuse_port=self.workers > 1,
                inherited=self._listen_fd,
            )
        except StartupError:
            await self.stop()
            raise
        self._listener = listener
        self.urls = listener.urls
        # Port 0 picked one: it is part of the name the proxy gives itself (browser.HostNames).
        self._bound_port = listener.port
        self.dispatcher.routing = replace(
            self.dispatcher.routing, browsers=BrowserGuard(settings, self._bound_port)
        )
        for name, manager in self.managers.items():
            if manager.spec.warm:
                self.tasks.spawn(self._warm(manager), name=f"warm:{name}")
        if not is_loopback(settings.listen.host):
            log.warning(
                "listening on a non-loopback address: anyone who can reach it acts with the "
                "upstream credentials",
                listen=str(settings.listen),
            )

    def _apply_routes(self, settings: Settings, previous: dict[str, TokenManager]) -> None:
        """Build every route's runtime, then switch to them all at once (no await in between).

        A token manager in `previous` is kept when its route's auth and credentials did not
        change, so a reload does not log in again; requests in flight keep the objects they hold.
        """
        assert self._pool is not None
        managers: dict[str, TokenManager] = {}
        runtimes: dict[str, RouteRuntime[Grant]] = {}
        for route in settings.routes:
            self._pool.add(route)
            auth = self._manager_for(route, previous.get(route.name))
            if auth is not None:
                managers[route.name] = auth
            runtimes[route.name] = route_runtime(
                route, auth, settings, self._pool, self.replay_budget
            )
        self.settings = settings
        self.replay_budget.total = settings.replay_buffer_total
        self.managers = managers
        self.dispatcher.routing = self._routing(settings, runtimes)

    def _routing(self, settings: Settings, runtimes: dict[str, RouteRuntime[Grant]]) -> Routing:
        return build_routing(
            settings,
            runtimes,
            self.managers,
            bound_port=self._bound_port,
            fleet=self.fleet,
            rates=self.rates,
            now=self.clock.now,
        )

    def _manager_for(self, route: Route, previous: TokenManager | None) -> TokenManager | None:
        if route.auth is None:
            return None
        key = self._stores.name(route)
        if previous is not None and previous.spec == route.auth and previous.store_key == key:
            return previous
        assert self._pool is not None
        return TokenManager(
            route.name,
            route.auth,
            driver=auth_driver(route, self._pool),
            store=self._stores.local,
            store_key=key,
            clock=self.clock,
            tasks=self.tasks,
            shared=self._shared,
        )

    def reload(self, new: Settings) -> None:
        """Apply a new config to new requests; in-flight ones finish with what they started with.

        `listen` and `token_store` need a restart: they are kept as they are, and logged. A
        config that breaks a start-up rule on the address this proxy is bound to (a reload that
        drops `clients` on 0.0.0.0) raises ConfigError, and none of it is applied.
        """
        old = self.settings
        kept = replace(
            new, listen=old.listen, listen_mode=old.listen_mode, token_store=old.token_store
        )
        if problems := startup_problems(kept, old.listen):
            raise ConfigError(new.source, problems)
        for key, changed in (
            ("listen", new.listen != old.listen),
            ("listen_mode", new.listen_mode != old.listen_mode),
            ("token_store", new.token_store != old.token_store),
        ):
            if changed:
                log.warning("config change needs a restart to take effect", key=key)
        self._apply_routes(kept, self.managers)
        use_access_format(kept.log_format)
        if self._listener is not None:  # connections opened from now on
            self._listener.http.header_timeout = kept.header_timeout
            self._listener.http.max_connections = kept.max_connections
        log.info("config reloaded", routes=[route.name for route in kept.routes])

    async def _warm(self, manager: TokenManager) -> None:
        # A failure is logged by the manager, and requests will get the 502 with its reason.
        with contextlib.suppress(UpstreamError):
            await manager.authorize(CIMultiDict())

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish within the grace period, close all."""
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._stores.local.close()  # the last rotations reach the token file
        await self.tasks.close()
        if self._stores.shared is not None:
            await self._stores.shared.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self.rates.remote is not None:
            await self.rates.remote.close()
            self.rates.remote = None

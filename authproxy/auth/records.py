"""A route's entries in its token stores: the grant it holds, and the hold after a rejected login.

The grant is kept in this process's store (memory, or the token file that a restart and
`authproxy login` read). The hold (`holds.py`) is kept there too and, in the background, in the
shared store, so every process and the next start honour it. A store that cannot be written is
logged, and the route carries on with what it holds in memory.
"""

from __future__ import annotations

import structlog

from authproxy.auth.grant import Grant
from authproxy.auth.holds import Hold, hold_key, hold_of
from authproxy.auth.ports import TokenStore
from authproxy.auth.shared import RouteSharing

log = structlog.get_logger("authproxy.auth")


class RouteRecords:
    """The entries of `route` under `key` in `store`, and its hold shared through `sharing`."""

    def __init__(
        self, route: str, store: TokenStore, key: str, sharing: RouteSharing | None
    ) -> None:
        self._route = route
        self._store = store
        self._key = key
        self._sharing = sharing

    def grant(self) -> Grant | None:
        """The grant stored for the route, by this process or another one."""
        return self._store.load(self._key)

    def hold(self, now: float) -> Hold | None:
        """The hold recorded after a rejected login, while it lasts."""
        return hold_of(self._store.load(hold_key(self._key)), now)

    def save(self, grant: Grant) -> None:
        self._save_as(self._key, grant)

    def forget(self) -> None:
        self._store.delete(self._key)

    def keep_hold(self, record: Grant | None) -> None:
        """Record the hold after a rejection in the stores (None: clear it), for the processes
        and the `authproxy login` that share them (`holds.py`)."""
        key = hold_key(self._key)
        if record is None:
            self._store.delete(key)
        else:
            self._save_as(key, record)
        if self._sharing is not None:
            self._sharing.keep_record(key, record)

    def _save_as(self, key: str, grant: Grant) -> None:
        try:
            self._store.save(key, grant)
        except OSError as error:
            kind = type(error).__name__
            log.warning("could not persist the token", route=self._route, error=kind)

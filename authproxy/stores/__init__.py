"""Where tokens rest: memory, a file, the workers' shared file, Redis.

Implementations of what auth needs from storage (`auth.ports`); they never call the engine.
`open_stores` is the one place that chooses them from the settings.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import structlog

from authproxy.auth.ports import SharedStore, TokenStore
from authproxy.errors import StoreUnavailable
from authproxy.settings import Route, TokenStoreSettings
from authproxy.stores.codec import cipher_for
from authproxy.stores.file import FileStore
from authproxy.stores.flock import FileTokenStore
from authproxy.stores.memory import MemoryStore
from authproxy.stores.names import EPHEMERAL_NAME_KEY, name_keys_for, store_key
from authproxy.stores.rotation import Aliases, MovableStore, RotatedLocal, RotatedShared
from authproxy.stores.token_file import warn_if_shared_directory
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.stores")


def open_store(settings: TokenStoreSettings, tasks: Tasks | None = None) -> TokenStore:
    """The configured local store; an unwritable file falls back to memory with a warning.

    With a shared (Redis) store, each process keeps its own copy in memory. `tasks`: writes go
    behind, coalesced, as a running proxy needs (see `FileStore`).
    """
    if settings.kind in ("memory", "redis") or settings.path is None:
        return MemoryStore()
    store = FileStore(settings.path, cipher_for(settings), tasks)
    try:
        store.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = tempfile.NamedTemporaryFile(dir=store.path.parent, prefix=".probe-")  # noqa: SIM115
        probe.close()
    except OSError as error:
        if settings.explicit:
            log.warning(
                "token store directory is not writable; tokens will not survive a restart",
                path=settings.path,
                error=type(error).__name__,
            )
        else:
            log.warning(
                "default token store is not writable; keeping tokens in memory",
                path=settings.path,
                error=type(error).__name__,
            )
        return store.in_memory()
    return store


@dataclass(slots=True)
class Stores:
    """The stores one process uses, chosen once from the settings (`open_stores`).

    `local` is this process's copy of every grant; `shared`, when there is one, is what several
    processes reach (the workers' token file, Redis); `name_key` names tokens in them
    (`names.store_key`), and `older_name_keys` named them under the older keys of a rotation
    (stores/rotation.py); `where` says which store this is, without any secret.
    """

    local: TokenStore
    shared: SharedStore | None
    name_key: bytes | None
    where: str
    older_name_keys: tuple[bytes, ...] = ()
    aliases: Aliases = field(default_factory=Aliases)

    def name(self, route: Route) -> str:
        """The name `route`'s token is stored under; found under an older key's name too."""
        name = store_key(route, self.name_key)
        if self.older_name_keys:
            self.aliases.add(name, [store_key(route, key) for key in self.older_name_keys])
        return name

    async def migrate(self) -> None:
        """Move the shared entries of every named route from older names to the new ones (a
        rotation), so that dropping the old key later costs no login. A store that does not
        answer is left as it is: the next read under the new name looks again."""
        if isinstance(self.shared, RotatedShared):
            try:
                await self.shared.migrate()
            except StoreUnavailable:
                log.warning("shared token store unreachable; entries of older keys move later")

    async def close(self) -> None:
        await self.local.close()  # the last rotations reach the token file
        if self.shared is not None:
            await self.shared.close()


async def open_stores(
    settings: TokenStoreSettings,
    *,
    workers: int = 1,
    tasks: Tasks | None = None,
    local: TokenStore | None = None,
) -> Stores:
    """The one place that turns `token_store` into stores, for `serve` and `authproxy status`.

    Workers of one `serve --workers N` share the token file through `FileTokenStore` (every write
    under a lock) and keep each a copy in memory; Redis is shared by every process. `local`
    replaces the store the settings would give (tests).
    """
    store = local if local is not None else open_store(settings, tasks)
    shared: MovableStore | None = None
    where = "memory"
    if isinstance(store, FileStore):
        where = str(store.path)
        warn_if_shared_directory(store.path.parent)
        if workers > 1:
            shared = FileTokenStore(store.path, cipher_for(settings))
            store = store.in_memory()
    if settings.kind == "redis" and settings.url is not None:
        shared, where = await _redis(settings)
    name_keys = name_keys_for(settings)
    name_key = name_keys[0] if name_keys else None
    if name_key is None and shared is None and not isinstance(store, FileStore):
        name_key = EPHEMERAL_NAME_KEY  # names that never leave this process: any key will do
    stores = Stores(store, shared, name_key, where, name_keys[1:])
    if stores.older_name_keys:
        stores.local = RotatedLocal(store, stores.aliases)
        if shared is not None:
            # The workers' file belongs to one `serve`: its older names can go. Redis keeps them
            # for replicas that still run the old keys until they restart.
            drop = isinstance(shared, FileTokenStore)
            stores.shared = RotatedShared(shared, stores.aliases, drop_older=drop)
    return stores


async def _redis(settings: TokenStoreSettings) -> tuple[MovableStore, str]:
    assert settings.url is not None
    # Imported here: redis-py costs ~7 MiB of memory that a proxy without Redis never needs.
    from authproxy.stores.redis import RedisTokenStore

    redis = RedisTokenStore(settings.url.reveal(), cipher_for(settings))
    if settings.key is None:
        # A team gateway must opt in (config.gateway_block.plaintext_store_refused); anyone else
        # is told once. `where` is host:port, never the URL with its password.
        log.warning(
            "the Redis token store holds tokens in plain text: whoever can read Redis can use "
            "them; set token_store_key (authproxy keygen)",
            store=redis.where,
        )
    if not await redis.ping():
        log.warning("shared token store unreachable at start; logging in locally until it is")
    return redis, f"redis {redis.where}"

"""Where tokens rest: memory, a file, the workers' shared file, Redis.

Implementations of what auth needs from storage (`auth.ports`); they never call the engine.
`open_store` chooses the local one from the settings.
"""

from __future__ import annotations

import tempfile

import structlog

from authproxy.auth.ports import TokenStore
from authproxy.settings import TokenStoreSettings
from authproxy.stores.codec import cipher_for
from authproxy.stores.file import FileStore
from authproxy.stores.memory import MemoryStore
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

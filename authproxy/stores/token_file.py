"""The token file on disk: its sealed JSON format, read strictly or quietly, replaced atomically.

Both stores of a file use it: `file.FileStore` (one process) and `flock.FileTokenStore` (the
workers of one `serve --workers N`). An entry with impossible values reads as absent; a file that
cannot be used raises one of `UNREADABLE`, which each store turns into a warning.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

from authproxy.auth.grant import Grant
from authproxy.crypto import Cipher
from authproxy.stores.codec import BAD_GRANT, grant_from_document, grant_to_document, seal, unseal

log = structlog.get_logger("authproxy.stores.file")

FILE_VERSION = 1

# What `read_grants` raises for a file that exists but cannot be used.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)


def read_grants(path: Path, cipher: Cipher) -> dict[str, Grant]:
    """The grants in a token file; {} when it does not exist. Raises one of `UNREADABLE`.

    An entry with impossible values is left out (it reads as absent, and the next write drops it).
    Every token read is masked in logs while its Grant exists: another process may have
    obtained it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    document = unseal(text.strip(), cipher) if text.strip() else None
    if document is None:
        # Written with another key (or none): unreadable here, so treated as absent.
        raise ValueError("cannot be decrypted with the configured token_store_key")
    entries = document["tokens"]
    if not isinstance(entries, dict):
        raise TypeError("tokens")
    grants: dict[str, Grant] = {}
    now = time.time()
    for key, entry in entries.items():
        try:
            grants[str(key)] = grant_from_document(entry, now)
        except BAD_GRANT as error:
            log.warning(
                "stored token has impossible values; ignoring it",
                path=str(path),
                key=str(key),
                field=error.args[0] if error.args else type(error).__name__,
            )
    return grants


def read_grants_quietly(path: Path, cipher: Cipher) -> dict[str, Grant]:
    """The file's grants for a merge; {} when unreadable (reported when the store opened)."""
    try:
        return read_grants(path, cipher)
    except UNREADABLE:
        return {}


def write_grants(path: Path, grants: Mapping[str, Grant], cipher: Cipher) -> None:
    """Replace the token file atomically (temp file, fsync, rename), mode 0600."""
    document = {
        "version": FILE_VERSION,
        "tokens": {key: grant_to_document(grant) for key, grant in grants.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if hasattr(os, "fchmod"):  # POSIX; on Windows mkstemp already made it private
                os.fchmod(handle.fileno(), 0o600)
            handle.write(seal(document, cipher))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def warn_if_shared_directory(directory: Path) -> None:
    """Warn when others may write to the token file's directory: they could replace the file, or
    put a symlink where a lock file will be created (lock_file.py refuses to follow one)."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return  # a missing or unreadable directory is reported where the store is used
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.warning(
            "token store directory is writable by group or others; they can replace the tokens",
            path=str(directory),
            mode=f"{stat.S_IMODE(mode):04o}",
        )

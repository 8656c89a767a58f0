"""The token file's lock files: a `flock` on `<path>.lock`, and on one file per login key.

Both stores of the file lock through here: `flock.FileTokenStore` (the workers of one
`serve --workers N`) and `file.FileStore` (one process, whose file `authproxy login` and
`authproxy token` write as well). A lock file is opened never through a symbolic link, and its
flock is only ever tried (`LOCK_NB`), never waited for in the kernel: a thread blocked in `flock`
could not be cancelled at shutdown, so waiters poll with short jittered sleeps instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from authproxy.errors import StoreUnavailable

log = structlog.get_logger("authproxy.stores.flock")  # the logger these warnings always had

WRITE_POLL = (0.002, 0.01)  # the write lock is held for milliseconds
# A write lock not free after this long has a frozen holder (SIGSTOP, a debugger): give up and
# let the caller fall back as if the store were down, rather than hang requests.
WRITE_LOCK_WAIT = 5.0


@contextlib.contextmanager
def write_lock_held(lock_path: Path, wait: float | None = None) -> Iterator[bool]:
    """The token file's write lock for a synchronous writer (`FileStore`, the file of one
    process, which `authproxy login` and `authproxy token` write as well): True while held.

    `wait` bounds the wait for another holder (default `WRITE_LOCK_WAIT`); a writer on the event
    loop passes 0, so it never sleeps there. False when the lock cannot be had: no flock on this
    OS or file system, a lock file that is a symbolic link, or a holder that keeps it past
    `wait`. The caller then writes unlocked, which risks losing the other writer's entry to a
    race of milliseconds; not writing would lose this one's for sure.
    """
    fd = _lock_fd_if_possible(lock_path)
    if fd is None:
        yield False
        return
    try:
        deadline = time.monotonic() + (WRITE_LOCK_WAIT if wait is None else wait)
        held = False
        try:
            while not (held := try_lock(fd, lock_path)) and time.monotonic() < deadline:
                time.sleep(random.uniform(*WRITE_POLL))  # only ever in a thread (`wait` > 0)
        except StoreUnavailable:  # flock itself failed (ENOLCK, ...): waiting cannot help
            held = False
        if not held:
            _warn_unlocked_once(lock_path)
        yield held
    finally:
        os.close(fd)  # releases the flock


def _lock_fd_if_possible(lock_path: Path) -> int | None:
    try:
        import fcntl  # noqa: F401 - POSIX-only: without it no lock file is made at all
    except ImportError:
        return None
    try:
        return open_lock(lock_path)
    except StoreUnavailable:
        _warn_unlocked_once(lock_path)
        return None


_warned_unlocked: set[Path] = set()  # lock paths of this process's config: a handful at most


def _warn_unlocked_once(lock_path: Path) -> None:
    if lock_path not in _warned_unlocked:
        _warned_unlocked.add(lock_path)
        log.warning("token file written without its lock", lock=str(lock_path))


def open_lock(path: Path) -> int:
    """Open (creating) a lock file, never through a symlink.

    Whoever can write to the directory could otherwise point `<path>.lock` anywhere: the proxy
    would create that file (a dangling link) or take its lock. O_NOFOLLOW refuses the final link.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StoreUnavailable(
                f"token file lock {path} is a symbolic link; refusing to follow it"
            ) from None
        raise StoreUnavailable(f"token file lock {path} unavailable: {error.strerror}") from None


def try_lock(fd: int, path: Path) -> bool:
    # Imported here: fcntl is POSIX-only, and the commands that never lock a token file
    # (check, schema, login and token without it) must import on any OS.
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        raise StoreUnavailable(f"token file lock {path} failed: {error.strerror}") from None
    return True

"""`listen: unix:/path`: a Unix socket for sidecars and single-host setups.

File permissions are the access control (that is why the public-bind rule does not apply), so
the socket must never exist with wider permissions than `listen_mode`, not even for a moment:
it is bound under a umask that yields exactly that mode, then set to it once more explicitly.
A socket file left by a process that died is replaced; a live one (another proxy answers on it)
or anything that is not a socket is left alone and the start fails. On exit the file is removed,
but only while it is still the one this process bound.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

import structlog

from authproxy.errors import StartupError

log = structlog.get_logger("authproxy.server.unix_socket")

BACKLOG = 1024


def bind_unix(path: str, mode: int) -> tuple[socket.socket, int]:
    """A listening Unix socket at `path` with file mode `mode`, and the inode bound (for
    `remove_unix`); raises StartupError naming the path and the reason."""
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # bind() creates the file as 0777 minus the umask, which is process-wide: narrowed here
        # for the one call, so the file is born with `mode`. Anything another thread creates
        # meanwhile only gets stricter permissions, never wider ones.
        previous = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(previous)
        os.chmod(path, mode)  # exact, whatever the umask did
        sock.listen(BACKLOG)
        sock.setblocking(False)
        inode = os.lstat(path).st_ino
    except OSError as error:
        sock.close()
        raise StartupError(f"cannot listen on unix:{path}: {error.strerror}") from None
    if mode & 0o002:
        # Connecting takes write permission: every user of this host can connect.
        log.warning(
            "the Unix socket is writable by every user of this host: each of them acts with "
            "the upstream credentials",
            listen=f"unix:{path}",
            mode=f"{mode:04o}",
        )
    return sock, inode


def remove_unix(path: str, inode: int) -> None:
    """Remove the socket file, if it is still ours (a new proxy may have replaced it)."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


def _clear_stale(path: str) -> None:
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise StartupError(f"cannot listen on unix:{path}: {error.strerror}") from None
    if not stat.S_ISSOCK(found.st_mode):
        raise StartupError(
            f"cannot listen on unix:{path}: a file that is not a socket is in the way"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)  # a live listener with a full backlog is a live listener
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        # Nobody accepts on it: left behind by a process that died. Replace it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except TimeoutError:
        pass
    except OSError as error:
        raise StartupError(f"cannot listen on unix:{path}: {error.strerror}") from None
    finally:
        probe.close()
    raise StartupError(f"cannot listen on unix:{path}: address already in use")

"""How the proxy serves: a Unix socket listener (`listen: unix:/path`, `listen_mode`) and the
access line's format (`log_format`). `config/addresses.py` reads `listen` and calls these."""

from __future__ import annotations

import os

from authproxy.config.node import Node
from authproxy.settings import ListenAddress

LOG_FORMATS = ("events", "clf")

DEFAULT_LISTEN_MODE = 0o660

# sockaddr_un holds 108 bytes on Linux (104 on the BSDs), the terminating NUL included.
UNIX_PATH_MAX = 103


def unix_listen(path: str) -> ListenAddress:
    """The address of `unix:<path>`; raises ValueError saying what is wrong with the path."""
    if not path.startswith("/"):
        raise ValueError("a Unix socket needs an absolute path, e.g. unix:/run/authproxy/ap.sock")
    if "\0" in path or path.endswith("/"):
        raise ValueError("not a file path for a Unix socket")
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ValueError(f"a Unix socket path may have at most {UNIX_PATH_MAX} bytes")
    return ListenAddress("localhost", 0, path)


def parse_listen_mode(node: Node) -> int:
    """`listen_mode`: the Unix socket's file mode, in octal: `0660` (YAML reads the leading zero
    as octal) or a string, `"660"` or `"0o660"`."""
    default = DEFAULT_LISTEN_MODE
    if node.missing:
        return default
    value = node.value
    if isinstance(value, str):
        text = value.removeprefix("0o")
        if not (text.isascii() and text.isdigit() and set(text) <= set("01234567")):
            node.problem("expected an octal file mode, e.g. 0660")
            return default
        value = int(text, 8)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        node.problem("expected a file mode from 0000 to 0777; write it with a leading 0 (0660)")
        return default
    return value


def parse_log_format(node: Node) -> str:
    """`log_format`: `clf` writes access lines in the combined log format (logs/access.py)."""
    return node.choice(LOG_FORMATS, "events", "log format") or "events"

"""HTTP syntax that several layers check or write: the RFC 9110 token, and `host:port`.

A leaf: it imports nothing from authproxy, so `config/` (checking what a user wrote), `upstream/`
(checking what an upstream answered) and the code that prints or dials an address share one
definition instead of copies that could drift apart.
"""

from __future__ import annotations

import re

# RFC 9110 §5.6.2: token = 1*tchar. Methods (§9.1) and field names (§5.1) are tokens.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def is_token(text: str) -> bool:
    """Whether `text` is an RFC 9110 token: a valid method or header field name."""
    return _TOKEN.fullmatch(text) is not None


def bracket_host(host: str) -> str:
    """`host` as written before `:port`: an IPv6 address in brackets (RFC 3986 §3.2.2).

    Without them the address's own colons would be read as the one before the port.
    """
    return f"[{host}]" if ":" in host else host


def host_port(host: str, port: int) -> str:
    """`host:port`, or `[host]:port` for an IPv6 address (a Host header, a URL's authority)."""
    return f"{bracket_host(host)}:{port}"

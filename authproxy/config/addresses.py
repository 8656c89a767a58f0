"""Addresses in the config: where the proxy listens (`listen`) and the Host names it answers to
without `clients` (`allowed_hosts`).

`listen` is `HOST:PORT` (an IP address or an RFC 1123 host name; IPv6 in brackets), a port alone
(loopback), or `unix:/path` (`serving.py`); `parse_listen` also reads `--listen`.
"""

from __future__ import annotations

import ipaddress
import re

from authproxy.config.node import Node
from authproxy.config.serving import unix_listen
from authproxy.settings import ListenAddress

# RFC 1123 host names; a name of digits and dots only must also parse as IPv4 (see parse_listen).
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def parse_listen(text: str) -> ListenAddress:
    """Parse `HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`, `localhost:9000`); port 0 picks one.

    A port alone (`9000`) means loopback, `127.0.0.1:9000`: the safe address, and what someone
    who only wants another port means.
    `unix:/path` is a Unix socket.
    """
    if text.startswith("unix:"):
        return unix_listen(text.removeprefix("unix:"))
    if text.isascii() and text.isdigit():
        text = f"{ListenAddress().host}:{text}"
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]:")
        if not bracket:
            raise ValueError("expected [IPV6]:PORT, e.g. [::1]:8080")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("the host in brackets is not an IPv6 address") from None
    else:
        host, colon, port = text.rpartition(":")
        if not colon or not host:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
        if ":" in host:
            raise ValueError("write an IPv6 host in brackets, e.g. [::1]:8080")
        if not _is_host(host):
            raise ValueError("the host is neither an IP address nor a host name")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError("the port must be a number from 0 to 65535")
    return ListenAddress(host, int(port))


def parse_listen_node(node: Node) -> ListenAddress:
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        node = Node(str(node.value), node.path, node.ctx)  # `listen: 9000`, a port alone
    text = node.string(str(ListenAddress()), secret=False)
    try:
        return parse_listen(text)
    except ValueError as exc:
        node.problem(str(exc))
        return ListenAddress()


def parse_allowed_hosts(node: Node) -> tuple[str, ...]:
    """`allowed_hosts`: Host header values (`name`, `name:port`, `[::1]:port`) accepted without
    clients, besides the listen address and the loopback names."""
    hosts: list[str] = []
    for item in [] if node.missing else node.items() or []:
        text = item.string(required=True, secret=False)
        if text is None:
            continue
        if _is_host_header(text):
            hosts.append(text.lower())
        else:
            item.problem("expected a host name or address, optionally with :PORT")
    return tuple(dict.fromkeys(hosts))


def _is_host_header(text: str) -> bool:
    if text.startswith("[") and text.endswith("]"):
        return _is_ipv6(text[1:-1])
    if ":" not in text:
        return _is_host(text)
    try:
        parse_listen(text)
    except ValueError:
        return False
    return True


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _is_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        # "127.0.0.300" matches the host name pattern, but nobody means a DNS name by it.
        return bool(_HOST_NAME.fullmatch(host)) and not host.replace(".", "").isdigit()
    return True

"""`NO_PROXY`: the hosts reached directly although a proxy is set, read the way curl reads it.

A comma-separated list (spaces around entries are ignored). Each entry is one of:
- `*`: every host;
- a host name, `api.example.com`: that host and every name under it (`eu.api.example.com`); a
  leading `.` or `*.` (`.example.com`, `*.example.com`) means the same;
- an IP address, `127.0.0.1` or `::1` (also `[::1]`), or a network, `10.0.0.0/8`: those
  addresses, as written in the upstream URL (names are never resolved to find out);
- any of these with `:port`: only on that port.

An entry that fits none of these (Windows' `<local>`, say) matches nothing; it is not an error,
because the same variable serves every other program on the machine.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Bypass:
    """One `NO_PROXY` entry: a name suffix or a network, maybe only on one port."""

    name: str | None = None  # lower-case, no leading or trailing dot
    network: Network | None = None
    port: int | None = None
    everything: bool = False

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.everything:
            return True
        address = _address(host)
        if address is not None:
            return self.network is not None and address in self.network
        if self.name is None:
            return False
        name = host.lower().rstrip(".")
        return name == self.name or name.endswith("." + self.name)


def parse_no_proxy(text: str) -> tuple[Bypass, ...]:
    """Every usable entry of a `NO_PROXY` value, in order."""
    entries = (_entry(part.strip()) for part in text.split(","))
    return tuple(entry for entry in entries if entry is not None)


def bypassed(entries: tuple[Bypass, ...], host: str, port: int) -> bool:
    """Whether an upstream at `host` (as written in its URL) and `port` is reached directly."""
    return any(entry.matches(host, port) for entry in entries)


def _entry(text: str) -> Bypass | None:
    if not text:
        return None
    if text == "*":
        return Bypass(everything=True)
    host, port = _split_port(text)
    if host is None:
        return None
    host = host.removeprefix("*.").removeprefix(".").rstrip(".").lower()
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        network = None
    if network is not None:
        return Bypass(network=network, port=port)
    if not host or any(char in host for char in "/[]<>* "):
        return None
    return Bypass(name=host, port=port)


def _split_port(text: str) -> tuple[str | None, int | None]:
    """(host, port) of `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address;
    (None, None) when the port is not a number."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return None, None
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return None, None
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        return text, None  # a name, or a bare IPv6 address whose colons are its own
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        return None, None
    return host, int(port)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None

"""`authproxy status`: each route's token state, from the running proxy or else from the store.

A running proxy knows the most (last login outcome, counters), so it is asked first at the
config's listen address. When none answers, the token store file still tells which tokens a
restart would reuse, and until when.
"""

from __future__ import annotations

import http.client
import json
import socket
from http import HTTPStatus
from typing import Any

from authproxy.errors import StoreUnavailable
from authproxy.gateway.status import iso
from authproxy.secrets import masked
from authproxy.settings import ListenAddress, Route, Settings
from authproxy.stores import Stores, open_stores
from authproxy.stores.names import store_key


class StatusRefused(Exception):
    """A proxy answered at the address but refused /-/status (a gateway: an admin's key)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"answered {status}")
        self.status = status


def fetch_running_status(listen: ListenAddress, timeout: float = 5.0) -> dict[str, Any] | None:
    """The running proxy's /-/status at `listen`, or None when none answers there; raises
    StatusRefused when one answers 401 or 403.

    No proxy listening is found at once (connection refused); `timeout` is for one that is busy.
    """
    if listen.path is None and listen.port == 0:
        return None
    try:
        connection = _connection_to(listen, timeout)
        try:
            connection.request("GET", "/-/status", headers={"Accept": "application/json"})
            answer = connection.getresponse()
            if answer.status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
                raise StatusRefused(answer.status)
            if answer.status != HTTPStatus.OK:
                return None
            document = json.load(answer)
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException):
        return None
    if not isinstance(document, dict):
        return None
    return masked(document)  # an older proxy may not mask what this config marks secret


def _connection_to(listen: ListenAddress, timeout: float) -> http.client.HTTPConnection:
    if listen.path is not None:
        return _UnixConnection(listen.path, timeout)
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "") else listen.host  # noqa: S104
    return http.client.HTTPConnection("::1" if host == "::" else host, listen.port, timeout=timeout)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (`listen: unix:/path`); the proxy takes any Host there."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


async def stored_status(settings: Settings, now: float) -> dict[str, Any]:
    """Each route's token as the store holds it: the file, or Redis; chosen by `open_stores`,
    exactly as `serve` chooses it."""
    stores = await open_stores(settings.token_store)
    try:
        routes = {route.name: await _stored_route(stores, route, now) for route in settings.routes}
    finally:
        await stores.close()
    source = f"token store ({stores.where})"
    return masked({"source": source, "now": iso(now), "routes": routes})


async def _stored_route(stores: Stores, route: Route, now: float) -> dict[str, Any]:
    if route.auth is None:
        return {"upstream": str(route.upstream), "token": None}
    grant = None
    # Under the current key's name, else an older key's (mid-rotation): read only, never moved
    # as `serve` would move it, so that asking changes nothing (a proxy on the old keys may run).
    keys = (stores.name_key, *stores.older_name_keys)
    for name in dict.fromkeys(store_key(route, key) for key in keys):
        grant = stores.local.load(name)
        if grant is None and stores.shared is not None:
            try:
                grant = await stores.shared.load(name)
            except StoreUnavailable:
                grant = None
        if grant is not None:
            break
    if grant is None:
        state = "static" if route.auth.is_static else "none"
    elif grant.expires_at is not None and now >= grant.expires_at:
        state = "expired"
    else:
        state = "valid"
    return {
        "upstream": str(route.upstream),
        "token": {
            "state": state,
            "expires_at": iso(grant.expires_at) if grant else None,
            "obtained_at": iso(grant.obtained_at) if grant else None,
        },
    }


def format_table(document: dict[str, Any]) -> str:
    header = ("ROUTE", "STATE", "EXPIRES AT", "LAST LOGIN", "LOGINS", "REFRESHES")
    rows = [header]
    for name, info in document.get("routes", {}).items():
        token = info.get("token") or {}
        last = token.get("last_login") or {}
        rows.append(
            (
                name,
                str(token.get("state", "no auth")),
                str(token.get("expires_at") or "-"),
                f"{last.get('outcome') or '-'} {last.get('at') or ''}".strip(),
                str(token.get("logins", "-")),
                str(token.get("refreshes", "-")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    head = [f"source: {document.get('source', 'running proxy')}"]
    if "proxy" in document:
        head.append(f"proxy: {document['proxy']}")
    return "\n".join([*head, *lines])

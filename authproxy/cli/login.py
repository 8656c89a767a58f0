"""`authproxy login ROUTE` and `authproxy token ROUTE`: one route's login, from the terminal.

`login` logs in now, as the proxy would, and keeps the grant in the token store, so that a
proxy on the same file or Redis uses it: the way to check a password without waiting for
traffic. It prints the outcome and the lifetime, never the token. `token` prints the headers the
proxy would inject now, for tools that cannot go through a proxy; it is the one command that
prints a secret, because that is what it is asked for.

Exit codes: 0 success, 1 a rejected or failed login (or one held off after a rejection), 2 a
config error. The composition (stores, pool, driver) is server/oneshot.py's.
"""

from __future__ import annotations

import json
import sys
import time

from authproxy.auth.grant import Grant
from authproxy.config.load import load_settings
from authproxy.errors import LoginFailed, LoginRejected, StoreUnavailable
from authproxy.gateway.status import iso
from authproxy.server.oneshot import HeldOff, RouteLogin, auth_route

EXIT_OK, EXIT_FAILED = 0, 1


async def login_command(path: str, name: str, *, force: bool) -> int:
    settings = load_settings(path)
    route = auth_route(settings, name)
    async with RouteLogin(settings, route) as login:
        try:
            grant = await login.login(force=force)
        except (HeldOff, LoginFailed, StoreUnavailable) as error:
            print(f"authproxy: {failure(name, error, login)}", file=sys.stderr)
            return EXIT_FAILED
        print(f"{name}: logged in; {lifetime(grant, time.time())}")
        if login.kept:
            print(f"{name}: kept in the token store: a proxy on the same store uses it")
        else:
            print(f"{name}: token_store is memory: the token is not kept for a proxy")
    return EXIT_OK


async def token_command(path: str, name: str, *, as_json: bool) -> int:
    settings = load_settings(path)
    route = auth_route(settings, name, static=True)  # static credentials are headers too
    async with RouteLogin(settings, route) as login:
        try:
            headers, grant = await login.headers()
        except (HeldOff, LoginFailed, StoreUnavailable) as error:
            print(f"authproxy: {failure(name, error, login)}", file=sys.stderr)
            return EXIT_FAILED
    if as_json:
        document = {"route": name, "headers": dict(headers), "expires_at": iso(grant.expires_at)}
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(f"{header}: {value}" for header, value in headers.items()))
    return EXIT_OK


def lifetime(grant: Grant, now: float) -> str:
    if grant.expires_at is None:
        return "no lifetime given: the token is used until the upstream refuses it"
    return f"the token expires at {at(grant.expires_at)} (in {span(grant.expires_at - now)})"


def failure(name: str, error: Exception, login: RouteLogin) -> str:
    """One line on what went wrong, with the upstream's status and when to try again."""
    if isinstance(error, HeldOff):
        hold = error.hold
        status = "" if hold.status is None else f" (upstream status {hold.status})"
        return (
            f"{name}: a login was rejected at {at(hold.since)}{status}; logins are held "
            f"until {at(hold.until)} (in {span(hold.until - time.time())}) so that the "
            "account is not locked; authproxy login --force tries now"
        )
    if isinstance(error, StoreUnavailable):
        return f"{name}: the token store does not answer: {error}"
    assert isinstance(error, LoginFailed)
    status = "" if error.upstream_status is None else f" (upstream status {error.upstream_status})"
    if isinstance(error, LoginRejected):
        wait = span(login.spec.relogin_after_rejection)
        return (
            f"{name}: login rejected{status}: {error.detail}; logins are held for {wait} "
            "(relogin_after_rejection), authproxy login --force tries sooner"
        )
    return f"{name}: login failed{status}: {error.detail}"


def at(timestamp: float) -> str | None:
    """A time to the second, in UTC: what a person reads."""
    return iso(float(round(timestamp)))


def span(seconds: float) -> str:
    """`4m 12s`, `3h 59m`, `12s`: a duration to read at a glance."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"

"""The hold after a rejected login, as a record in the token store beside the route's grant.

A rejected login means wrong credentials, and trying them again soon locks some accounts (emnify
locks one for 5 minutes after three failures). The proxy holds logins off for
`relogin_after_rejection` (`backoff.py`); the record carries that hold across processes and
restarts: `authproxy login` honours it (`--force` overrides), and a proxy that starts during it
waits it out. The record is a `Grant` under `<name>:hold`, so every store keeps it as it keeps
grants (sealed, bound to its name); it lives until the hold ends, and one per stored name at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from authproxy.auth.grant import Grant
from authproxy.errors import LoginRejected

SUFFIX = ":hold"
_STATUS = "rejected_status"


@dataclass(frozen=True, slots=True)
class Hold:
    """No login before `until` (POSIX seconds): the credentials were refused at `since`."""

    until: float
    since: float
    status: int | None


def hold_key(store_key: str) -> str:
    """The name of the hold record of the grant stored under `store_key`."""
    return store_key + SUFFIX


def hold_record(error: LoginRejected, now: float, seconds: float) -> Grant:
    """The record of a hold of `seconds` from `now` after `error`."""
    status = "" if error.upstream_status is None else str(error.upstream_status)
    return Grant(MappingProxyType({_STATUS: status}), now + seconds, now)


def hold_of(record: Grant | None, now: float) -> Hold | None:
    """The hold a record holds, or None when there is none or it has ended."""
    if record is None or record.expires_at is None or now >= record.expires_at:
        return None
    status = record.values.get(_STATUS, "")
    return Hold(record.expires_at, record.obtained_at, int(status) if status.isdigit() else None)


def held_failure(route: str, hold: Hold) -> LoginRejected:
    """What a request gets during a hold recorded by another process or an earlier run."""
    return LoginRejected(
        route, "the credentials were refused; the next login waits for the hold", hold.status
    )

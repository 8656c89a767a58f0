"""When a token expires, and when to renew it. Pure arithmetic on POSIX seconds; no clock is read.

A value that cannot be understood (a token that is not a JWT, a non-numeric `expire_in`) means
"unknown", returned as None: the token is then used until the upstream refuses it. The caller can
tell that from a deliberate `none` by comparing with `spec.source`, and log it.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping

from authproxy.auth_spec import ExpirySpec

# Renewal is spread over up to this share of the lifetime, so a fleet of proxies (or routes) that
# logged in together does not renew together.
JITTER_SHARE = 0.05


def expires_at(
    spec: ExpirySpec,
    values: Mapping[str, str],
    body_json: object,
    headers: Mapping[str, str],
    now: float,
) -> float | None:
    """Return the POSIX time the token expires at, or None when unknown.

    `values` are the captured values (`token` for `jwt_exp`), `body_json` the parsed answer (or
    None), `headers` the answer's headers with lower-cased names. Never raises on bad input.
    """
    match spec.source:
        case "jwt_exp":
            return _jwt_exp(values.get("token", ""))
        case "field":
            lifetime = _number(lookup(body_json, spec.key)) if spec.key else None
            return now + lifetime if lifetime is not None else None
        case "header":
            return _number(headers.get(spec.key.lower())) if spec.key else None
        case "ttl":
            return now + spec.seconds if spec.seconds is not None and spec.seconds > 0 else None
        case _:
            return None


def renew_deadline(
    obtained_at: float, expires_at: float | None, renew_at: float = 0.8, jitter: float = 0.0
) -> float | None:
    """Return when to start renewing a token, or None when its lifetime is unknown.

    That is `renew_at` of the way through the lifetime, brought forward by `jitter` (in [0, 1))
    times `JITTER_SHARE` of the lifetime: a 4 s token renews at 3.0-3.2 s, a 24 h one at 18-19.2 h.
    The margin scales with the lifetime (a fixed 30 s margin is wrong for both), and the deadline is
    never before `obtained_at`.
    """
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    if expires_at is None:
        return None
    lifetime = max(0.0, expires_at - obtained_at)
    return max(obtained_at, obtained_at + lifetime * (renew_at - jitter * JITTER_SHARE))


def lookup(document: object, path: str) -> object:
    """Walk a dotted `path` through nested JSON objects; None when any step is missing."""
    for key in path.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _jwt_exp(token: str) -> float | None:
    """The `exp` claim of a JWT (RFC 7519), read without verifying the signature: the upstream
    that issued the token is the one that checks it, and the proxy only schedules a renewal.

    Read by hand rather than with a JWT library: reading one claim needs base64 and JSON, and
    PyJWT loads `cryptography` (about 7 MiB of memory in every process) for algorithms this never
    uses.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    # ValueError covers bad JSON and undecodable bytes; binascii.Error, bad base64.
    except (ValueError, binascii.Error, RecursionError):
        return None
    return _number(claims.get("exp")) if isinstance(claims, dict) else None


def _number(value: object) -> float | None:
    """A positive, finite number, or a string holding one; anything else is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: a JSON integer beyond float range
        return None
    return number if math.isfinite(number) and number > 0 else None

"""A grant as stored: its JSON document, sealed with the store's cipher and bound to its name.

Anything that cannot be read back (another key, another entry's value, an older format, values
no real token has) reads as absent, never as a crash and never as a token.
"""

from __future__ import annotations

import json
import math
from types import MappingProxyType

from authproxy.auth.grant import Grant
from authproxy.crypto import Cipher, NullCipher, TokenCipher
from authproxy.settings import TokenStoreSettings

# A sealed grant's format (`seal_grant`); a value of another version reads as absent.
GRANT_VERSION = 2
# Stored times outside this span around now are tampering or corruption, never a real token: an
# `expires_at` of 1e308 would pin a token forever, and Infinity breaks every date shown for it.
TEN_YEARS = 10 * 365.25 * 24 * 3600
# How far another replica's clock may run ahead of ours when it stamps `obtained_at`.
CLOCK_SKEW = 300.0


def grant_to_document(grant: Grant) -> dict[str, object]:
    return {
        "values": dict(grant.values),
        "expires_at": grant.expires_at,
        "obtained_at": grant.obtained_at,
    }


# What `grant_from_document` raises for an entry it refuses; the text names the field.
BAD_GRANT = (KeyError, TypeError, ValueError)


def grant_from_document(entry: object, now: float) -> Grant:
    """The grant `grant_to_document` wrote; raises one of `BAD_GRANT` for anything else.

    Times are checked against `now` (POSIX seconds): finite, and within ten years of it;
    `obtained_at` no later than now, give or take another replica's clock.
    """
    if not isinstance(entry, dict):
        raise TypeError("entry")
    values = entry["values"]
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise TypeError("values")
    expires_at = entry["expires_at"]
    if expires_at is not None:
        expires_at = _stored_time(expires_at, "expires_at", now - TEN_YEARS, now + TEN_YEARS)
    obtained_at = _stored_time(
        entry["obtained_at"], "obtained_at", now - TEN_YEARS, now + CLOCK_SKEW
    )
    return Grant(MappingProxyType(dict(values)), expires_at, obtained_at)


def _stored_time(value: object, field: str, earliest: float, latest: float) -> float:
    # bool is an int to Python, but `true` is no time; NaN and Infinity fail `isfinite`.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(field)
    if not (math.isfinite(value) and earliest <= value <= latest):
        raise ValueError(field)
    return float(value)


def seal_grant(name: str, grant: Grant, cipher: Cipher) -> str:
    """`grant` sealed with the name it is stored under and the format version.

    A Redis writer without the key can still move a sealed value from one name to another (one
    route's token to another route's upstream); the name inside then no longer matches, and
    `open_grant` refuses it. The expiry is inside too: it cannot be extended from outside.
    """
    return seal({"v": GRANT_VERSION, "key": name, "grant": grant_to_document(grant)}, cipher)


def open_grant(name: str, text: str, cipher: Cipher, now: float) -> Grant | None:
    """The grant `seal_grant` sealed under `name`; None for anything else: another key, another
    name, another version (an older proxy's entry: one login replaces it), impossible values."""
    document = unseal(text, cipher)
    if document is None or document.get("v") != GRANT_VERSION or document.get("key") != name:
        return None
    try:
        return grant_from_document(document.get("grant"), now)
    except BAD_GRANT:
        return None


def cipher_for(settings: TokenStoreSettings) -> Cipher:
    """Writes under the first key, reads under any (a rotation); plain JSON without a key."""
    keys = settings.keys
    return TokenCipher.from_keys([key.reveal() for key in keys]) if keys else NullCipher()


def seal(document: dict[str, object], cipher: Cipher) -> str:
    """`document` as JSON, encrypted; ASCII text either way (JSON escapes non-ASCII, and Fernet
    tokens are url-safe base64), so it fits a JSON file or a Redis string unchanged."""
    plaintext = json.dumps(document, separators=(",", ":")).encode("ascii")
    return cipher.encrypt(plaintext).decode("ascii")


def unseal(text: str, cipher: Cipher) -> dict[str, object] | None:
    """The document `seal` wrote, or None when it cannot be decrypted or is not a JSON object."""
    try:
        plaintext = cipher.decrypt(text.encode())
        document = json.loads(plaintext) if plaintext is not None else None
    # ValueError covers bad JSON and undecodable bytes; RecursionError, absurd nesting.
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None

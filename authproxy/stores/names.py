"""The name a route's token is stored under: `<route>:<digest>`.

The digest covers the upstream, the preset and the credentials, so new credentials mean a new
name and a stale token is never picked up. Names are readable by whoever reads the store, so the
digest is keyed (HMAC with a key derived from `token_store_key`), or, without a key, slow
(PBKDF2): a name must never be a way to test password guesses at hash speed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets

from authproxy.settings import Route, TokenStoreSettings

# Names of tokens that never leave this process (the memory store): any key will do.
EPHEMERAL_NAME_KEY = secrets.token_bytes(32)
_NAME_CONTEXT = b"authproxy token store names v2"
NAME_ROUNDS = 100_000  # PBKDF2 rounds for names without a key: about 50 ms on a laptop core


def name_key_for(settings: TokenStoreSettings) -> bytes | None:
    """The key that names tokens in a store with `token_store_key`; None without one.

    Derived from the Fernet key rather than being it, so neither use can weaken the other.
    """
    keys = name_keys_for(settings)
    return keys[0] if keys else None


def name_keys_for(settings: TokenStoreSettings) -> tuple[bytes, ...]:
    """The name key of every `token_store_key`, the one that writes first: entries written under
    an older key carry that key's names, and are found under them (stores/rotation.py)."""
    return tuple(
        hmac.new(key.reveal().encode(), _NAME_CONTEXT, hashlib.sha256).digest()
        for key in settings.keys
    )


def store_key(route: Route, name_key: bytes | None) -> str:
    """`<route>:<digest>`, the name of the route's token: a new upstream, preset or credential
    gives a new name.

    The digest covers the credentials, and names are readable by whoever reads the store, so it
    must not be a fast unkeyed hash: that lets anyone who can list Redis keys test password guesses
    offline. With a key (`name_key_for`) it is HMAC-SHA256; a guess then needs the key. Without
    one it is PBKDF2-HMAC-SHA256: a salt kept beside the names would be read along with them, so
    what prices each guess is the work (~50 ms), paid here once per route and process (cached).
    Not scrypt: its 16 MiB of working memory stay in the process for good (OpenSSL's allocator
    keeps them), a sixth of a sidecar's footprint for a name.
    A key rotation can try the names of several keys: this is a function of (route, key).
    """
    material = _name_material(route)
    if name_key is None:
        digest = _slow_digest(material)
    else:
        digest = hmac.new(name_key, material, hashlib.sha256).hexdigest()
    return f"{route.name}:{digest[:32]}"


def _name_material(route: Route) -> bytes:
    auth = route.auth
    credentials: list[tuple[str, str]] = []
    preset = None
    if auth is not None:
        preset = auth.preset or "custom"
        credentials = [(name, auth.credentials[name].reveal()) for name in sorted(auth.credentials)]
    # JSON keeps the parts apart: no credential value can pass for a separator.
    return json.dumps([str(route.upstream), preset, credentials]).encode()


@functools.lru_cache(maxsize=256)
def _slow_digest(material: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", material, _NAME_CONTEXT, NAME_ROUNDS, dklen=16).hex()

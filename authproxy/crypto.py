"""Tokens at rest, encrypted: a Fernet cipher and an identity cipher.

A store shared by a team (Redis) or left on a laptop (the token file) holds live bearer tokens, so
with a key configured they are written as Fernet tokens (AES-128-CBC + HMAC-SHA256, with a
timestamp). Anything that cannot be decrypted, whether by a retired key or a tampered or plain
value, reads as *absent*: the proxy logs in again instead of crashing.

Keys rotate through a list, newest first (`TokenCipher.from_keys`, cryptography's MultiFernet):
everything is written under the first key and read under any of them, so entries sealed under
an older key stay readable until they are next written, and then move to the new one.

The key never appears in a repr, an error message or a log line: it is registered with the
redaction registry on parse, and errors describe the expected shape, never the input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from authproxy.secrets import REGISTRY

if TYPE_CHECKING:
    # Imported where used: `cryptography` costs about 7 MiB of memory in every process, and a
    # proxy without token_store_key never needs it.
    from cryptography.fernet import Fernet, MultiFernet

KEY_ERROR = "not a valid Fernet key: expected 32 url-safe base64-encoded bytes"
_KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}=")


class Cipher(Protocol):
    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, token: bytes) -> bytes | None: ...


class TokenCipher:
    """Fernet encryption under one key, or under the first of several that all decrypt (a
    rotation); `decrypt` answers None for anything it cannot open."""

    __slots__ = ("_fernet",)

    def __init__(self, fernet: Fernet | MultiFernet) -> None:
        self._fernet = fernet

    @classmethod
    def from_key(cls, text: str) -> TokenCipher:
        """Parse a key as `generate_key` prints it; whitespace around it (a key file) is ignored."""
        return cls(_fernet(text))

    @classmethod
    def from_keys(cls, texts: Sequence[str]) -> TokenCipher:
        """Encrypt under `texts[0]`, decrypt under any of them: `[new, old, ...]`."""
        if len(texts) == 1:
            return cls.from_key(texts[0])
        from cryptography.fernet import MultiFernet

        return cls(MultiFernet([_fernet(text) for text in texts]))

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def decrypt(self, token: bytes) -> bytes | None:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            # A wrong key, a tampered value or a value stored without a key: all mean "absent".
            return None

    def __repr__(self) -> str:
        return "TokenCipher(<key redacted>)"

    __str__ = __repr__


def _fernet(text: str) -> Fernet:
    key = text.strip()
    try:
        # Fernet alone accepts trailing text after the padding; one spelling per key is safer.
        if not _KEY_SHAPE.fullmatch(key):
            raise ValueError
        from cryptography.fernet import Fernet

        fernet = Fernet(key.encode())
    except (ValueError, TypeError):
        # `from None`: the cause's text is the codec's view of the key, which we never show.
        raise ValueError(KEY_ERROR) from None
    REGISTRY.add(key)
    return fernet


class NullCipher:
    """The identity: used when no key is configured, so stored tokens are plain JSON."""

    __slots__ = ()

    def encrypt(self, plaintext: bytes) -> bytes:
        return plaintext

    def decrypt(self, token: bytes) -> bytes | None:
        return token

    def __repr__(self) -> str:
        return "NullCipher()"


def generate_key() -> str:
    """A fresh random key, as `authproxy keygen` prints it."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")

"""Tokens at rest: Fernet round trips, a wrong key reads as absent, and the key never shows."""

from __future__ import annotations

import pytest

from authproxy.crypto import KEY_ERROR, NullCipher, TokenCipher, generate_key
from authproxy.secrets import REGISTRY
from authproxy.stores.codec import seal, unseal

DOCUMENT: dict[str, object] = {"values": {"token": "tok-3f9a1c"}, "expires_at": 1.5}


def test_round_trip_hides_the_plaintext() -> None:
    cipher = TokenCipher.from_key(generate_key())
    sealed = seal(DOCUMENT, cipher)
    assert "tok-3f9a1c" not in sealed
    assert "{" not in sealed
    assert unseal(sealed, cipher) == DOCUMENT
    assert cipher.decrypt(cipher.encrypt(b"\x00bytes")) == b"\x00bytes"


def test_wrong_key_tampering_and_plain_values_read_as_absent() -> None:
    ours, theirs = TokenCipher.from_key(generate_key()), TokenCipher.from_key(generate_key())
    sealed = seal(DOCUMENT, ours)
    assert unseal(sealed, theirs) is None
    assert unseal(sealed[:-8] + "AAAAAAAA", ours) is None
    assert unseal(seal(DOCUMENT, NullCipher()), ours) is None
    assert unseal(sealed, NullCipher()) is None  # ciphertext is not JSON
    assert unseal("not base64 at all \udcff", ours) is None


def test_null_cipher_stores_plain_json() -> None:
    sealed = seal(DOCUMENT, NullCipher())
    assert sealed == '{"values":{"token":"tok-3f9a1c"},"expires_at":1.5}'
    assert unseal(sealed, NullCipher()) == DOCUMENT
    assert unseal("[1, 2]", NullCipher()) is None  # JSON, but not a document


@pytest.mark.parametrize(
    "key",
    ["", "short", "x" * 44, generate_key()[:-2], generate_key() + "AAAA", "kéy-ünicode" * 4],
)
def test_malformed_key_is_refused_without_echo(key: str) -> None:
    with pytest.raises(ValueError, match="not a valid Fernet key") as caught:
        TokenCipher.from_key(key)
    assert str(caught.value) == KEY_ERROR
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    if key:
        assert key not in str(caught.value)
        assert key not in repr(caught.value)


def test_key_stays_out_of_repr_and_is_redacted() -> None:
    key = generate_key()
    cipher = TokenCipher.from_key(f"  {key}\n")  # as read from a key file
    assert key not in repr(cipher)
    assert key not in str(cipher)
    assert repr(cipher) == "TokenCipher(<key redacted>)"
    assert key in REGISTRY
    assert TokenCipher.from_key(key).decrypt(cipher.encrypt(b"x")) == b"x"


def test_generated_keys_differ() -> None:
    assert generate_key() != generate_key()
    assert len(generate_key()) == 44


def test_a_key_list_writes_under_the_first_and_reads_under_any() -> None:
    new, old = generate_key(), generate_key()
    rotating = TokenCipher.from_keys([new, old])
    sealed_before = seal(DOCUMENT, TokenCipher.from_key(old))
    assert unseal(sealed_before, rotating) == DOCUMENT
    sealed_now = seal(DOCUMENT, rotating)
    assert unseal(sealed_now, TokenCipher.from_key(new)) == DOCUMENT
    assert unseal(sealed_now, TokenCipher.from_key(old)) is None
    assert unseal(seal(DOCUMENT, TokenCipher.from_key(generate_key())), rotating) is None
    assert repr(rotating) == "TokenCipher(<key redacted>)"
    assert new in REGISTRY
    assert old in REGISTRY

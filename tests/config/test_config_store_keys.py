"""`token_store_key`: one key, or a list `[new, old, ...]` for a rotation."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from authproxy.config.load import parse_settings
from authproxy.errors import ConfigError
from authproxy.settings import Settings

ROUTES: dict[str, Any] = {"cosmic": {"upstream": "https://api.cosmicjs.com"}}


def parse(keys: object, environ: dict[str, str] | None = None) -> Settings:
    document = {"routes": ROUTES, "token_store": "memory", "token_store_key": keys}
    return parse_settings(document, source="test", environ=environ or {})


def problems(keys: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(keys)
    return str(caught.value)


def test_one_key_or_a_list_newest_first() -> None:
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    single = parse(new).token_store
    assert single.key is not None
    assert single.key.reveal() == new
    assert single.previous_keys == ()
    rotating = parse(["${NEW_KEY}", old], {"NEW_KEY": new}).token_store
    assert [key.reveal() for key in rotating.keys] == [new, old]
    assert rotating.key is not None
    assert rotating.key.origin == "env:NEW_KEY"


def test_every_bad_entry_of_a_key_list_is_named_by_its_index() -> None:
    good = Fernet.generate_key().decode()
    text = problems([good, "not-a-key", good, 7])
    assert "token_store_key[1]: not a valid Fernet key" in text
    assert "token_store_key[2]: listed twice; each key once, the new one first" in text
    assert "token_store_key[3]: expected a string, got a number" in text
    assert "not-a-key" not in text.replace("token_store_key[1]", "")
    assert "token_store_key: empty; give one key, or a list with the new key first" in problems([])
    assert "token_store_key: expected a string, got a mapping" in problems({"a": good})

"""The gateway keys of the config: clients, the shared store, its key, and the public-bind rule."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.fernet import Fernet

from authproxy.config.load import parse_settings
from authproxy.errors import ConfigError

ROUTES: dict[str, Any] = {
    "cosmic": {"upstream": "https://api.cosmicjs.com"},
    "coco": {"upstream": "http://localhost:9000"},
}
ALICE_KEY = "alice-key-0123456789abcdef"


def parse(document: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    return parse_settings({"routes": ROUTES, **document}, source="test", environ=environ or {})


def problems(document: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(document, environ)
    return str(caught.value)


def test_clients_by_key_or_digest_with_routes_and_rate_limit() -> None:
    digest = hashlib.sha256(b"bob-key-abcdef0123456789").hexdigest()
    settings = parse(
        {
            "clients": {
                "alice": {"key": "${ALICE_KEY}", "routes": ["cosmic"]},
                "bob": {"key_sha256": digest, "rate_limit": {"rate": 5, "burst": 10}},
            }
        },
        {"ALICE_KEY": ALICE_KEY},
    )
    alice, bob = settings.clients
    assert alice.key_sha256 == hashlib.sha256(ALICE_KEY.encode()).digest()
    assert alice.routes == frozenset({"cosmic"})
    assert bob.routes is None
    assert bob.rate_limit is not None
    assert (bob.rate_limit.rate, bob.rate_limit.burst) == (5, 10)


def test_client_problems_are_all_reported_with_paths() -> None:
    text = problems(
        {
            "clients": {
                "alice": {"key": ALICE_KEY, "routes": ["cosmc"]},
                "bob": {"key_sha256": "not-hex"},
                "carol": {},
                "dave": {"key": "short"},
            }
        }
    )
    assert "clients.alice.routes[0]: no route named 'cosmc'; did you mean 'cosmic'?" in text
    assert "clients.bob.key_sha256: expected 64 hex digits" in text
    assert "clients.carol: set exactly one of 'key'" in text
    assert "clients.dave.key: too short" in text
    assert ALICE_KEY not in text


def test_public_bind_needs_clients_or_an_explicit_opt_out() -> None:
    text = problems({"listen": "0.0.0.0:8080"})
    assert "listen: a non-loopback address without a 'clients' section" in text
    assert parse({"listen": "0.0.0.0:8080", "allow_unauthenticated": True}).allow_unauthenticated
    with_clients = parse({"listen": "0.0.0.0:8080", "clients": {"a": {"key": ALICE_KEY}}})
    assert with_clients.clients
    for loopback in ("127.0.0.1:8080", "127.1.2.3:80", "[::1]:8080", "localhost:8080"):
        assert parse({"listen": loopback}).listen.port > 0


def test_redis_store_url_and_key_are_secrets() -> None:
    key = Fernet.generate_key().decode()
    settings = parse(
        {"token_store": "redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0", "token_store_key": key},
        {"REDIS_PASSWORD": "redis-pass-424242"},
    )
    store = settings.token_store
    assert store.kind == "redis"
    assert store.url is not None
    assert store.url.reveal() == "redis://:redis-pass-424242@127.0.0.1:6379/0"
    assert "redis-pass-424242" not in repr(store)
    assert store.key is not None
    assert store.key.reveal() == key


def test_a_malformed_store_key_is_a_config_error_that_does_not_echo_it() -> None:
    text = problems({"token_store": "memory", "token_store_key": "not-a-fernet-key-at-all"})
    assert "token_store_key: not a valid Fernet key" in text
    assert "not-a-fernet-key-at-all" not in text

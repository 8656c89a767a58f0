"""The registry the redaction reads: it masks what can still appear, and stays as small as that.

A rotating API hands out a new token on every answer. Each token must be masked while anything
holds it, and the registry must not grow with the number of tokens ever seen (it did, and every
log line got slower and the process bigger).
"""

from __future__ import annotations

import gc
import secrets
from types import MappingProxyType

from authproxy.auth.grant import Grant
from authproxy.secrets import MASK, REGISTRY, SecretRegistry


def grant(token: str) -> Grant:
    return Grant(MappingProxyType({"token": token, "client": "client-id-1"}), None, 0.0)


def test_a_held_token_is_masked_and_forgotten_some_releases_after_its_grant_is_gone() -> None:
    token = secrets.token_urlsafe(16)
    current = grant(token)
    assert REGISTRY.scrub(f"Bearer {token}") == f"Bearer {MASK}"
    del current
    gc.collect()
    assert REGISTRY.scrub(token) == MASK  # just released: a log line about it may still come
    later = [grant(secrets.token_urlsafe(16)) for _ in range(SecretRegistry.RECENTLY_RELEASED + 1)]
    del later
    gc.collect()
    assert REGISTRY.scrub(token) == token


def test_rotating_thousands_of_tokens_keeps_the_registry_small() -> None:
    gc.collect()
    before = len(REGISTRY)
    held = grant(secrets.token_urlsafe(16))
    for _ in range(5000):
        held = grant(secrets.token_urlsafe(16))  # each rotation drops the previous grant
    assert REGISTRY.scrub(held.values["token"]) == MASK
    assert len(REGISTRY) <= before + 2 + SecretRegistry.RECENTLY_RELEASED


def test_values_held_twice_stay_until_both_let_go() -> None:
    registry = SecretRegistry()
    registry.hold(["shared-value"])
    registry.hold(["shared-value"])
    registry.release(["shared-value"])
    assert "shared-value" in registry
    registry.release(["shared-value"])
    assert "shared-value" in registry  # recently released
    for index in range(SecretRegistry.RECENTLY_RELEASED):
        registry.hold([f"other-{index}"])
        registry.release([f"other-{index}"])
    assert "shared-value" not in registry
    assert registry.scrub("shared-value") == "shared-value"


def test_permanent_values_outlive_every_release_and_the_longest_match_wins() -> None:
    registry = SecretRegistry()
    registry.add("password-1")
    registry.hold(["password-1-and-more"])
    registry.release(["password-1"])
    assert registry.scrub("x password-1-and-more y password-1") == f"x {MASK} y {MASK}"
    assert registry.scrub("abc") == "abc"
    registry.add("abc")  # shorter than MIN_REDACTABLE_LENGTH: guessable, never masked
    assert registry.scrub("abc") == "abc"

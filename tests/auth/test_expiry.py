"""Expiry sources and the renewal deadline: pure arithmetic, fixed clock."""

from __future__ import annotations

import jwt
import pytest

from authproxy.auth.expiry import expires_at, renew_deadline
from authproxy.auth_spec import ExpirySpec

NOW = 1_700_000_000.0
HOUR = 3600.0


def make_jwt(**claims: object) -> str:
    return jwt.encode(claims, "test-signing-key-of-32-bytes-min!", algorithm="HS256")


def test_jwt_exp_reads_the_claim_without_verifying() -> None:
    token = make_jwt(sub="u", exp=int(NOW + 4 * HOUR))
    assert expires_at(ExpirySpec("jwt_exp"), {"token": token}, None, {}, NOW) == NOW + 4 * HOUR


def test_jwt_exp_in_the_past_is_still_reported() -> None:
    token = make_jwt(exp=int(NOW - 10))
    assert expires_at(ExpirySpec("jwt_exp"), {"token": token}, None, {}, NOW) == NOW - 10


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "", "a.b.c", make_jwt(sub="no exp"), make_jwt(exp="soon"), make_jwt(exp=True)],
)
def test_jwt_exp_unknown_when_unreadable(token: str) -> None:
    assert expires_at(ExpirySpec("jwt_exp"), {"token": token}, None, {}, NOW) is None


def test_jwt_exp_without_token_is_unknown() -> None:
    assert expires_at(ExpirySpec("jwt_exp"), {}, None, {}, NOW) is None


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        ({"expire_in": 86400}, "expire_in", NOW + 86400),
        ({"expire_in": "60"}, "expire_in", NOW + 60),
        ({"expire_in": 1.5}, "expire_in", NOW + 1.5),
        ({"data": {"expires_in": 30}}, "data.expires_in", NOW + 30),
        ({"expire_in": True}, "expire_in", None),
        ({"expire_in": -5}, "expire_in", None),
        ({"expire_in": 0}, "expire_in", None),
        ({"expire_in": "soon"}, "expire_in", None),
        ({"expire_in": 10**400}, "expire_in", None),
        ({"other": 1}, "expire_in", None),
        ([1, 2], "expire_in", None),
        (None, "expire_in", None),
    ],
)
def test_field(body: object, key: str, expected: float | None) -> None:
    assert expires_at(ExpirySpec("field", key=key), {}, body, {}, NOW) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"expiry": "1486047985"}, 1486047985.0),
        ({"expiry": " 1486047985 "}, 1486047985.0),
        ({"expiry": "nan"}, None),
        ({"expiry": "tomorrow"}, None),
        ({}, None),
    ],
)
def test_header(headers: dict[str, str], expected: float | None) -> None:
    assert expires_at(ExpirySpec("header", key="Expiry"), {}, None, headers, NOW) == expected


def test_ttl_and_none() -> None:
    assert expires_at(ExpirySpec("ttl", seconds=900), {}, None, {}, NOW) == NOW + 900
    assert expires_at(ExpirySpec("ttl"), {}, None, {}, NOW) is None
    assert expires_at(ExpirySpec("none"), {"token": make_jwt(exp=1)}, None, {}, NOW) is None


def test_renew_deadline_scales_with_a_short_lifetime() -> None:
    assert renew_deadline(NOW, NOW + 4, jitter=0.0) == pytest.approx(NOW + 3.2)
    earliest = renew_deadline(NOW, NOW + 4, jitter=0.999)
    assert earliest is not None
    assert NOW + 3.0 <= earliest < NOW + 3.2


def test_renew_deadline_for_a_day_long_token() -> None:
    latest = renew_deadline(NOW, NOW + 86400, jitter=0.0)
    earliest = renew_deadline(NOW, NOW + 86400, jitter=0.999)
    assert latest == pytest.approx(NOW + 19.2 * HOUR)
    assert earliest is not None
    assert NOW + 18 * HOUR <= earliest < NOW + 19.2 * HOUR


def test_renew_deadline_respects_renew_at() -> None:
    assert renew_deadline(NOW, NOW + 100, renew_at=0.5) == pytest.approx(NOW + 50)


def test_renew_deadline_unknown_or_already_expired() -> None:
    assert renew_deadline(NOW, None, jitter=0.5) is None
    assert renew_deadline(NOW, NOW - 60, jitter=0.5) == NOW  # never before obtained_at


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 2.0])
def test_renew_deadline_rejects_jitter_outside_unit_interval(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        renew_deadline(NOW, NOW + 60, jitter=jitter)

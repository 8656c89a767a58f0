"""Header injection: compiled and checked at load, replacing client copies at request time."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from multidict import CIMultiDict

from authproxy.auth.flow import static_grant
from authproxy.auth.grant import Grant
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.presets import PRESETS
from authproxy.auth_spec import AuthSpec, Capture, ExpirySpec, InjectSpec, RequestSpec
from authproxy.secrets import Secret

PASSWORD = "pw-inject-Secret-9"


def build(preset: str, **secrets: str) -> AuthSpec:
    return PRESETS[preset].build({k: Secret(v) for k, v in secrets.items()}, {})


def custom(headers: Mapping[str, str], defaults: Mapping[str, str] | None = None) -> AuthSpec:
    return AuthSpec(
        preset=None,
        credentials={"password": Secret(PASSWORD), "tenant": Secret("tenant-42")},
        login=RequestSpec("POST", "/login", body={"password": "{password}"}),
        captures=(
            Capture("token", "body", ("token",)),
            Capture("refresh_token", "body", ("refresh_token",), required=False),
        ),
        expiry=ExpirySpec("none"),
        inject=InjectSpec(headers=headers, defaults=defaults or {}),
    )


GRANT = Grant({"token": "tok-inject-1"}, None, 0.0)


def test_replaces_every_client_copy_case_insensitively() -> None:
    injector = CompiledInjector.from_spec(build("cosmic", email="e@x", password=PASSWORD))
    headers = CIMultiDict([("authorization", "Basic client"), ("AUTHORIZATION", "x"), ("X-A", "1")])
    injector.apply(headers, GRANT)
    assert headers.getall("Authorization") == ["Bearer tok-inject-1"]
    assert headers["x-a"] == "1"


def test_works_on_a_plain_dict() -> None:
    injector = CompiledInjector.from_spec(build("cosmic", email="e@x", password=PASSWORD))
    headers = {"authorization": "a", "Authorization": "b", "Accept": "*/*"}
    injector.apply(headers, GRANT)
    assert headers == {"Authorization": "Bearer tok-inject-1", "Accept": "*/*"}


def test_defaults_only_when_the_client_sent_none() -> None:
    spec = build("cucumberstudio", email="e@x", password=PASSWORD)
    injector = CompiledInjector.from_spec(spec)
    grant = Grant({"token": "tok-c", "client": "cli-1", "uid": "e@x"}, None, 0.0)
    absent: CIMultiDict[str] = CIMultiDict([("access-token", "stale")])
    injector.apply(absent, grant)
    assert dict(absent) == {
        "access-token": "tok-c",
        "client": "cli-1",
        "uid": "e@x",
        "Accept": "application/vnd.api+json; version=1",
    }
    present = CIMultiDict([("accept", "text/csv")])
    injector.apply(present, grant)
    assert present.getall("Accept") == ["text/csv"]


def test_names_lists_forced_headers_only() -> None:
    injector = CompiledInjector.from_spec(build("cucumberstudio", email="e@x", password=PASSWORD))
    assert injector.names == {"access-token", "client", "uid"}
    assert injector.default_names == {"accept"}


def test_accepts_checks_a_grant_has_every_value() -> None:
    injector = CompiledInjector.from_spec(custom({"X-Auth": "{tenant}:{token}"}))
    assert injector.accepts(GRANT)
    assert not injector.accepts(Grant({"access_token": "old-shape"}, None, 0.0))


def test_static_credentials_fill_templates() -> None:
    spec = build("coco", api_token="coco-api-token-2")
    headers: dict[str, str] = {}
    CompiledInjector.from_spec(spec).apply(headers, static_grant(spec))
    assert headers == {"X-API-TOKEN": "coco-api-token-2"}


def test_credentials_and_captures_combine() -> None:
    injector = CompiledInjector.from_spec(custom({"X-Auth": "{tenant}:{token}"}))
    headers: dict[str, str] = {}
    injector.apply(headers, GRANT)
    assert headers == {"X-Auth": "tenant-42:tok-inject-1"}


@pytest.mark.parametrize(
    ("headers", "defaults", "message"),
    [
        ({"Authorization": "Bearer {tokn}"}, None, "'Authorization': {tokn} is neither"),
        ({"X-R": "{refresh_token}"}, None, "'X-R': {refresh_token} is a value the login may not"),
        ({"Authorization": "Bearer {token"}, None, "'Authorization': unbalanced '{'"),
        ({"Authorization": "{token|md5}"}, None, "unknown filter 'md5'"),
        ({"Bad Header": "{token}"}, None, "not a valid HTTP header name"),
        ({"Authorization": "{token}"}, {"authorization": "x"}, "authorization set both"),
        ({}, {"Accept": "{nope}"}, "'Accept': {nope}"),
    ],
)
def test_compile_errors_name_the_header(
    headers: dict[str, str], defaults: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(ValueError, match="inject") as caught:
        CompiledInjector.from_spec(custom(headers, defaults))
    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_static_spec_cannot_name_a_capture() -> None:
    spec = build("coco", api_token="coco-api-token-3")
    broken = AuthSpec(
        preset=None,
        credentials=spec.credentials,
        login=None,
        captures=(Capture("token", "body", ("token",)),),
        expiry=spec.expiry,
        inject=InjectSpec(headers={"Authorization": "Bearer {token}"}),
    )
    with pytest.raises(ValueError, match=r"\{token\} is neither"):
        CompiledInjector.from_spec(broken)


def test_repr_shows_names_not_values() -> None:
    injector = CompiledInjector.from_spec(custom({"X-Auth": "{password}"}))
    assert repr(injector) == "CompiledInjector(X-Auth)"

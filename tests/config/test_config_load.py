"""config/: YAML -> Settings, every problem at once with its key path, secrets never echoed."""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from yarl import URL

from authproxy.auth_spec import Capture, ExpirySpec, RefreshSpec
from authproxy.config.addresses import parse_listen
from authproxy.config.load import default_token_store_path, load_settings, parse_settings
from authproxy.errors import ConfigError
from authproxy.secrets import Secret
from authproxy.settings import ListenAddress, Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
COSMIC = {"preset": "cosmic", "email": "${COSMIC_EMAIL}", "password": "${COSMIC_PASSWORD}"}
COSMIC_ENV = {"COSMIC_EMAIL": "me@example.com", "COSMIC_PASSWORD": "pw-cosmic-1234"}


def parse(source: object, environ: dict[str, str] | None = None) -> Settings:
    data = yaml.safe_load(textwrap.dedent(source)) if isinstance(source, str) else source
    return parse_settings(data, source="test.yaml", environ=environ or {})


def problems(source: object, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(source, environ)
    return [str(problem) for problem in info.value.problems]


def route(extra: Mapping[str, object], name: str = "api") -> dict[str, object]:
    return {"routes": {name: {"upstream": "https://api.example.com", **extra}}}


def auth(block: object) -> dict[str, object]:
    return route({"auth": block})


# ---- top level -------------------------------------------------------------------------------


def test_minimal_config_gets_every_default() -> None:
    settings = parse(route({}), {"XDG_STATE_HOME": "/state"})
    assert settings.listen == ListenAddress("127.0.0.1", 8080)
    assert settings.token_store.kind == "file"
    assert settings.token_store.path == "/state/authproxy/tokens.json"
    assert not settings.token_store.explicit
    assert (settings.shutdown_grace, settings.header_timeout) == (10.0, 10.0)
    assert (settings.keepalive_timeout, settings.max_header_size) == (75.0, 8190)
    (api,) = settings.routes
    assert (api.name, api.prefix, api.upstream) == ("api", "/api", URL("https://api.example.com"))
    assert (api.timeout.connect, api.timeout.read, api.tls.verify) == (5.0, 60.0, True)
    assert api.forwarded_headers
    assert api.auth is None
    assert settings.source == "test.yaml"


def test_top_level_values_are_read() -> None:
    settings = parse(
        {
            **route({}),
            "listen": "[::1]:9000",
            "token_store": "memory",
            "shutdown_grace": 2.5,
            "limits": {"header_timeout": 3, "keepalive_timeout": 4, "max_header_size": 16384},
        }
    )
    assert settings.listen == ListenAddress("::1", 9000)
    assert (settings.token_store.kind, settings.token_store.explicit) == ("memory", True)
    assert settings.shutdown_grace == 2.5
    assert (settings.header_timeout, settings.keepalive_timeout) == (3.0, 4.0)
    assert settings.max_header_size == 16384


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ListenAddress("127.0.0.1", 8080)),
        ("[::1]:8080", ListenAddress("::1", 8080)),
        ("0.0.0.0:0", ListenAddress("0.0.0.0", 0)),
        ("localhost:9000", ListenAddress("localhost", 9000)),
    ],
)
def test_parse_listen(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected
    assert str(parse_listen(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (":8080", "expected HOST:PORT"),
        ("99999", "from 0 to 65535"),  # a port alone means 127.0.0.1:PORT
        ("::1:8080", "IPv6 host in brackets"),
        ("[::1]8080", "expected [IPV6]:PORT"),
        ("[nothost]:80", "not an IPv6 address"),
        ("localhost:99999", "from 0 to 65535"),
        ("localhost:http", "from 0 to 65535"),
        ("bad_host!:80", "neither an IP address nor a host name"),
        ("127.0.0.300:80", "neither an IP address nor a host name"),
    ],
)
def test_parse_listen_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_listen(text)


def test_default_token_store_path() -> None:
    assert default_token_store_path({"XDG_STATE_HOME": "/s"}) == "/s/authproxy/tokens.json"
    # The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
    relative = {"XDG_STATE_HOME": "rel", "HOME": "/home/u"}
    assert default_token_store_path(relative) == "/home/u/.local/state/authproxy/tokens.json"
    assert default_token_store_path({"HOME": "/h"}) == "/h/.local/state/authproxy/tokens.json"


def test_token_store_path_is_explicit_and_expands_home(tmp_path: Path) -> None:
    settings = parse({**route({}), "token_store": "~/t.json"}, {"HOME": "/home/u"})
    assert settings.token_store.path == "/home/u/t.json"
    assert (settings.token_store.kind, settings.token_store.explicit) == ("file", True)
    assert problems({**route({}), "token_store": str(tmp_path)}) == [
        "token_store: is a directory; name a file such as tokens.json inside it"
    ]


def test_top_level_type_and_range_problems() -> None:
    found = problems(
        {
            **route({}),
            "listen": "nowhere",
            "shutdown_grace": 0,
            "limits": {"header_timeout": True, "max_header_size": 1.5, "keepalive": 3},
        }
    )
    assert found == [
        "listen: expected HOST:PORT, e.g. 127.0.0.1:8080",
        "shutdown_grace: must be greater than 0",
        "limits.keepalive: unknown key; did you mean 'keepalive_timeout'?",
        "limits.header_timeout: expected a number, got a boolean",
        "limits.max_header_size: expected a whole number",
    ]


def test_unknown_top_level_key_suggests_and_routes_are_required() -> None:
    assert problems({"rotues": {}}) == [
        "rotues: unknown key; did you mean 'routes'?",
        "routes: required: a mapping of route name to route (upstream, prefix, auth)",
    ]


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({}, "routes: no routes; define at least one"),
        ([], "routes: expected a mapping, got a list"),
    ],
)
def test_routes_must_be_a_non_empty_mapping(routes: object, message: str) -> None:
    assert problems({"routes": routes}) == [message]


def test_config_that_is_not_a_mapping() -> None:
    assert problems("- a\n- b\n") == ["expected a mapping of settings with at least 'routes'"]


# ---- routes ----------------------------------------------------------------------------------


def test_route_name_and_keys() -> None:
    data = {"routes": {"bad name": {"upstream": "https://a.example", "timout": 1}}}
    assert problems(data) == [
        "routes.bad name: a route name may only hold letters, digits, '-' and '_'",
        "routes.bad name.timout: unknown key; did you mean 'timeout'?",
    ]


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ("ftp://files.example", "not an http(s) URL with a host"),
        ("api.example.com", "not an http(s) URL with a host"),
        ("https:///path", "not an http(s) URL with a host"),
        ("https://a.example/?x=1", "must not have a query or fragment"),
        ("https://a.example/#top", "must not have a query or fragment"),
        ("https://me:pw@a.example", "must not hold a user or password"),
        ("https://a.example:99999", "not a valid URL"),
        (42, "expected a string, got a number (quote it)"),
    ],
)
def test_upstream_problems(upstream: object, message: str) -> None:
    (found,) = problems({"routes": {"api": {"upstream": upstream}}})
    assert found.startswith(f"routes.api.upstream: {message}")


def test_upstream_keeps_base_path_without_trailing_slash() -> None:
    (api,) = parse({"routes": {"api": {"upstream": "http://localhost:9000/v2/"}}}).routes
    assert api.upstream == URL("http://localhost:9000/v2")


def test_upstream_is_required() -> None:
    assert problems({"routes": {"api": {"prefix": "/x"}}}) == ["routes.api.upstream: required"]


@pytest.mark.parametrize(("given", "prefix"), [("/a/b/", "/a/b"), ("/", "/"), ("/-x", "/-x")])
def test_prefix_is_normalised(given: str, prefix: str) -> None:
    assert parse(route({"prefix": given})).routes[0].prefix == prefix


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("api", "must start with '/'"),
        ("/a?b", "must be a plain path"),
        ("/a b", "must be a plain path"),
        ("/a//b", "empty segment"),
        ("/-", "the proxy's own endpoints"),
        ("/-/", "the proxy's own endpoints"),
        ("/-/health", "the proxy's own endpoints"),
    ],
)
def test_prefix_problems(given: str, message: str) -> None:
    (found,) = problems(route({"prefix": given}))
    assert found.startswith("routes.api.prefix: ")
    assert message in found


def test_prefixes_must_be_unique() -> None:
    data = {
        "routes": {
            "one": {"upstream": "https://a.example", "prefix": "/shared/"},
            "two": {"upstream": "https://b.example", "prefix": "/shared"},
        }
    }
    assert problems(data) == ["routes.two.prefix: /shared is already the prefix of 'one'"]


def test_timeout_tls_and_forwarded_headers(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    (api,) = parse(
        route(
            {
                "timeout": {"connect": 1, "read": 2.5},
                "tls": {"verify": False, "ca_file": str(ca)},
                "forwarded_headers": False,
            }
        )
    ).routes
    assert (api.timeout.connect, api.timeout.read) == (1.0, 2.5)
    assert (api.tls.verify, api.tls.ca_file) == (False, str(ca))
    assert api.forwarded_headers is False


def test_timeout_tls_and_forwarded_headers_problems(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    found = problems(
        route(
            {
                "timeout": {"connect": -1, "read": "60"},
                "tls": {"verify": "yes", "ca_file": str(missing)},
                "forwarded_headers": 1,
            }
        )
    )
    assert found == [
        "routes.api.timeout.connect: must be greater than 0",
        "routes.api.timeout.read: expected a number, got a string",
        f"routes.api.tls.ca_file: {missing} is not a readable file",
        "routes.api.tls.verify: expected true or false, got a string",
        "routes.api.forwarded_headers: expected true or false, got a number",
    ]


def test_every_problem_in_every_route_is_reported_at_once() -> None:
    found = problems(
        {
            "listen": "127.0.0.1:http",
            "routes": {
                "one": {"upstream": "ftp://x", "prefix": "/-/one"},
                "two": {"upstream": "https://b.example", "auth": {"preset": "cosmik"}},
                "three": {"upstream": "https://c.example", "tls": {"verfy": True}},
            },
        }
    )
    assert [problem.split(":")[0] for problem in found] == [
        "listen",
        "routes.one.upstream",
        "routes.one.prefix",
        "routes.two.auth.preset",
        "routes.three.tls.verfy",
    ]


# ---- interpolation ---------------------------------------------------------------------------


def test_env_interpolation_embedded_and_escaped() -> None:
    settings = parse(
        {**route({"upstream": "https://${HOST}/api", "prefix": "/$${literal}"})},
        {"HOST": "h.example"},
    )
    (api,) = settings.routes
    assert api.upstream == URL("https://h.example/api")
    assert api.prefix == "/${literal}"


def test_every_unset_variable_is_named() -> None:
    found = problems(route({"upstream": "https://${HOST}:${PORT}/"}))
    assert found == [
        "routes.api.upstream: environment variable HOST is not set",
        "routes.api.upstream: environment variable PORT is not set",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://${1BAD}", "'${1BAD}' is neither ${NAME} nor ${file:/path}"),
        ("https://${HOST", "unclosed '${'; write '$${' for a literal '${'"),
    ],
)
def test_malformed_references(value: str, message: str) -> None:
    assert problems(route({"upstream": value})) == [f"routes.api.upstream: {message}"]


def test_interpolated_numbers_and_booleans() -> None:
    env = {"READ": "30", "VERIFY": "false"}
    (api,) = parse(
        route({"timeout": {"read": "${READ}"}, "tls": {"verify": "${VERIFY}"}}), env
    ).routes
    assert (api.timeout.read, api.tls.verify) == (30.0, False)


def test_file_interpolation_strips_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("pw-from-file\n\n")
    (tmp_path / "email").write_bytes(b"me@example.com\r\n")
    block = {
        "preset": "cosmic",
        "email": f"${{file:{tmp_path / 'email'}}}",
        "password": f"${{file:{tmp_path / 'password'}}}",
    }
    spec = parse(auth(block)).routes[0].auth
    assert spec is not None
    assert spec.credentials["password"].reveal() == "pw-from-file\n"
    assert spec.credentials["password"].origin == f"file:{tmp_path / 'password'}"
    assert spec.credentials["email"].reveal() == "me@example.com"


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    found = problems(auth({**COSMIC, "password": f"${{file:{missing}}}"}), COSMIC_ENV)
    assert found == [
        f"routes.api.auth.password: cannot read file {missing}: No such file or directory"
    ]


def test_secrets_are_wrapped_with_their_origin() -> None:
    spec = parse(auth({**COSMIC, "email": "me@example.com"}), COSMIC_ENV).routes[0].auth
    assert spec is not None
    email, password = spec.credentials["email"], spec.credentials["password"]
    assert isinstance(email, Secret)
    assert isinstance(password, Secret)
    assert (email.origin, email.reveal()) == ("literal", "me@example.com")
    assert (password.origin, password.reveal()) == ("env:COSMIC_PASSWORD", "pw-cosmic-1234")


def test_no_secret_value_in_the_error() -> None:
    env = {**COSMIC_ENV, "UPSTREAM": "not-a-url-sekrit-9911", "FORMAT": "fmt-sekrit-8822"}
    data = {
        "routes": {
            "cosmic": {"upstream": "${UPSTREAM}", "auth": {**COSMIC, "ttl": -1}},
            "custom": {
                "upstream": "https://a.example",
                "auth": {
                    "credentials": {"key": "${COSMIC_PASSWORD}"},
                    "login": {"path": "/login", "format": "${FORMAT}"},
                    "token": {"key": "token"},
                    "inject": {"headers": {"X-Key": "{key} ${COSMIC_PASSWORD} {nope|rot13}"}},
                },
            },
        }
    }
    with pytest.raises(ConfigError) as info:
        parse(data, env)
    text = str(info.value)
    assert "unknown format (from env:FORMAT)" in text
    assert "unknown filter 'rot13'" in text
    for value in ("pw-cosmic-1234", "sekrit"):
        assert value not in text


# ---- presets ---------------------------------------------------------------------------------


def test_preset_builds_with_common_options() -> None:
    block = {
        **COSMIC,
        "ttl": 600,
        "warm": True,
        "renew_at": 0.5,
        "relogin_after_rejection": 0,
        "invalid_statuses": [401, 419],
    }
    spec = parse(auth(block), COSMIC_ENV).routes[0].auth
    assert spec is not None
    assert spec.preset == "cosmic"
    assert spec.expiry == ExpirySpec("ttl", seconds=600.0)
    assert (spec.warm, spec.renew_at, spec.relogin_after_rejection) == (True, 0.5, 0.0)
    assert spec.invalid_statuses == frozenset({401, 419})


def test_unknown_preset_suggests_and_lists() -> None:
    (found,) = problems(auth({"preset": "cosmik"}))
    assert found == (
        "routes.api.auth.preset: unknown preset 'cosmik'; did you mean 'cosmic'? "
        "presets: coco, cosmic, crux, cucumberstudio, emnify, oauth2"
    )


def test_unknown_preset_field_suggests() -> None:
    block = {"preset": "cosmic", "email": "a@b.example", "pasword": "x"}
    assert problems(auth(block)) == [
        "routes.api.auth.pasword: unknown key; did you mean 'password'?"
    ]


def test_preset_problem_gets_its_path() -> None:
    found = problems(auth({"preset": "cosmic", "email": "a@b.example"}))
    assert found == ["routes.api.auth.password: required by preset 'cosmic'"]


def test_preset_options_accept_numbers_and_fields_reject_structures() -> None:
    block = {"preset": "emnify", "username": ["u"], "password": 1234, "password_hash": 1}
    assert problems(auth(block)) == [
        "routes.api.auth.username: expected a string, got a list",
        "routes.api.auth.password: expected a string, got a number (quote it)",
    ]
    block = {"preset": "emnify", "username": "u", "password": "p", "password_hash": 1}
    assert problems(auth(block)) == ["routes.api.auth.password_hash: expected one of: sha1, none"]


def test_empty_secret_is_a_problem() -> None:
    found = problems(auth(COSMIC), {**COSMIC_ENV, "COSMIC_PASSWORD": ""})
    assert found == ["routes.api.auth.password: is empty (env:COSMIC_PASSWORD)"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"renew_at": 1}, "renew_at: must be less than 1"),
        ({"renew_at": 0}, "renew_at: must be greater than 0"),
        ({"relogin_after_rejection": -1}, "relogin_after_rejection: must be at least 0"),
        ({"invalid_statuses": [200]}, "invalid_statuses[0]: must be from 400 to 599"),
        ({"invalid_statuses": [True]}, "invalid_statuses[0]: expected a number, got a boolean"),
        ({"invalid_statuses": []}, "invalid_statuses: empty; list at least one status"),
        ({"warm": "yes"}, "warm: expected true or false, got a string"),
        ({"ttl": 0}, "ttl: must be greater than 0"),
    ],
)
def test_common_option_problems(options: dict[str, object], message: str) -> None:
    (found,) = problems(auth({**COSMIC, **options}), COSMIC_ENV)
    assert found.startswith(f"routes.api.auth.{message}")


def test_auth_must_be_a_mapping() -> None:
    assert problems(auth("cosmic")) == ["routes.api.auth: expected a mapping, got a string"]


# ---- custom flows ----------------------------------------------------------------------------

SIXTH = """
routes:
  sixth:
    upstream: https://sixth.example
    auth:
      credentials: {user: "${SIXTH_USER}", secret: "${SIXTH_SECRET}"}
      login:
        path: /oauth/login
        format: form
        body: {user: "{user}", pass: "{secret|sha1}"}
        headers: {X-Client: authproxy}
      token: {from: body, key: [access_token, token], refresh_key: refresh_token,
              extra: {client: client_id}}
      expiry: {from: field, key: expires_in}
      refresh: {path: /oauth/refresh, body: {refresh_token: "{refresh_token}", c: "{client}"}}
      inject: {headers: {Authorization: "Bearer {token}"}, defaults: {Accept: application/json}}
      adopt: {trigger: x-new-token, headers: {token: x-new-token}}
      strip_response_headers: [x-new-token]
      warm: true
"""
SIXTH_ENV = {"SIXTH_USER": "sixth-user", "SIXTH_SECRET": "sixth-secret-5544"}


def test_custom_flow_builds_the_whole_spec() -> None:
    spec = parse(SIXTH, SIXTH_ENV).routes[0].auth
    assert spec is not None
    assert spec.preset is None
    assert spec.warm
    assert spec.credentials["secret"].origin == "env:SIXTH_SECRET"
    assert spec.login is not None
    assert (spec.login.method, spec.login.path, spec.login.encoding) == (
        "POST",
        "/oauth/login",
        "form",
    )
    assert dict(spec.login.body) == {"user": "{user}", "pass": "{secret|sha1}"}
    assert dict(spec.login.headers) == {"X-Client": "authproxy"}
    assert spec.captures == (
        Capture("token", "body", ("access_token", "token")),
        Capture("refresh_token", "body", ("refresh_token",), required=False),
        Capture("client", "body", ("client_id",)),
    )
    assert spec.expiry == ExpirySpec("field", key="expires_in")
    assert isinstance(spec.refresh, RefreshSpec)
    assert spec.refresh.requires == "refresh_token"
    assert spec.refresh.request.path == "/oauth/refresh"
    assert dict(spec.inject.headers) == {"Authorization": "Bearer {token}"}
    assert dict(spec.inject.defaults) == {"Accept": "application/json"}
    assert spec.adopt is not None
    assert dict(spec.adopt.headers) == {"token": "x-new-token"}
    assert spec.strip_response_headers == ("x-new-token",)


def sixth_with(**changes: object) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SIXTH)
    block = data["routes"]["sixth"]["auth"]
    block.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del block[key]
    return data


def test_template_names_are_checked_where_they_are_used() -> None:
    data = sixth_with(
        login={"path": "/login", "body": {"u": "{usr}", "t": "{token}"}},
        refresh={"path": "/r", "body": {"x": "{refresh_tokn}"}},
        inject={"headers": {"Authorization": "Bearer {tokn}", "X-R": "{refresh_token}"}},
    )
    assert problems(data, SIXTH_ENV) == [
        "routes.sixth.auth.login.body.u: unknown name 'usr'; did you mean 'user'?",
        "routes.sixth.auth.login.body.t: unknown name 'token'; expected one of: secret, user",
        "routes.sixth.auth.refresh.body.x: unknown name 'refresh_tokn';"
        " did you mean 'refresh_token'?",
        "routes.sixth.auth.inject.headers.Authorization: unknown name 'tokn';"
        " did you mean 'token'?",
        "routes.sixth.auth.inject.headers.X-R: 'refresh_token' is a value the login may not return;"
        " it cannot be relied on",
    ]


def test_template_syntax_problems_keep_their_path() -> None:
    data = sixth_with(inject={"headers": {"A": "{token|rot13}", "B": "{token", "C D": "x"}})
    found = problems(data, SIXTH_ENV)
    assert found[0].startswith("routes.sixth.auth.inject.headers.A: unknown filter 'rot13'")
    assert found[1].startswith("routes.sixth.auth.inject.headers.B: unbalanced '{'")
    assert found[2] == "routes.sixth.auth.inject.headers.C D: not a valid HTTP header name"


def test_environment_values_in_templates_are_data_not_placeholders() -> None:
    data = sixth_with(inject={"headers": {"Authorization": "Bearer {token}", "X-K": "${KEY}"}})
    spec = parse(data, {**SIXTH_ENV, "KEY": "a{b}c"}).routes[0].auth
    assert spec is not None
    assert spec.inject.headers["X-K"] == "a{{b}}c"


@pytest.mark.parametrize(
    ("expiry", "expected"),
    [
        ({"from": "jwt_exp"}, ExpirySpec("jwt_exp")),
        ({"from": "header", "key": "expiry"}, ExpirySpec("header", key="expiry")),
        ({"from": "ttl", "seconds": 60}, ExpirySpec("ttl", seconds=60.0)),
        ({"from": "none"}, ExpirySpec("none")),
        (None, ExpirySpec("none")),
    ],
)
def test_expiry_sources(expiry: dict[str, object] | None, expected: ExpirySpec) -> None:
    spec = parse(sixth_with(expiry=expiry), SIXTH_ENV).routes[0].auth
    assert spec is not None
    assert spec.expiry == expected


@pytest.mark.parametrize(
    ("expiry", "message"),
    [
        (
            {"from": "jwt"},
            "from: unknown source 'jwt'; expected one of: jwt_exp, field, header, ttl, none",
        ),
        ({"from": "field"}, "key: required"),
        ({"from": "ttl"}, "seconds: required with from: ttl"),
        ({"from": "jwt_exp", "key": "x"}, "key: only used with from: field or from: header"),
        ({"from": "field", "key": "x", "seconds": 1}, "seconds: only used with from: ttl"),
        ({"key": "x"}, "from: required"),
    ],
)
def test_expiry_problems(expiry: dict[str, object], message: str) -> None:
    assert problems(sixth_with(expiry=expiry), SIXTH_ENV) == [f"routes.sixth.auth.expiry.{message}"]


def test_static_flow_injects_credentials() -> None:
    data = auth({"credentials": {"key": "${KEY}"}, "inject": {"headers": {"X-Key": "{key}"}}})
    spec = parse(data, {"KEY": "static-key-1"}).routes[0].auth
    assert spec is not None
    assert spec.is_static
    assert spec.captures == ()
    assert spec.expiry == ExpirySpec("none")


def test_static_flow_problems() -> None:
    block = {
        "credentials": {"key": "k", "2bad": "x"},
        "token": {"key": "t"},
        "refresh": {"path": "/r"},
        "inject": {"headers": {}},
    }
    assert problems(auth(block)) == [
        "routes.api.auth.credentials.2bad: a credential name is letters, digits and '_',"
        " not starting with a digit",
        "routes.api.auth.token: only used with login",
        "routes.api.auth.refresh: only used with login",
        "routes.api.auth.inject.headers: at least one header is required",
    ]


def test_custom_flow_structure_problems() -> None:
    block = {
        "credentials": {"token": "t"},
        "login": {"method": "P O S T", "path": "login", "format": "xml", "bdy": {}},
        "refresh": {"path": "/r", "requires": "rt"},
        "adopt": {"trigger": "bad header", "headers": {"tokn": "x"}},
        "strip_response_headers": "x-token",
        "logn": {},
    }
    assert problems(auth(block)) == [
        "routes.api.auth.logn: unknown key; did you mean 'login'?",
        "routes.api.auth.login.bdy: unknown key; did you mean 'body'?",
        "routes.api.auth.login.method: not an HTTP method",
        "routes.api.auth.login.path: must start with '/'; it is joined to the upstream URL",
        "routes.api.auth.login.format: unknown format 'xml'; expected one of: json, form",
        "routes.api.auth.token: required with login: where the answer holds the token,"
        " e.g. {key: token}",
        "routes.api.auth.refresh.requires: needs the captured value 'rt', which is never"
        " captured; add it to token.extra",
        "routes.api.auth.inject: required: the headers each request gets,"
        " e.g. {headers: {X-Key: '{key}'}}",
        "routes.api.auth.adopt.trigger: not a valid HTTP header name",
        "routes.api.auth.adopt.headers.tokn: unknown name 'tokn'; did you mean 'token'?",
        "routes.api.auth.strip_response_headers: expected a list, got a string",
    ]


def test_login_method_path_and_format_problems() -> None:
    data = sixth_with(login={"method": "P O S T", "path": "login", "format": "xml"})
    assert problems(data, SIXTH_ENV) == [
        "routes.sixth.auth.login.method: not an HTTP method",
        "routes.sixth.auth.login.path: must start with '/'; it is joined to the upstream URL",
        "routes.sixth.auth.login.format: unknown format 'xml'; expected one of: json, form",
    ]


def test_refresh_needs_a_captured_refresh_token() -> None:
    data = sixth_with(token={"key": "access_token"}, refresh={"path": "/r"})
    assert problems(data, SIXTH_ENV) == [
        "routes.sixth.auth.refresh: needs the captured value 'refresh_token', which is never"
        " captured; set token.refresh_key"
    ]


def test_credential_and_capture_names_must_differ() -> None:
    data = sixth_with(credentials={"client": "c", "user": "u", "secret": "s"})
    assert problems(data) == [
        "routes.sixth.auth.credentials.client: is also the name of a captured value"
    ]


# ---- files -----------------------------------------------------------------------------------


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.yaml")
    assert [str(p) for p in info.value.problems] == [
        "cannot read the file: No such file or directory"
    ]
    assert info.value.source == str(tmp_path / "absent.yaml")


def test_invalid_yaml_gives_line_and_column_but_not_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("routes:\n  api: {upstream: x, password: hunter2-literal\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    (problem,) = info.value.problems
    assert re.fullmatch(r"invalid YAML at line \d+, column \d+: .+", problem.message)
    assert "hunter2-literal" not in str(info.value)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("routes:\n  api: {upstream: https://a.example}\n  api: {upstream: x}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value.problems[0]) == (
        "invalid YAML at line 3, column 3: the key 'api' appears twice in the same mapping"
    )


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="expected a mapping of settings"):
        load_settings(path)


def test_load_settings_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("routes:\n  api: {upstream: 'https://${API_HOST}'}\n")
    monkeypatch.setenv("API_HOST", "from-env.example")
    assert load_settings(path).routes[0].upstream.host == "from-env.example"


def example_environ() -> dict[str, str]:
    names = re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", EXAMPLE.read_text())
    return {name: f"value-of-{name.lower()}" for name in names}


def test_example_config_loads() -> None:
    settings = load_settings(EXAMPLE, environ=example_environ())
    names = [route.name for route in settings.routes]
    assert names == ["cosmic", "coco", "crux", "cucumberstudio", "emnify", "billing", "example"]
    presets = [route.auth.preset for route in settings.routes if route.auth]
    assert presets == ["cosmic", "coco", "crux", "cucumberstudio", "emnify", "oauth2", None]
    assert settings.token_store.kind == "memory"


def test_example_config_names_a_missing_variable() -> None:
    environ = example_environ()
    del environ["EMNIFY_PASSWORD"]
    with pytest.raises(ConfigError) as info:
        load_settings(os.fspath(EXAMPLE), environ=environ)
    assert [str(p) for p in info.value.problems] == [
        "routes.emnify.auth.password: environment variable EMNIFY_PASSWORD is not set"
    ]


# ---- unquoted references in YAML -------------------------------------------------------------
# YAML ends a plain scalar at `{` inside a flow collection; load_settings must read these anyway.

COSMIC_FLOW = """\
routes:
  cosmic:
    upstream: https://api.cosmicjs.com
    auth: {preset: cosmic, email: ${COSMIC_EMAIL}, password: ${COSMIC_PASSWORD}}
"""


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_settings(path, environ=environ or {})


def load_problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, environ)
    return [str(problem) for problem in info.value.problems]


def test_unquoted_references_in_a_flow_mapping(tmp_path: Path) -> None:
    spec = load(tmp_path, COSMIC_FLOW, COSMIC_ENV).routes[0].auth
    assert spec is not None
    email, password = spec.credentials["email"], spec.credentials["password"]
    assert isinstance(email, Secret)
    assert (email.origin, email.reveal()) == ("env:COSMIC_EMAIL", "me@example.com")
    assert (password.origin, password.reveal()) == ("env:COSMIC_PASSWORD", "pw-cosmic-1234")


def test_unset_variable_in_a_flow_mapping_is_named_with_its_path(tmp_path: Path) -> None:
    env = {"COSMIC_EMAIL": "me@example.com"}
    assert load_problems(tmp_path, COSMIC_FLOW, env) == [
        "routes.cosmic.auth.password: environment variable COSMIC_PASSWORD is not set"
    ]


def test_embedded_references_in_flow_and_block_context(tmp_path: Path) -> None:
    text = """\
        routes:
          flow: {upstream: https://${HOST}/api, prefix: /${NAME}-x}
          block:
            upstream: https://${HOST}:${PORT}/v1
            auth: {preset: cosmic, email: a@b.c, password: p, invalid_statuses: [${STATUS}, 403]}
          list: {upstream: 'https://${HOST}', prefix: "/${NAME}"}
        """
    env = {"HOST": "h.example", "PORT": "8443", "NAME": "n", "STATUS": "401"}
    flow, block, quoted = load(tmp_path, text, env).routes
    assert (flow.upstream, flow.prefix) == (URL("https://h.example/api"), "/n-x")
    assert block.upstream == URL("https://h.example:8443/v1")
    assert block.auth is not None
    assert block.auth.invalid_statuses == {401, 403}
    assert (quoted.upstream, quoted.prefix) == (URL("https://h.example"), "/n")


def test_file_reference_in_a_flow_mapping(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("pw-from-file\n")
    text = f"""\
        routes:
          api: {{upstream: https://a.example, auth: {{preset: cosmic, email: a@b.c,
                password: ${{file:{secret}}}}}}}
        """
    spec = load(tmp_path, text).routes[0].auth
    assert spec is not None
    password = spec.credentials["password"]
    assert (password.origin, password.reveal()) == (f"file:{secret}", "pw-from-file")


def test_escaped_reference_stays_literal_in_flow_context(tmp_path: Path) -> None:
    text = "routes: {api: {upstream: https://a.example, prefix: /$${HOST}/x}}\n"
    assert load(tmp_path, text, {"HOST": "h.example"}).routes[0].prefix == "/${HOST}/x"


def test_malformed_references_in_flow_context_are_problems_with_a_path(tmp_path: Path) -> None:
    text = "routes: {api: {upstream: https://${HOST, prefix: /${1BAD}}}\n"
    assert load_problems(tmp_path, text) == [
        "routes.api.upstream: unclosed '${'; write '$${' for a literal '${'",
        "routes.api.prefix: '${1BAD}' is neither ${NAME} nor ${file:/path}",
    ]


def test_reference_in_a_comment_is_ignored(tmp_path: Path) -> None:
    text = """\
        # export ${UNSET_ONE} first {
        routes: {api: {upstream: https://a.example}}  # or ${UNSET_TWO}
        """
    assert load(tmp_path, text).routes[0].upstream == URL("https://a.example")


def test_yaml_error_position_counts_in_the_written_text(tmp_path: Path) -> None:
    text = "routes:\n  api: {upstream: ${HOST}, x: [${A}, y}\n"
    (problem,) = load_problems(tmp_path, text)
    # Line 2, and the column of the stray '}' as the user wrote it, not as the parser saw it.
    assert problem == (
        "invalid YAML at line 2, column 39: a [list] is not closed with ']', or lacks a ','"
    )


def test_duplicate_keys_written_as_references_are_refused(tmp_path: Path) -> None:
    text = "routes:\n  ${A}: {upstream: https://a.example}\n  ${A}: {upstream: x}\n"
    assert load_problems(tmp_path, text) == [
        "invalid YAML at line 3, column 3: the key '${A}' appears twice in the same mapping"
    ]


def test_no_resolved_value_in_problems_from_flow_context(tmp_path: Path) -> None:
    text = """\
        routes:
          api:
            upstream: ${UPSTREAM}
            auth: {preset: cosmic, email: ${COSMIC_EMAIL}, password: ${COSMIC_PASSWORD}, ttl: x}
            timeout: {read: ${READ}}
        """
    env = {**COSMIC_ENV, "UPSTREAM": "not-a-url-sekrit-9911", "READ": "sekrit-read"}
    found = load_problems(tmp_path, text, env)
    assert found == [
        "routes.api.upstream: not an http(s) URL with a host, e.g. https://api.example.com",
        "routes.api.timeout.read: expected a number, got a string",
        "routes.api.auth.ttl: expected a number, got a string",
    ]
    for value in ("sekrit", "pw-cosmic-1234", "me@example.com"):
        assert value not in "\n".join(found)


def test_an_unconstructible_tagged_value_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    config = tmp_path / "tagged.yaml"
    config.write_text("listen: !!int abc\nroutes: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert "explicit YAML tag" in str(caught.value)


# ---- limits, allowed hosts, CORS, plaintext stores ------------------------------------------


def test_hardening_limits_have_defaults_and_can_be_set() -> None:
    defaults = parse(route({}))
    assert (defaults.body_timeout, defaults.max_connections) == (30.0, 1024)
    assert defaults.replay_buffer_total == 64 * 1024 * 1024
    assert defaults.websocket_message == 4 * 1024 * 1024
    limits = {
        "body_timeout": 2,
        "max_connections": 8,
        "replay_buffer_total": 0,
        "websocket_message": 1000,
    }
    settings = parse({**route({}), "limits": limits})
    assert (settings.body_timeout, settings.max_connections) == (2.0, 8)
    assert (settings.replay_buffer_total, settings.websocket_message) == (0, 1000)
    bad = {"max_connections": 0, "replay_buffer_total": -1, "websocket_message": 1.5}
    assert problems({**route({}), "limits": bad}) == [
        "limits.max_connections: must be at least 1",
        "limits.replay_buffer_total: must be at least 0",
        "limits.websocket_message: expected a whole number",
    ]


def test_allowed_hosts_take_names_addresses_and_ports() -> None:
    hosts = ["Proxy.Local", "proxy.local:8080", "[::1]:9000", "10.0.0.5"]
    assert parse({**route({}), "allowed_hosts": hosts}).allowed_hosts == (
        "proxy.local",
        "proxy.local:8080",
        "[::1]:9000",
        "10.0.0.5",
    )
    assert problems({**route({}), "allowed_hosts": ["a b", "x:99999", 7]}) == [
        "allowed_hosts[0]: expected a host name or address, optionally with :PORT",
        "allowed_hosts[1]: expected a host name or address, optionally with :PORT",
        "allowed_hosts[2]: expected a string, got a number (quote it)",
    ]


def test_cors_lists_exact_origins_and_never_a_wildcard() -> None:
    cors = {"origins": ["http://LOCALHOST:3000"], "methods": ["get"], "headers": ["X-Trace"]}
    settings = parse(route({"cors": cors}))
    parsed = settings.routes[0].cors
    assert parsed is not None
    assert parsed.origins == ("http://localhost:3000",)
    assert (parsed.methods, parsed.headers, parsed.max_age) == (("GET",), ("x-trace",), 600)
    bad = {"origins": ["*", "http://a.example/path", "ftp://b.example"], "max_age": -1}
    found = problems(route({"cors": bad}))
    assert found[0].startswith("routes.api.cors.origins[0]: '*' would let every web page act")
    assert found[1:] == [
        "routes.api.cors.origins[1]: expected an origin: scheme://host[:port], "
        "e.g. http://localhost:3000",
        "routes.api.cors.origins[2]: expected an origin: scheme://host[:port], "
        "e.g. http://localhost:3000",
        "routes.api.cors.max_age: must be at least 0",
    ]
    assert problems(route({"cors": {"methods": ["GET"]}})) == [
        "routes.api.cors.origins: required: a list"
    ]


def test_gateway_on_a_plaintext_redis_store_is_refused_unless_allowed() -> None:
    gateway = {
        **route({}),
        "token_store": "redis://127.0.0.1:6379/0",
        "clients": {"ci": {"key": "k" * 20}},
    }
    assert problems(gateway)[0].startswith("token_store: a Redis token store without")
    assert parse({**gateway, "allow_plaintext_store": True}).allow_plaintext_store
    assert parse({**route({}), "token_store": "redis://127.0.0.1:6379/0"}).clients == ()


def test_auth_timeout_bounds_a_login() -> None:
    settings = parse(route({"auth": {**COSMIC, "timeout": 7}}), COSMIC_ENV)
    auth = settings.routes[0].auth
    assert auth is not None
    assert auth.timeout == 7.0
    assert problems(route({"auth": {**COSMIC, "timeout": 0}}), COSMIC_ENV) == [
        "routes.api.auth.timeout: must be greater than 0"
    ]


def test_upstream_busy_polling_is_off_unless_set() -> None:
    assert parse(route({})).busy_poll_us == 0
    assert parse({**route({}), "upstream": {"busy_poll_us": 100}}).busy_poll_us == 100
    assert problems({**route({}), "upstream": {"busy_poll_us": 20_000}}) == [
        "upstream.busy_poll_us: must be from 0 to 10000"
    ]

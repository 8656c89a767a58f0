"""`authproxy schema`: the config's JSON Schema, and its agreement with `authproxy check`.

Broken configs are made from one valid document that holds every block: each mapping gets an
unknown key, each value a value of the wrong type, each required key is taken away. The schema
(through `jsonschema`) and the loader must both refuse every one, the loader at that key path.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from proc import run_cli

from authproxy.auth.presets import PRESETS
from authproxy.config.load import TOP_KEYS, parse_settings
from authproxy.config.schema import config_schema
from authproxy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "config.schema.json"
KEY = "5LcWWyCbZl0Gk3xjvNuuaPLjUBeRq7Bx7oVYh0EuB3E="
VALIDATOR = jsonschema.Draft202012Validator(config_schema())


def full_document(ca_file: Path) -> dict[str, Any]:
    """A valid config with every block and nearly every key set."""
    custom = {
        "credentials": {"user": "u-1", "secret": "s-1"},
        "login": {
            "method": "POST",
            "path": "/login",
            "format": "json",
            "body": {"user": "{user}", "pass": "{secret|sha1}"},
            "headers": {"X-Client": "authproxy"},
        },
        "token": {
            "from": "body",
            "key": ["access_token", "token"],
            "refresh_key": "refresh_token",
            "extra": {"client": "client_id"},
        },
        "expiry": {"from": "ttl", "seconds": 600},
        "refresh": {
            "path": "/refresh",
            "body": {"refresh_token": "{refresh_token}"},
            "requires": "refresh_token",
        },
        "inject": {
            "headers": {"Authorization": "Bearer {token}"},
            "defaults": {"Accept": "application/json"},
        },
        "adopt": {"trigger": "x-new-token", "headers": {"token": "x-new-token"}},
        "strip_response_headers": ["x-new-token"],
        "warm": False,
        "renew_at": 0.8,
        "relogin_after_rejection": 300,
        "invalid_statuses": [401],
        "timeout": 30,
    }
    return {
        "listen": "127.0.0.1:8080",
        "token_store": "memory",
        "token_store_key": KEY,
        "shutdown_grace": 10,
        "limits": {
            "header_timeout": 10,
            "keepalive_timeout": 75,
            "max_header_size": 8190,
            "body_timeout": 30,
            "max_connections": 1024,
            "replay_buffer_total": 1024,
            "websocket_message": 4096,
        },
        "upstream": {"busy_poll_us": 0},
        "allowed_hosts": ["authproxy"],
        "allow_unauthenticated": False,
        "allow_plaintext_store": False,
        "routes": {
            "custom": {
                "upstream": "https://api.example.com/v1",
                "prefix": "/custom",
                "timeout": {"connect": 5, "read": 60},
                "tls": {"verify": True, "ca_file": str(ca_file)},
                "forwarded_headers": True,
                "cors": {
                    "origins": ["http://localhost:3000"],
                    "methods": ["GET"],
                    "headers": ["Content-Type"],
                    "max_age": 600,
                },
                "auth": custom,
            },
            "emnify": {
                "upstream": "https://cdn.emnify.net",
                "auth": {
                    "preset": "emnify",
                    "username": "me",
                    "password": "pw-1",
                    "password_hash": "sha1",
                    "ttl": 600,
                },
            },
        },
        "clients": {
            "alice": {
                "key": "alice-key-0123456789abcdef",
                "routes": ["custom"],
                "rate_limit": {"rate": 5, "burst": 10},
                "admin": True,
            },
            "bob": {"key_sha256": "ab" * 32},
        },
    }


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not read at load time\n")
    return full_document(ca_file)


def loader_problems(document: object) -> list[str] | None:
    """The paths `authproxy check` reports for `document`, or None when it is valid."""
    try:
        parse_settings(document, source="test.yaml", environ={})
    except ConfigError as error:
        return [problem.path for problem in error.problems]
    return None


# Required keys by where they sit: the mutations take each away.
REQUIRED = {
    "": ["routes"],
    "routes.custom": ["upstream"],
    "routes.custom.cors": ["origins"],
    "routes.custom.auth": ["inject"],
    "routes.custom.auth.login": ["path"],
    "routes.custom.auth.refresh": ["path"],
    "routes.custom.auth.token": ["key"],
    "routes.custom.auth.expiry": ["from"],
    "routes.custom.auth.inject": ["headers"],
    "routes.custom.auth.adopt": ["trigger", "headers"],
    "clients.alice.rate_limit": ["rate"],
}


def wrong_value(value: object) -> object:
    """A value of another type than `value`, one no reader of its key accepts."""
    if isinstance(value, dict):
        return "a string"
    if isinstance(value, str):
        return [1, 2]
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, int | float):
        return "many"
    return {"a": 1}


def mutations(node: object, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(what, key path, how to apply it) for every broken variant of `node`."""
    if isinstance(node, dict):
        yield "unknown key", _join(path, "zz_unknown"), ("add", "zz_unknown", 1)
        for key in REQUIRED.get(path, ()):
            yield "missing required key", _join(path, key), ("remove", key)
        for key, value in node.items():
            child = _join(path, key)
            yield "wrong type", child, ("replace", key, wrong_value(value))
            for what, where, change in mutations(value, child):
                yield what, where, (key, change)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            child = f"{path}[{index}]"
            yield "wrong type", child, ("replace", index, wrong_value(value))
            for what, where, change in mutations(value, child):
                yield what, where, (index, change)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def applied(document: Any, change: tuple[Any, ...]) -> Any:
    broken = copy.deepcopy(document)
    target = broken
    while not isinstance(change[0], str) or change[0] not in ("add", "remove", "replace"):
        target, change = target[change[0]], change[1]
    match change:
        case ("add", key, value) | ("replace", key, value):
            target[key] = value
        case ("remove", key):
            del target[key]
    return broken


def test_the_full_document_is_valid_for_both(document: dict[str, Any]) -> None:
    assert list(VALIDATOR.iter_errors(document)) == []
    assert loader_problems(document) is None


def test_schema_and_check_refuse_the_same_structural_errors(document: dict[str, Any]) -> None:
    cases = list(mutations(document))
    assert len(cases) > 140
    disagreements = []
    for what, path, change in cases:
        broken = applied(document, change)
        schema_refuses = not VALIDATOR.is_valid(broken)
        paths = loader_problems(broken)
        at_path = paths is not None and any(
            found == path or found.startswith((f"{path}.", f"{path}[")) for found in paths
        )
        if not (schema_refuses and at_path):
            disagreements.append((what, path, schema_refuses, paths))
    assert disagreements == []


# One valid block per way of configuring each preset (`Preset.requires`).
PRESET_BLOCKS: list[dict[str, Any]] = [
    {"preset": "cosmic", "email": "a@example.com", "password": "pw-1"},
    {"preset": "coco", "email": "a@example.com", "password": "pw-1"},
    {"preset": "coco", "password": "pw-1"},
    {"preset": "coco", "api_token": "t-1234"},
    {"preset": "crux", "username": "a", "password": "pw-1"},
    {"preset": "cucumberstudio", "email": "a@example.com", "password": "pw-1"},
    {"preset": "cucumberstudio", "access_token": "t-1234", "client": "c-1", "uid": "u-1"},
    {"preset": "emnify", "username": "a", "password": "pw-1"},
    {"preset": "emnify", "application_token": "t-1234"},
    {
        "preset": "oauth2",
        "token_url": "https://login.example.com/token",
        "client_id": "c-1",
        "client_secret": "s-1234",
    },
]


def with_auth(block: dict[str, Any]) -> dict[str, Any]:
    return {"routes": {"r": {"upstream": "https://api.example.com", "auth": block}}}


def test_every_way_of_every_preset_is_covered() -> None:
    covered = {
        (block["preset"], way)
        for block in PRESET_BLOCKS
        for way in PRESETS[block["preset"]].requires
        if set(way) <= set(block)
    }
    declared = {(name, way) for name, preset in PRESETS.items() for way in preset.requires}
    assert covered == declared
    assert all(preset.requires for preset in PRESETS.values())


@pytest.mark.parametrize("block", PRESET_BLOCKS, ids=lambda block: "+".join(sorted(block)))
def test_a_field_a_preset_requires_is_required_by_both(block: dict[str, Any]) -> None:
    """The schema's required fields are `Preset.requires`; `build` must refuse without each."""
    assert VALIDATOR.is_valid(with_auth(block))
    assert loader_problems(with_auth(block)) is None
    used = [way for way in PRESETS[block["preset"]].requires if set(way) <= set(block)]
    for field in {field for way in used for field in way}:
        broken = {key: value for key, value in block.items() if key != field}
        assert not VALIDATOR.is_valid(with_auth(broken)), field
        problems = loader_problems(with_auth(broken))
        assert problems is not None, field
        assert all(path.startswith("routes.r.auth") for path in problems), problems


def test_every_key_the_loader_reads_is_in_the_schema() -> None:
    schema = config_schema()
    assert list(schema["properties"]) == list(TOP_KEYS)
    variants = {
        variant["properties"]["preset"]["const"]: set(variant["properties"])
        for variant in schema["$defs"]["auth"]["oneOf"]
        if "preset" in variant.get("required", ())
    }
    assert set(variants) == set(PRESETS)
    for name, preset in PRESETS.items():
        assert set(preset.fields) < variants[name]


def test_the_committed_schema_is_what_the_command_prints() -> None:
    """docs/config.schema.json is what editors read: regenerate it with `authproxy schema`."""
    committed = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(committed)
    assert committed == config_schema(), "run: authproxy schema > docs/config.schema.json"


async def test_the_schema_command_prints_it_and_the_example_points_at_it() -> None:
    code, out, err = await run_cli("schema")
    assert code == 0, err
    assert json.loads(out) == json.loads(SCHEMA_FILE.read_text())
    example = ROOT / "config.example.yaml"
    first = example.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    pointed = (example.parent / first.split("$schema=", 1)[1]).resolve()
    assert pointed == SCHEMA_FILE
    assert list(VALIDATOR.iter_errors(yaml.safe_load(example.read_text()))) == []


BROKEN = {
    "unknown top-level key": ("routez: {}\n", "routez"),
    "number with a unit": (
        "limits: {header_timeout: 5s}\nroutes: {a: {upstream: http://a}}\n",
        "limits.header_timeout",
    ),
    "route without upstream": ("routes: {a: {prefix: /a}}\n", "routes.a.upstream"),
    "auth field at route level": (
        "routes: {a: {upstream: http://a, username: u}}\n",
        "routes.a.username",
    ),
    "unknown preset field": (
        "routes: {a: {upstream: http://a, auth: {preset: crux, usrname: u, password: p}}}\n",
        "routes.a.auth.usrname",
    ),
    "boolean as a word": (
        "routes: {a: {upstream: http://a, forwarded_headers: yes please}}\n",
        "routes.a.forwarded_headers",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
async def test_broken_files_are_refused_by_the_schema_and_by_check(
    name: str, tmp_path: Path
) -> None:
    text, path = BROKEN[name]
    assert not VALIDATOR.is_valid(yaml.safe_load(text))
    config = tmp_path / "config.yaml"
    config.write_text("token_store: memory\n" + text)
    code, out, err = await run_cli("check", "--config", str(config))
    assert code == 2, out
    assert f"  - {path}: " in err

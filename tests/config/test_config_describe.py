"""config/describe: the expanded view `authproxy check --expand` prints; credentials never in it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from authproxy.config.describe import describe_settings
from authproxy.config.load import load_settings, parse_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def example_environ() -> dict[str, str]:
    names = re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", EXAMPLE.read_text())
    return {name: f"secret-value-of-{name.lower()}" for name in names}


def describe_example() -> dict[str, Any]:
    described = describe_settings(load_settings(EXAMPLE, environ=example_environ()))
    # Round-trip through JSON: proves the view is JSON-able and gives plain dicts to index.
    result: dict[str, Any] = json.loads(json.dumps(described))
    return result


def test_credentials_are_masked_with_their_origin() -> None:
    cosmic = describe_example()["routes"]["cosmic"]["auth"]
    assert cosmic["credentials"] == {
        "email": {"value": "<redacted>", "origin": "env:COSMIC_EMAIL"},
        "password": {"value": "<redacted>", "origin": "env:COSMIC_PASSWORD"},
    }


def test_no_credential_value_anywhere_in_the_output() -> None:
    text = json.dumps(describe_example())
    for value in example_environ().values():
        assert value not in text


def test_top_level_and_route_settings() -> None:
    described = describe_example()
    assert described["listen"] == "127.0.0.1:8080"
    assert described["token_store"] == {"kind": "memory", "path": None, "explicit": True}
    assert described["limits"] == {
        "header_timeout": 10.0,
        "keepalive_timeout": 75.0,
        "max_header_size": 8190,
        "body_timeout": 30.0,
        "max_connections": 1024,
        "replay_buffer_total": 64 * 1024 * 1024,
        "websocket_message": 4 * 1024 * 1024,
    }
    assert described["allowed_hosts"] == []
    coco = described["routes"]["coco"]
    assert coco["upstream"] == "http://localhost:9000"
    assert coco["prefix"] == "/coco"
    assert coco["timeout"] == {"connect": 5.0, "read": 60.0}
    assert coco["tls"] == {"verify": True, "ca_file": None}
    assert coco["forwarded_headers"] is True
    assert coco["cors"] is None


def test_preset_is_expanded_to_its_flow() -> None:
    emnify = describe_example()["routes"]["emnify"]["auth"]
    assert emnify["preset"] == "emnify"
    assert emnify["flow"] == "login"
    assert emnify["login"] == {
        "method": "POST",
        "path": "/api/v1/authenticate",
        "encoding": "json",
        "body": {"username": "{username}", "password": "{password|sha1}"},
        "headers": {},
    }
    assert emnify["captures"][0] == {
        "name": "token",
        "from": "body",
        "keys": ["auth_token"],
        "required": True,
    }
    assert emnify["expiry"] == {"from": "jwt_exp"}
    assert emnify["refresh"]["requires"] == "refresh_token"
    assert emnify["inject"] == {"headers": {"Authorization": "Bearer {token}"}, "defaults": {}}
    assert emnify["invalid_statuses"] == [401]
    assert (emnify["renew_at"], emnify["relogin_after_rejection"], emnify["warm"]) == (
        0.8,
        300.0,
        False,
    )


def test_custom_flow_shows_every_part() -> None:
    example = describe_example()["routes"]["example"]["auth"]
    assert example["preset"] is None
    assert example["login"]["headers"] == {"X-Client": "authproxy"}
    assert [capture["name"] for capture in example["captures"]] == [
        "token",
        "refresh_token",
        "client",
    ]
    assert example["adopt"] == {"trigger": "x-new-token", "headers": {"token": "x-new-token"}}
    assert example["strip_response_headers"] == ["x-new-token"]
    assert example["refresh"]["path"] == "/oauth/refresh"


def test_static_flow_and_ttl_expiry() -> None:
    data = {
        "routes": {
            "api": {
                "upstream": "https://api.example.com",
                "auth": {
                    "credentials": {"key": "${API_KEY}"},
                    "inject": {"headers": {"X-Key": "{key}"}},
                    "ttl": 60,
                },
            }
        }
    }
    settings = parse_settings(data, source="t.yaml", environ={"API_KEY": "static-key-7788"})
    api = json.loads(json.dumps(describe_settings(settings)))["routes"]["api"]
    assert api["auth"]["flow"] == "static"
    assert api["auth"]["login"] is None
    assert api["auth"]["expiry"] == {"from": "ttl", "seconds": 60.0}
    assert api["auth"]["credentials"]["key"] == {"value": "<redacted>", "origin": "env:API_KEY"}


def test_a_secret_written_into_a_template_is_masked() -> None:
    data = {
        "routes": {
            "api": {
                "upstream": "https://api.example.com",
                "auth": {"inject": {"headers": {"Authorization": "Bearer ${RAW_TOKEN}"}}},
            }
        }
    }
    settings = parse_settings(data, source="t.yaml", environ={"RAW_TOKEN": "raw-token-6655"})
    described = describe_settings(settings)
    assert "raw-token-6655" not in json.dumps(described)
    assert "Bearer <redacted>" in json.dumps(described)

"""A secret in an upstream URL (`${TOKEN}` in a bot API's path) is masked by every output.

A real `authproxy serve` forwards to a fake upstream in this process. The token must reach the
upstream in the path, and appear nowhere else: not in the process output (start-up line and access
log), `/-/status` as JSON or HTML, `check --expand`, or `authproxy status` (running and stored).
Ports and hosts read through `${...}` stay visible, or the start-up URL could not be used.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aiohttp
from fakes import FakeUpstream
from proc import run_cli, start_proxy

from authproxy.config.load import parse_settings
from authproxy.secrets import MASK, REGISTRY

BOT_TOKEN = "123456789:AAH-bot-token-6c1f0e9d"
CONFIG = """\
listen: 127.0.0.1:${PROXY_PORT}
token_store: ${STATE}/tokens.json
routes:
  telegram:
    upstream: http://127.0.0.1:${UPSTREAM_PORT}/bot${BOT_TOKEN}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_token_in_the_upstream_path_is_used_and_never_shown(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    async with FakeUpstream() as upstream:
        port = free_port()
        env = {
            "PROXY_PORT": str(port),
            "UPSTREAM_PORT": str(upstream.url.port),
            "STATE": str(tmp_path),
            "BOT_TOKEN": BOT_TOKEN,
        }
        proxy = await start_proxy("serve", "--config", str(config), env=env)
        try:
            assert proxy.url == f"http://127.0.0.1:{port}"  # ports from `${...}` stay readable
            async with aiohttp.ClientSession() as client:
                async with client.get(f"{proxy.url}/telegram/getMe") as answer:
                    assert answer.status == 200
                async with client.get(f"{proxy.url}/-/status") as answer:
                    status_json = await answer.text()
                html = {"Accept": "text/html"}
                async with client.get(f"{proxy.url}/-/status", headers=html) as answer:
                    status_html = await answer.text()
            code, running, err = await run_cli("status", "--config", str(config), "--json", env=env)
            assert code == 0, err
        finally:
            assert await proxy.stop() == 0
        code, stored, err = await run_cli("status", "--config", str(config), "--json", env=env)
        assert code == 0, err
        code, expanded, err = await run_cli("check", "--config", str(config), "--expand", env=env)
        assert code == 0, err

    assert [seen.raw_path for seen in upstream.requests] == [f"/bot{BOT_TOKEN}/getMe"]
    shown = f"http://127.0.0.1:{upstream.url.port}/bot{MASK}"
    assert json.loads(status_json)["routes"]["telegram"]["upstream"] == shown
    assert json.loads(running)["routes"]["telegram"]["upstream"] == shown
    assert json.loads(stored)["routes"]["telegram"]["upstream"] == shown
    assert json.loads(expanded)["routes"]["telegram"]["upstream"] == shown
    assert "token store" in json.loads(stored)["source"]
    started = next(json.loads(line) for line in proxy.output if "authproxy listening" in line)
    assert started["routes"][0]["upstream"] == shown
    for output in (proxy.text, status_json, status_html, running, stored, expanded):
        assert BOT_TOKEN not in output
        assert "AAH-bot-token" not in output


def test_each_substitution_is_a_secret_unless_its_key_only_names_or_locates() -> None:
    """What `${...}` brings in is masked everywhere, except where masking would break the output
    (a port, a path, a field name), so those keys are read as plain values."""
    plain = {
        "PORT": "48213",
        "STATE": "/srv/state-dir-5e1d",
        "UPSTREAM_HOST": "api-host-8f2a.example",
        "UPSTREAM_PORT": "48214",
        "PREFIX": "/prefix-7b3c",
        "FIELD": "token-field-2d4e",
        "HEADER": "X-Header-Name-9a1b",
        "ORIGIN": "http://origin-6c0f.example",
        "RATE": "1234.5",
    }
    secret = {
        "PATH_KEY": "path-key-3f9e1a",
        "LOGIN_KEY": "login-path-key-0b8c",
        "TEMPLATE_VALUE": "template-value-4e7d",
        "PASSWORD": "password-value-a1c3",
    }
    document = {
        "listen": "127.0.0.1:${PORT}",
        "token_store": "${STATE}/tokens.json",
        "routes": {
            "api": {
                "upstream": "https://${UPSTREAM_HOST}:${UPSTREAM_PORT}/v1/${PATH_KEY}",
                "prefix": "${PREFIX}",
                "cors": {"origins": ["${ORIGIN}"], "headers": ["${HEADER}"]},
                "auth": {
                    "credentials": {"password": "${PASSWORD}"},
                    "login": {"path": "/login/${LOGIN_KEY}", "body": {"p": "{password}"}},
                    "token": {"key": "${FIELD}"},
                    "inject": {"headers": {"X-Key": "Key {token} ${TEMPLATE_VALUE}"}},
                },
            }
        },
        "clients": {
            "team": {"key": "client-key-0123456789abcdef", "rate_limit": {"rate": "${RATE}"}}
        },
    }
    settings = parse_settings(document, source="test", environ={**plain, **secret})
    assert settings.listen.port == 48213
    assert str(settings.routes[0].upstream).endswith(f"/v1/{secret['PATH_KEY']}")
    assert [value for value in plain.values() if value in REGISTRY] == []
    assert [value for value in secret.values() if value not in REGISTRY] == []

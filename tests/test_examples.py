"""The files under examples/ are what the README points people at: they must stay valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from authproxy.cli.main import build_parser
from authproxy.config.load import load_settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {
    "AUTHPROXY_TOKEN_KEY": "5LcWWyCbZl0Gk3xjvNuuaPLjUBeRq7Bx7oVYh0EuB3E=",
    "EMNIFY_USERNAME": "ops@example.com",
    "EMNIFY_PASSWORD": "emnify-password-123",
    "ALICE_KEY": "alice-key-0123456789abcdef",
    "BOB_KEY": "bob-key-0123456789abcdef01",
}


def test_compose_runs_two_replicas_and_redis_behind_one_port() -> None:
    compose: dict[str, Any] = yaml.safe_load((EXAMPLES / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "authproxy", "gateway"}
    assert services["authproxy"]["deploy"]["replicas"] == 2
    assert services["gateway"]["ports"] == ["127.0.0.1:8080:8080"]
    assert "server authproxy:8080" in (EXAMPLES / "compose" / "nginx.conf").read_text()


def test_the_gateway_config_is_valid_and_shares_tokens_through_redis() -> None:
    settings = load_settings(EXAMPLES / "compose" / "gateway.yaml", environ=ENV)
    assert settings.token_store.kind == "redis"
    assert settings.token_store.key is not None
    assert [client.name for client in settings.clients] == ["alice", "bob"]
    assert settings.listen.host == "0.0.0.0"


def test_the_rotation_step_the_compose_file_describes_is_a_valid_config(tmp_path: Path) -> None:
    text = (EXAMPLES / "compose" / "gateway.yaml").read_text()
    rotating = text.replace(
        'token_store_key: ["${AUTHPROXY_TOKEN_KEY}"]',
        'token_store_key: ["${AUTHPROXY_TOKEN_KEY}", "${AUTHPROXY_OLD_TOKEN_KEY}"]',
    )
    assert rotating != text
    assert (
        'token_store_key: ["${AUTHPROXY_TOKEN_KEY}", "${AUTHPROXY_OLD_TOKEN_KEY}"]'
        in (EXAMPLES / "compose" / "compose.yaml").read_text()
    )
    (tmp_path / "rotating.yaml").write_text(rotating)
    old = "Xr8s5mJ9mW1jB3j1eV0o6bJt2Wq3b8rTqKcQ3b7nE0E="
    settings = load_settings(
        tmp_path / "rotating.yaml", environ={**ENV, "AUTHPROXY_OLD_TOKEN_KEY": old}
    )
    assert [key.reveal() for key in settings.token_store.keys] == [ENV["AUTHPROXY_TOKEN_KEY"], old]


def test_the_kubernetes_sidecar_config_and_arguments_are_valid(tmp_path: Path) -> None:
    documents = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "sidecar.yaml").read_text()))
    kinds = {document["kind"]: document for document in documents}
    assert set(kinds) == {"Secret", "ConfigMap", "Pod"}
    # The secret files the pod mounts, made here, so the embedded config can be loaded as is.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in kinds["Secret"]["stringData"].items():
        (secrets / name).write_text(value + "\n")
    text = kinds["ConfigMap"]["data"]["config.yaml"]
    config = tmp_path / "config.yaml"
    config.write_text(
        text.replace("/run/secrets/emnify", str(secrets)).replace(
            "/var/lib/authproxy", str(tmp_path)
        )
    )
    settings = load_settings(config, environ={})
    route = settings.route("emnify")
    assert route.auth is not None
    assert route.auth.credentials["password"].reveal() == "change-me"
    sidecar = next(c for c in kinds["Pod"]["spec"]["containers"] if c["name"] == "authproxy")
    args = build_parser().parse_args(sidecar["args"])
    assert (args.command, args.listen) == ("serve", "127.0.0.1:8080")

"""The `authproxy` command as a user runs it: real subprocesses, real sockets, real signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from fakes import raw_connection, read_response
from proc import run_cli, start_proxy
from yarl import URL

from authproxy import __version__

ROOT = Path(__file__).resolve().parents[2]

# Unique literals: if any of them shows up in output, a secret leaked.
EXAMPLE_ENV = {
    "COSMIC_EMAIL": "cosmic-user@example.com",
    "COSMIC_PASSWORD": "cosmic-pw-7c1e2b9d",
    "COCO_EMAIL": "coco-user@example.com",
    "COCO_PASSWORD": "coco-pw-4f8a6d21",
    "COCO_API_TOKEN": "coco-apitoken-9b3c5e77",
    "CRUX_USERNAME": "crux-user-e5a1",
    "CRUX_PASSWORD": "crux-pw-0d9f3a64",
    "CUCUMBERSTUDIO_EMAIL": "cs-user@example.com",
    "CUCUMBERSTUDIO_PASSWORD": "cs-pw-61b7c0e8",
    "EMNIFY_USERNAME": "emnify-user@example.com",
    "EMNIFY_PASSWORD": "emnify-pw-2a4c6e8f",
    "EMNIFY_APPLICATION_TOKEN": "emnify-apptoken-13579bdf",
    "BILLING_CLIENT_ID": "billing-client-3d5f",
    "BILLING_CLIENT_SECRET": "billing-secret-8e0a2c4b",
    "EXAMPLE_USER": "example-user-55aa",
    "EXAMPLE_SECRET": "example-secret-77cc99ee",
}
SECRET_VALUES = [
    v for k, v in EXAMPLE_ENV.items() if "PASSWORD" in k or "TOKEN" in k or "SECRET" in k
]


def assert_no_secrets(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text


async def test_version() -> None:
    code, out, _ = await run_cli("--version")
    assert code == 0
    assert out.strip() == f"authproxy {__version__}"


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["check"], ["status"], ["demo"], ["login"], ["token"], ["schema"]],
)
async def test_help_on_every_command_shows_no_secret(command: list[str]) -> None:
    code, out, _ = await run_cli(*command, "--help", env=EXAMPLE_ENV)
    assert code == 0
    assert "usage: authproxy" in out
    assert_no_secrets(out)


@pytest.mark.parametrize("command", ["schema", "keygen"])
async def test_a_reader_that_stops_early_is_not_an_error(command: str) -> None:
    """`authproxy schema | head`: the closed pipe ends the command quietly, with no message."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write meets EPIPE
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "authproxy",
            command,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert "error" not in err.decode()


async def test_check_accepts_the_example_config() -> None:
    code, out, err = await run_cli(
        "check", "--config", str(ROOT / "config.example.yaml"), env=EXAMPLE_ENV
    )
    assert code == 0, err
    assert "OK" in out
    assert_no_secrets(out + err)


async def test_check_expand_masks_every_secret() -> None:
    code, out, err = await run_cli(
        "check", "--expand", "--config", str(ROOT / "config.example.yaml"), env=EXAMPLE_ENV
    )
    assert code == 0, err
    document = json.loads(out)
    assert "emnify" in json.dumps(document)
    assert "<redacted>" in out
    assert_no_secrets(out + err)


async def test_check_lists_every_problem_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "routes:\n"
        "  cosmic:\n"
        "    upstream: ftp://api.cosmicjs.com\n"
        "    auth: {preset: cosmic, email: a@b.c, pasword: x}\n"
        "  emnify:\n"
        "    upstream: https://cdn.emnify.net\n"
        "    auth: {preset: emnify, username: u, password: ${AUTHPROXY_TEST_UNSET_VAR}}\n"
    )
    code, out, err = await run_cli("check", "--config", str(config))
    assert code == 2
    assert out == ""
    assert "routes.cosmic.upstream" in err
    assert "did you mean 'password'" in err
    assert "AUTHPROXY_TEST_UNSET_VAR" in err
    assert "Traceback" not in err


async def test_check_names_a_missing_environment_variable() -> None:
    env = {k: v for k, v in EXAMPLE_ENV.items() if k != "EMNIFY_PASSWORD"}
    code, _, err = await run_cli("check", "--config", str(ROOT / "config.example.yaml"), env=env)
    assert code == 2
    assert "routes.emnify.auth.password" in err
    assert "EMNIFY_PASSWORD" in err
    assert_no_secrets(err)


async def test_unreadable_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = await run_cli("serve", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("authproxy: ")


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, asyncio.Event, asyncio.Event]]:
    """A plain upstream; `/slow` answers only after the test sets `release`."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="finished")

    async def fast(request: web.Request) -> web.Response:
        return web.json_response({"path": request.raw_path})

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/{tail:.*}", fast)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", arrived, release
    await runner.cleanup()


async def fetch(client: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with client.get(url) as answer:
        return answer.status, await answer.text()


def write_config(tmp_path: Path, upstream_url: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"token_store: memory\nroutes:\n  api:\n    upstream: {upstream_url}\n")
    return config


async def test_serve_forwards_and_stops_gracefully_on_sigterm(
    tmp_path: Path, upstream: tuple[str, asyncio.Event, asyncio.Event]
) -> None:
    url, arrived, release = upstream
    proxy = await start_proxy(
        "serve", "--config", str(write_config(tmp_path, url)), "--listen", "127.0.0.1:0"
    )
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{proxy.url}/-/health") as health:
            assert health.status == 200
            assert await health.json() == {"status": "ok"}
        async with client.get(f"{proxy.url}/api/x%2Fy?q=1") as answer:
            assert (await answer.json())["path"] == "/x%2Fy?q=1"

        in_flight = asyncio.get_running_loop().create_task(fetch(client, f"{proxy.url}/api/slow"))
        await asyncio.wait_for(arrived.wait(), 10)
        proxy.process.send_signal(signal.SIGTERM)
        release.set()
        assert await asyncio.wait_for(in_flight, 10) == (200, "finished")
    assert await proxy.wait() == 0
    assert "shutting down" in proxy.text


async def test_startup_logs_url_and_routes(
    tmp_path: Path, upstream: tuple[str, asyncio.Event, asyncio.Event]
) -> None:
    url, _, _ = upstream
    proxy = await start_proxy(
        "serve", "--config", str(write_config(tmp_path, url)), "--listen", "127.0.0.1:0"
    )
    try:
        started = next(json.loads(line) for line in proxy.output if "authproxy listening" in line)
        assert started["url"].startswith("http://127.0.0.1:")
        assert started["routes"] == [{"name": "api", "prefix": "/api", "upstream": url}]
    finally:
        assert await proxy.stop(signal.SIGINT) == 0


async def test_port_in_use_is_one_line_and_exit_1(
    tmp_path: Path, upstream: tuple[str, asyncio.Event, asyncio.Event]
) -> None:
    url, _, _ = upstream
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = await run_cli(
            "serve", "--config", str(write_config(tmp_path, url)), "--listen", f"127.0.0.1:{port}"
        )
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in err
    assert "Traceback" not in err


async def test_invalid_listen_flag_is_a_config_error(
    tmp_path: Path, upstream: tuple[str, asyncio.Event, asyncio.Event]
) -> None:
    url, _, _ = upstream
    code, _, err = await run_cli(
        "serve", "--config", str(write_config(tmp_path, url)), "--listen", "nowhere"
    )
    assert code == 2
    assert "--listen" in err


async def test_demo_serves_all_five_apis_without_credentials() -> None:
    proxy = await start_proxy("demo", "--listen", "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as client:
            for name in ("cosmic", "coco", "crux", "cucumberstudio", "emnify"):
                async with client.get(f"{proxy.url}/{name}/some/path?x=1") as answer:
                    assert answer.status == 200, name
                    echo = await answer.json()
                    assert echo["api"] == name
                    assert echo["auth"] == "ok"
            async with client.get(f"{proxy.url}/-/status") as status:
                routes = (await status.json())["routes"]
                assert {r["token"]["state"] for r in routes.values()} == {"valid"}
    finally:
        assert await proxy.stop(signal.SIGINT) == 0
    for name in ("cosmic", "coco", "crux", "cucumberstudio", "emnify"):
        assert f"curl {proxy.url}/{name}/" in proxy.text


async def test_status_command_reads_the_running_proxy(tmp_path: Path) -> None:
    proxy = await start_proxy("demo", "--listen", "127.0.0.1:0")
    try:
        port = proxy.url.rsplit(":", 1)[1]
        config = tmp_path / "config.yaml"
        config.write_text(
            f"listen: 127.0.0.1:{port}\ntoken_store: memory\n"
            "routes:\n  emnify:\n    upstream: http://127.0.0.1:1\n"
        )
        async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/emnify/x") as answer:
            assert answer.status == 200
        code, out, err = await run_cli("status", "--config", str(config))
        assert code == 0, err
        assert "running proxy" in out
        assert "emnify" in out
        assert "valid" in out
    finally:
        await proxy.stop()


async def test_status_command_without_a_proxy_reads_the_store(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ntoken_store: {tmp_path / 'tokens.json'}\n"
        "routes:\n  cosmic:\n    upstream: http://127.0.0.1:1\n"
        "    auth: {preset: cosmic, email: a@example.com, password: pw-123456}\n"
    )
    code, out, err = await run_cli("status", "--config", str(config), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["routes"]["cosmic"]["token"]["state"] == "none"
    assert "tokens.json" in document["source"]
    assert "pw-123456" not in out


async def test_a_public_listen_without_clients_is_refused_by_serve_and_check(
    tmp_path: Path, upstream: tuple[str, asyncio.Event, asyncio.Event]
) -> None:
    url, _, _ = upstream
    config = write_config(tmp_path, url)
    for workers in ("1", "2"):
        code, out, err = await run_cli(
            "serve", "--config", str(config), "--listen", "0.0.0.0:0", "--workers", workers
        )
        assert code == 1, workers
        assert err.startswith("authproxy: refusing to listen on 0.0.0.0:0: listen: a non-loopback")
        assert "allow_unauthenticated" in err
        assert "listening" not in out  # refused before anything was bound
    public = tmp_path / "public.yaml"
    public.write_text(f"listen: 0.0.0.0:8080\n{config.read_text()}")
    code, _, err = await run_cli("check", "--config", str(public))
    assert code == 2
    assert "listen: a non-loopback address without a 'clients' section" in err
    public.write_text(f"allow_unauthenticated: true\n{public.read_text()}")
    code, _, err = await run_cli("check", "--config", str(public))
    assert code == 0, err


async def test_serve_refuses_connections_over_max_connections(
    tmp_path: Path, upstream: tuple[str, asyncio.Event, asyncio.Event]
) -> None:
    """Through the real CLI, on its default event loop (uvloop when installed)."""
    url, _, _ = upstream
    config = write_config(tmp_path, url)
    config.write_text(config.read_text() + "limits:\n  max_connections: 2\n")
    proxy = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0")
    base = URL(proxy.url)
    health = b"GET /-/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        async with raw_connection(base) as first, raw_connection(base) as second:
            for reader, writer in (first, second):  # both answered: both counted
                writer.write(health)
                assert (await asyncio.wait_for(read_response(reader), 10)).status == 200
            async with raw_connection(base) as (reader, writer):
                writer.write(health)
                over = await asyncio.wait_for(read_response(reader), 10)
                assert await asyncio.wait_for(reader.read(), 10) == b""
        assert over.status == 503
        assert json.loads(over.body)["type"] == "urn:authproxy:problem:too-many-connections"
    finally:
        assert await proxy.stop() == 0

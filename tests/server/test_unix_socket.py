"""`listen: unix:/path`: a real `authproxy serve` on a Unix socket, alone and with `--workers 2`:
its file mode, clients that send `Host: localhost` (or anything else), one login, the file gone on
exit; a stale socket replaced, a live one or a regular file left alone."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from proc import run_cli, start_proxy
from supervised import BOUND, supervisor, upstreams, write_config

from authproxy.config.load import parse_settings
from authproxy.errors import ConfigError


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for sockets: tmp_path can exceed the 108 bytes a socket path may have."""
    with tempfile.TemporaryDirectory(prefix="ap-") as directory:
        yield Path(directory)


async def get_over(path: Path, target: str, **headers: str) -> tuple[int, Any]:
    connector = aiohttp.UnixConnector(path=str(path), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(f"http://localhost{target}", headers=headers) as answer,
    ):
        body = await answer.json() if "json" in answer.content_type else await answer.text()
        return answer.status, body


def mode_of(path: Path) -> int:
    found = path.lstat()
    assert stat.S_ISSOCK(found.st_mode)
    return stat.S_IMODE(found.st_mode)


async def test_one_process_serves_a_unix_socket_of_mode_0660_and_removes_it(
    tmp_path: Path, socket_dir: Path
) -> None:
    sock = socket_dir / "ap.sock"
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, "memory")
        previous = os.umask(0)  # a permissive umask must not widen the socket
        try:
            proc = await start_proxy("serve", "--config", str(config), "--listen", f"unix:{sock}")
        finally:
            os.umask(previous)
        try:
            assert proc.url == f"unix:{sock}"
            assert mode_of(sock) == 0o660
            assert (await get_over(sock, "/cosmic/v1/buckets/a"))[0] == 200
            # Whatever a client over the socket calls it: no browser reaches a Unix socket.
            encoded = str(sock).replace("/", "%2F")
            assert (await get_over(sock, "/cosmic/v1/buckets/b", Host=encoded))[0] == 200
            status, health = await get_over(sock, "/-/health")
            assert (status, health) == (200, {"status": "ok"})
        finally:
            assert await proc.stop() == 0
    assert not sock.exists()
    assert ups.state.login_attempts == 1


async def test_status_asks_the_proxy_on_the_configs_unix_socket(
    tmp_path: Path, socket_dir: Path
) -> None:
    sock = socket_dir / "ap.sock"
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, "memory", top=f"listen: unix:{sock}\n")
        proc = await start_proxy("serve", "--config", str(config))
        try:
            assert (await get_over(sock, "/cosmic/v1/buckets/a"))[0] == 200
            code, out, err = await run_cli("status", "--json", "--config", str(config))
        finally:
            assert await proc.stop() == 0
    assert code == 0, err
    document = json.loads(out)
    assert document["source"] == f"running proxy at unix:{sock}"
    assert document["routes"]["cosmic"]["token"]["state"] == "valid"


async def test_two_workers_share_one_unix_socket(tmp_path: Path, socket_dir: Path) -> None:
    sock = socket_dir / "ap.sock"
    async with upstreams() as ups:
        config = write_config(
            tmp_path / "c.yaml", ups, str(tmp_path / "tokens.json"), top="listen_mode: 0600\n"
        )
        async with supervisor(config, 2, listen=f"unix:{sock}") as running:
            assert running.url == f"unix:{sock}"
            assert mode_of(sock) == 0o600
            answers = await asyncio.wait_for(
                asyncio.gather(*(get_over(sock, f"/cosmic/v1/buckets/{i}") for i in range(40))),
                BOUND,
            )
            assert [status for status, _ in answers] == [200] * 40
            _, document = await get_over(sock, "/-/status")
            assert document["workers"] == 2
            listening = await running.wait_for(
                "both workers", lambda e: e.get("event") == "worker listening", count=2
            )
            assert {event["worker"] for event in listening} == {0, 1}
            assert await running.exit_code() == 0
    assert not sock.exists()
    assert ups.state.login_attempts == 1


async def test_a_stale_socket_is_replaced_and_a_live_one_or_a_file_refused(
    tmp_path: Path, socket_dir: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("token_store: memory\nroutes:\n  a:\n    upstream: http://127.0.0.1:9\n")
    stale = socket_dir / "stale.sock"
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(stale))
    left.close()  # the file stays, nobody listens: what a killed proxy leaves behind
    proc = await start_proxy("serve", "--config", str(config), "--listen", f"unix:{stale}")
    try:
        for args in (["--workers", "1"], ["--workers", "2"]):
            code, _out, err = await run_cli(
                "serve", "--config", str(config), "--listen", f"unix:{stale}", *args
            )
            assert code == 1
            assert (
                err.strip() == f"authproxy: cannot listen on unix:{stale}: address already in use"
            )
    finally:
        assert await proc.stop() == 0
    regular = socket_dir / "regular"
    regular.write_text("keep me")
    code, _out, err = await run_cli("serve", "--config", str(config), "--listen", f"unix:{regular}")
    assert code == 1
    assert "a file that is not a socket is in the way" in err
    assert regular.read_text() == "keep me"
    missing = socket_dir / "no-such-dir" / "ap.sock"
    code, _out, err = await run_cli("serve", "--config", str(config), "--listen", f"unix:{missing}")
    assert code == 1
    assert f"cannot listen on unix:{missing}: No such file or directory" in err


async def test_a_socket_every_local_user_may_use_is_warned_about(
    tmp_path: Path, socket_dir: Path
) -> None:
    sock = socket_dir / "open.sock"
    config = tmp_path / "c.yaml"
    config.write_text(
        f"listen: unix:{sock}\nlisten_mode: 0666\ntoken_store: memory\n"
        "routes:\n  a:\n    upstream: http://127.0.0.1:9\n"
    )
    proc = await start_proxy("serve", "--config", str(config))
    try:
        assert mode_of(sock) == 0o666
    finally:
        assert await proc.stop() == 0
    assert "the Unix socket is writable by every user of this host" in proc.text


def test_a_unix_listen_needs_no_clients_and_its_problems_are_named() -> None:
    routes = {"a": {"upstream": "http://127.0.0.1:9"}}
    settings = parse_settings(
        {"listen": "unix:/run/authproxy/ap.sock", "routes": routes}, source="t", environ={}
    )
    assert str(settings.listen) == "unix:/run/authproxy/ap.sock"
    assert settings.listen_mode == 0o660
    assert (
        parse_settings(
            {"listen_mode": "0o640", "routes": routes}, source="t", environ={}
        ).listen_mode
        == 0o640
    )
    bad = {
        "listen": "unix:run/ap.sock",
        "listen_mode": 660,  # decimal: 0o1224, not what anyone means
        "routes": routes,
    }
    with pytest.raises(ConfigError) as caught:
        parse_settings(bad, source="t", environ={})
    text = str(caught.value)
    assert "listen: a Unix socket needs an absolute path" in text
    assert "listen_mode: expected a file mode from 0000 to 0777" in text
    with pytest.raises(ConfigError) as caught:
        parse_settings({"listen": "unix:/" + "x" * 120, "routes": routes}, source="t", environ={})
    assert "a Unix socket path may have at most 103 bytes" in str(caught.value)

"""http_syntax: the one RFC 9110 token check and the one way to write `host:port`."""

from __future__ import annotations

import pytest

from authproxy.http_syntax import bracket_host, host_port, is_token

# Every tchar of RFC 9110 §5.6.2 besides letters and digits.
TCHAR_SYMBOLS = "!#$%&'*+-.^_`|~"


@pytest.mark.parametrize("text", ["GET", "X-Api-Key", "x_y.z", "0", TCHAR_SYMBOLS])
def test_tokens(text: str) -> None:
    assert is_token(text)


@pytest.mark.parametrize(
    "text",
    ["", "X Key", "Key:", "a\r\nX-Injected: 1", "a\n", "(comment)", '"quoted"', "Größe", "a/b"],
)
def test_not_tokens(text: str) -> None:
    assert not is_token(text)


@pytest.mark.parametrize(
    ("host", "port", "written"),
    [
        ("127.0.0.1", 8080, "127.0.0.1:8080"),
        ("localhost", 0, "localhost:0"),
        ("::1", 8080, "[::1]:8080"),
    ],
)
def test_host_port_brackets_ipv6_only(host: str, port: int, written: str) -> None:
    assert host_port(host, port) == written
    assert bracket_host(host) == written.rpartition(":")[0]

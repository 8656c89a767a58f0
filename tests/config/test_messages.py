"""Messages a new user meets first, through the real `authproxy check`: each says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from proc import run_cli


async def check(tmp_path: Path, text: str) -> list[str]:
    """The problems `authproxy check` lists for a config file holding `text` (exit 2)."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    code, out, err = await run_cli("check", "--config", str(config), env={"AUTHPROXY_UNSET": ""})
    assert code == 2, out
    assert "Traceback" not in err
    return [line[4:] for line in err.splitlines() if line.startswith("  - ")]


async def test_a_malformed_token_store_key_points_to_keygen(tmp_path: Path) -> None:
    problems = await check(
        tmp_path, "token_store_key: not-a-key\nroutes: {a: {upstream: http://a}}\n"
    )
    assert problems == [
        "token_store_key: not a valid Fernet key: expected 32 url-safe base64-encoded bytes; "
        "make one with `authproxy keygen`"
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("shutdown_grace: 5s", "shutdown_grace: expected a number, got '5s': write 5 (seconds)"),
        (
            "limits: {header_timeout: 1500ms}",
            "limits.header_timeout: expected a number, got '1500ms': write 1.5 (seconds)",
        ),
        (
            "limits: {replay_buffer_total: 64MiB}",
            "limits.replay_buffer_total: expected a number, got '64MiB': write 67108864 (bytes)",
        ),
        (
            "limits: {max_connections: 10 conns}",
            "limits.max_connections: expected a number, got '10 conns': write the number "
            "alone, in connections",
        ),
    ],
)
async def test_a_number_with_a_unit_names_the_unit(
    setting: str, message: str, tmp_path: Path
) -> None:
    problems = await check(tmp_path, f"{setting}\nroutes: {{a: {{upstream: http://a}}}}\n")
    assert problems == [message]


async def test_a_percentage_for_renew_at_becomes_a_fraction(tmp_path: Path) -> None:
    problems = await check(
        tmp_path,
        "routes:\n  a:\n    upstream: http://a\n"
        "    auth: {preset: crux, username: u, password: p, renew_at: 80%}\n",
    )
    assert problems == [
        "routes.a.auth.renew_at: expected a number, got '80%': write 0.8 "
        "(a fraction of the token's lifetime)"
    ]


async def test_auth_fields_at_route_level_are_to_move_under_auth(tmp_path: Path) -> None:
    problems = await check(
        tmp_path,
        "header_timeout: 5\nroutes:\n  a:\n    upstream: http://a\n"
        "    preset: crux\n    username: u\n    upstraem: x\n",
    )
    assert problems == [
        "header_timeout: belongs under 'limits': move it there",
        "routes.a.preset: belongs under 'auth': move it there",
        "routes.a.username: belongs under 'auth': move it there",
        "routes.a.upstraem: unknown key; did you mean 'upstream'?",
    ]


async def test_an_unknown_preset_does_not_hide_the_other_problems(tmp_path: Path) -> None:
    problems = await check(
        tmp_path,
        "routes:\n  a:\n    upstream: http://a\n    auth:\n      preset: emnfy\n"
        "      usrname: u\n      password: ${AUTHPROXY_TEST_UNSET_VAR}\n      renew_at: 3\n",
    )
    assert problems == [
        "routes.a.auth.preset: unknown preset 'emnfy'; did you mean 'emnify'? presets: coco, "
        "cosmic, crux, cucumberstudio, emnify, oauth2",
        "routes.a.auth.usrname: unknown key; did you mean 'username'?",
        "routes.a.auth.password: environment variable AUTHPROXY_TEST_UNSET_VAR is not set",
        "routes.a.auth.renew_at: must be less than 1: it is a fraction of the token lifetime",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: b: c\n", "line 1, column 5: a ':' where none can be: quote a value that holds"),
        ("routes:\n\tapi: {}\n", "line 2, column 1: a tab: indent with spaces only"),
        ("routes: {a: [1, 2}\n", "line 1, column 18: a [list] is not closed with ']'"),
        ("routes:\n  a: 1\n b: 2\n", "line 3, column 2: this line is not indented like the"),
        ("routes: @x\n", "line 1, column 9: a value cannot start with '@': put it in quotes"),
        ('routes: "x\n', "line 2, column 1: the file ends inside a quoted value: close the"),
        ("a: 1\na: 2\n", "line 2, column 1: the key 'a' appears twice in the same mapping"),
    ],
)
async def test_yaml_errors_are_a_plain_sentence_with_line_and_column(
    text: str, message: str, tmp_path: Path
) -> None:
    (problem,) = await check(tmp_path, text)
    assert problem.startswith(f"invalid YAML at {message}")

"""Templates: parsing, filters, escapes and the errors a config author sees."""

from __future__ import annotations

import base64
import hashlib

import pytest

from authproxy.auth.templates import compile_template


def test_literal_text_renders_unchanged() -> None:
    template = compile_template("application/json")
    assert template.names == frozenset()
    assert template.render({}) == "application/json"


def test_placeholders_are_filled_and_listed() -> None:
    template = compile_template("Bearer {token} for {uid}")
    assert template.names == {"token", "uid"}
    assert template.render({"token": "abc", "uid": "u1"}) == "Bearer abc for u1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{password|sha1}", hashlib.sha1(b"hunter2").hexdigest()),
        ("{password|sha256}", hashlib.sha256(b"hunter2").hexdigest()),
        ("{password|base64}", base64.b64encode(b"hunter2").decode()),
        (
            "Basic {password|sha1|base64}",
            "Basic " + base64.b64encode(hashlib.sha1(b"hunter2").hexdigest().encode()).decode(),
        ),
        ("{ password | sha1 }", hashlib.sha1(b"hunter2").hexdigest()),
    ],
)
def test_filters(text: str, expected: str) -> None:
    assert compile_template(text).render({"password": "hunter2"}) == expected


def test_sha1_matches_the_emnify_documentation_example() -> None:
    # emnify's docs: echo -n 'my_password' | openssl sha1 -> the hex digest is sent.
    digest = hashlib.sha1(b"my_password").hexdigest()
    assert compile_template("{p|sha1}").render({"p": "my_password"}) == digest


def test_doubled_braces_are_literal() -> None:
    template = compile_template('{{"token": "{token}"}}')
    assert template.names == {"token"}
    assert template.render({"token": "t"}) == '{"token": "t"}'


def test_missing_value_raises_key_error_with_its_name() -> None:
    with pytest.raises(KeyError) as caught:
        compile_template("Bearer {token}").render({})
    assert caught.value.args == ("token",)


def test_unknown_filter_is_named_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown filter 'md5'") as caught:
        compile_template("{password|md5}")
    assert "base64, sha1, sha256" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Bearer {token", "unbalanced '{'"),
        ("Bearer token}", "unbalanced '}'"),
        ("{{token}", "unbalanced '}'"),
        ("{a{b}}", "unbalanced '{'"),
        ("{}", "does not start with a value name"),
        ("{1st}", "does not start with a value name"),
        ("{|sha1}", "does not start with a value name"),
    ],
)
def test_bad_syntax_is_a_clear_value_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compile_template(text)


def test_errors_do_not_quote_the_whole_template() -> None:
    # A template may hold a secret substituted from the environment (with its braces escaped).
    with pytest.raises(ValueError, match="unknown filter") as caught:
        compile_template("Bearer sk-live-0123456789 {user|md5}")
    assert "sk-live" not in str(caught.value)
    assert repr(compile_template("sk-live-0123456789 {user}")) == "Template(names=['user'])"

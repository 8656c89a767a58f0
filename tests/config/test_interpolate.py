"""config/interpolate: `${...}` read against an environment, with no `Node` and no YAML involved."""

from __future__ import annotations

from pathlib import Path

from authproxy.config.interpolate import Shield, interpolate
from authproxy.secrets import REGISTRY


def test_every_unset_variable_is_reported_and_nothing_is_returned() -> None:
    problems: list[str] = []
    text = interpolate(
        "${ONE}-${SET}-${TWO}", {"SET": "x"}, problems.append, escape=False, secret=True
    )
    assert text is None
    assert problems == [
        "environment variable ONE is not set",
        "environment variable TWO is not set",
    ]


def test_values_origins_and_the_literal_escape(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-a-file-0451\n", encoding="utf-8")
    environ = {"HOME": str(tmp_path), "USER_ID": "user-0451"}
    problems: list[str] = []
    raw = "$${kept} ${USER_ID}:${file:~/key}"
    text = interpolate(raw, environ, problems.append, escape=False, secret=True)
    assert problems == []
    assert text is not None
    assert text.value == "${kept} user-0451:from-a-file-0451"
    assert text.origin == "env:USER_ID,file:~/key"
    assert text.substituted == ("user-0451", "from-a-file-0451")
    assert "from-a-file-0451" in REGISTRY


def test_template_escape_and_public_values() -> None:
    environ = {"BRACED": "{not-a-placeholder-0451}"}
    problems: list[str] = []
    text = interpolate("${BRACED}", environ, problems.append, escape=True, secret=False)
    assert problems == []
    assert text is not None
    assert text.value == "{{not-a-placeholder-0451}}"
    assert "{not-a-placeholder-0451}" not in REGISTRY


def test_shield_hides_references_from_yaml_and_restores_them() -> None:
    source = "auth: {password: ${PASSWORD}, note: $${literal}}"
    shield = Shield(source)
    assert "${" not in shield.text
    assert shield.restore(shield.text) == source

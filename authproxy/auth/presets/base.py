"""The shape every preset has: a name, its fields, and a pure builder of an AuthSpec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from authproxy.auth_spec import AuthSpec
from authproxy.secrets import Secret


@dataclass(frozen=True, slots=True)
class Preset:
    """`secret_fields` are credentials (masked everywhere); `option_fields` are plain settings.

    `table_fields` are mappings of plain settings (oauth2's `params`): `build` finds each entry
    among the options as `<field>.<key>`.

    `requires` lists the ways to configure the preset, each as the fields it needs: a block must
    give every field of at least one. The config schema says the same, and a test holds `build`
    to it; what depends on values (oauth2's `grant: password` needing a username) only `build`
    checks.
    """

    name: str
    secret_fields: tuple[str, ...]
    option_fields: tuple[str, ...]
    build: Callable[[Mapping[str, Secret], Mapping[str, str]], AuthSpec]
    summary: str = ""
    table_fields: tuple[str, ...] = ()
    requires: tuple[tuple[str, ...], ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return self.secret_fields + self.option_fields + self.table_fields

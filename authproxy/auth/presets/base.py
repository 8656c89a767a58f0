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
    """

    name: str
    secret_fields: tuple[str, ...]
    option_fields: tuple[str, ...]
    build: Callable[[Mapping[str, Secret], Mapping[str, str]], AuthSpec]
    summary: str = ""
    table_fields: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return self.secret_fields + self.option_fields + self.table_fields

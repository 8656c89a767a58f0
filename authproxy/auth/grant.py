"""What a login yields: the captured values and their lifetime.

A Grant keeps its values masked in every log line for as long as it exists, and no longer (see
`SecretRegistry`): the one place where obtained tokens are registered for redaction, however they
were obtained (a login, a rotation, a store).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

from authproxy.secrets import REGISTRY


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Grant:
    """Captured values (`token`, `refresh_token`, ...) and their lifetime in POSIX seconds.

    `expires_at` None means unknown: valid until the upstream refuses it.
    """

    values: Mapping[str, str] = field(repr=False)
    expires_at: float | None
    obtained_at: float

    def __post_init__(self) -> None:
        held = tuple(self.values.values())
        REGISTRY.hold(held)
        weakref.finalize(self, REGISTRY.release, held)

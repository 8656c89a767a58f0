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

# Never inject a token this close to its expiry: it would arrive expired. Capped so that a token
# of a few seconds keeps most of its life.
EXPIRY_LEEWAY_SHARE, EXPIRY_LEEWAY_CAP = 0.02, 5.0


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

    def expired(self, now: float) -> bool:
        """Too close to its expiry to be sent (or past it); never, when the expiry is unknown."""
        if self.expires_at is None:
            return False
        lifetime = max(0.0, self.expires_at - self.obtained_at)
        leeway = min(EXPIRY_LEEWAY_CAP, lifetime * EXPIRY_LEEWAY_SHARE)
        return now >= self.expires_at - leeway

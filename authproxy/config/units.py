"""A number written with a unit (`5s`, `80%`, `64MiB`) where the config wants the number alone.

YAML reads `timeout: 5s` as a string, so the reader would only say "expected a number". The key's
unit (`shapes.UNITS`, by key name) turns that into the fix: `write 5 (seconds)`, `write 0.8
(a fraction of the token's lifetime)`, `write 67108864 (bytes)`.
"""

from __future__ import annotations

import re

from authproxy.config.shape import FRACTION
from authproxy.config.shapes import UNITS

# A number followed by a unit, and what each unit is in the key's own.
_WITH_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z%]+)\s*")
_SECONDS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
_BYTES = {"b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1e6, "mb": 1e6, "mib": 1024**2}
_SCALES = {"seconds": _SECONDS, "bytes": _BYTES | {"gib": 1024**3}, FRACTION: {"%": 0.01}}


def unit_hint(value: str, key: str) -> str:
    """The message for `value`, a number with a unit, at `key`; "" when it is not one."""
    match = _WITH_UNIT.fullmatch(value)
    if match is None:
        return ""
    unit = UNITS.get(key, "")
    factor = _SCALES.get(unit, {}).get(match[2].lower())
    if factor is None:
        return f"expected a number, got '{value}': write the number alone" + (
            f", in {unit}" if unit else ""
        )
    number = float(match[1]) * factor
    shown = str(int(number)) if number.is_integer() else f"{number:g}"
    return f"expected a number, got '{value}': write {shown} ({unit})"

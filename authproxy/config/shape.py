"""The pieces `config/shapes.py` and `config/flow_shapes.py` describe keys with: a `Shape` (a
JSON Schema, a unit, a line of description) and the constructors for the usual kinds of value.
Any scalar may be a `${...}` reference: the schema accepts one for a number or a boolean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

FRACTION = "a fraction of the token's lifetime"
# A string holding a `${...}` reference: it may stand for a number or a boolean.
REFERENCE: Schema = {"type": "string", "pattern": r"\$\{"}


@dataclass(frozen=True, slots=True)
class Shape:
    """One key's value: a JSON Schema, or `block`, the name of a table below (a nested block)."""

    description: str
    schema: Schema = field(default_factory=dict)
    unit: str | None = None
    block: str | None = None


def number(description: str, unit: str, *, minimum: float = 0, exclusive: bool = True) -> Shape:
    bound = "exclusiveMinimum" if exclusive else "minimum"
    schema = {"anyOf": [{"type": "number", bound: minimum}, REFERENCE]}
    return Shape(f"{description} ({unit})", schema, unit)


def integer(description: str, unit: str, *, minimum: int, maximum: int | None = None) -> Shape:
    number: Schema = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        number["maximum"] = maximum
    return Shape(f"{description} ({unit})", {"anyOf": [number, REFERENCE]}, unit)


def seconds(description: str, *, zero: bool = False) -> Shape:
    return number(description, "seconds", exclusive=not zero)


def flag(description: str) -> Shape:
    return Shape(description, {"anyOf": [{"type": "boolean"}, REFERENCE]})


def text(description: str, **schema: Any) -> Shape:
    return Shape(description, {"type": "string", **schema})


def texts(description: str, *, min_items: int = 0) -> Shape:
    schema: Schema = {"type": "array", "items": {"type": "string"}}
    if min_items:
        schema["minItems"] = min_items
    return Shape(description, schema)


def text_map(description: str) -> Shape:
    return Shape(description, {"type": "object", "additionalProperties": {"type": "string"}})

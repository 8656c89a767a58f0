"""The config's JSON Schema (draft 2020-12), built from what the loader checks.

Which keys a block may hold comes from the loader's own tuples (`TOP_KEYS`, `ROUTE_KEYS`, ...,
each preset's fields), and what each key holds from `config/shapes.py`, so the schema cannot
accept a key the loader refuses or miss one it reads. `authproxy schema` prints it, and
`docs/config.schema.json` is a copy that editors read (a test keeps it current).

The schema checks structure: keys, types, ranges, and the fields each preset requires (one of
its ways, `Preset.requires`). What needs more than one value or the environment (fields that
depend on another's value, template names, whether a file exists) is for `authproxy check`
alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from authproxy.auth.presets import PRESETS, Preset
from authproxy.config.auth_block import COMMON_KEYS
from authproxy.config.custom_flow import (
    ADOPT_KEYS,
    CUSTOM_KEYS,
    EXPIRY_KEYS,
    INJECT_KEYS,
    REFRESH_KEYS,
    REQUEST_KEYS,
    TOKEN_KEYS,
)
from authproxy.config.flow_shapes import PRESET_OPTION, PRESET_SECRET, PRESET_TABLE
from authproxy.config.gateway_block import CLIENT_KEYS, RATE_KEYS
from authproxy.config.headers_block import EDIT_KEYS, HEADERS_KEYS
from authproxy.config.limits import LIMIT_KEYS, UPSTREAM_KEYS
from authproxy.config.load import TOP_KEYS
from authproxy.config.routes_block import CORS_KEYS, ROUTE_KEYS, TIMEOUT_KEYS, TLS_KEYS
from authproxy.config.shape import REFERENCE, Schema, Shape
from authproxy.config.shapes import BLOCKS

SCHEMA_ID = "urn:authproxy:config-schema"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
ROUTE_NAME = "^[A-Za-z0-9_-]+$"

# The blocks, each with the loader's tuple of the keys it may hold and its table of shapes.
_KEYS: Mapping[str, Sequence[str]] = {
    "top": TOP_KEYS,
    "limits": LIMIT_KEYS,
    "upstream": UPSTREAM_KEYS,
    "route": ROUTE_KEYS,
    "timeout": TIMEOUT_KEYS,
    "tls": TLS_KEYS,
    "cors": CORS_KEYS,
    "headers": HEADERS_KEYS,
    "header_edits": EDIT_KEYS,
    "custom": CUSTOM_KEYS,
    "request": REQUEST_KEYS,
    "refresh": REFRESH_KEYS,
    "token": TOKEN_KEYS,
    "expiry": EXPIRY_KEYS,
    "inject": INJECT_KEYS,
    "adopt": ADOPT_KEYS,
    "client": CLIENT_KEYS,
    "rate_limit": RATE_KEYS,
}
# Keys the loader reports as "required" when they are absent.
_REQUIRED: Mapping[str, Sequence[str]] = {
    "top": ("routes",),
    "route": ("upstream",),
    "cors": ("origins",),
    "custom": ("inject",),
    "token": ("key",),
    "expiry": ("from",),
    "inject": ("headers",),
    "adopt": ("trigger", "headers"),
    "rate_limit": ("rate",),
}


def config_schema() -> Schema:
    """The whole schema, as a JSON-able dict."""
    defs = {name: _block(name) for name in _KEYS if name != "top"}
    defs["routes"] = {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": ROUTE_NAME},
        "additionalProperties": {"$ref": "#/$defs/route"},
    }
    defs["clients"] = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"$ref": "#/$defs/client"},
    }
    defs["auth"] = _auth()
    defs["reference"] = REFERENCE
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "authproxy config",
        "description": "The YAML config of authproxy: `authproxy check --config FILE` checks "
        "it fully; this schema checks its keys and the types of their values.",
        **_block("top"),
        "$defs": dict(sorted(defs.items())),
    }


def _block(name: str) -> Schema:
    """A mapping that holds only the loader's keys for `name`, each shaped by its table."""
    shapes = BLOCKS[name]
    schema: Schema = {
        "type": "object",
        "properties": {key: _property(shapes, key, name) for key in _KEYS[name]},
        "additionalProperties": False,
    }
    if required := _REQUIRED.get(name):
        schema["required"] = list(required)
    if name in ("request", "refresh"):
        schema["oneOf"] = [{"required": ["path"]}, {"required": ["url"]}]
    return schema


def _property(shapes: Mapping[str, Shape], key: str, block: str) -> Schema:
    shape = shapes.get(key)
    if shape is None:
        raise KeyError(
            f"config/shapes.py (or flow_shapes.py) has no shape for {block}.{key}, "
            "which the loader reads"
        )
    return _shape(shape)


def _shape(shape: Shape) -> Schema:
    if shape.block is not None:
        return {"description": shape.description, "$ref": f"#/$defs/{shape.block}"}
    return {"description": shape.description, **shape.schema}


def _auth() -> Schema:
    """One preset's fields with `preset: NAME`, or a custom flow without `preset`."""
    common = {key: _property(BLOCKS["auth_common"], key, "auth") for key in COMMON_KEYS}
    variants = [_preset_variant(preset, common) for preset in PRESETS.values()]
    custom = _block("custom")
    custom["properties"] = {**custom["properties"], **common}
    custom["not"] = {"required": ["preset"]}
    custom["description"] = "a flow spelled out: credentials, login, token, inject, ..."
    return {
        "type": "object",
        "properties": {"preset": {"description": "a built-in login flow", "enum": sorted(PRESETS)}},
        "oneOf": [*variants, custom],
    }


def _preset_variant(preset: Preset, common: Mapping[str, Schema]) -> Schema:
    fields = {key: _shape(PRESET_SECRET) for key in preset.secret_fields}
    fields |= {key: _shape(PRESET_OPTION) for key in preset.option_fields}
    fields |= {key: _shape(PRESET_TABLE) for key in preset.table_fields}
    variant: Schema = {
        "description": preset.summary or f"preset {preset.name}",
        "type": "object",
        "properties": {"preset": {"const": preset.name}, **fields, **common},
        "required": ["preset"],
        "additionalProperties": False,
    }
    if preset.requires:
        variant["anyOf"] = [{"required": list(way)} for way in preset.requires]
    return variant

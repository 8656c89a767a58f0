"""A route's `auth:` block -> `AuthSpec`: a preset and its fields, or a custom flow spelled out.

This module reads a preset's fields, the options both kinds of flow take (`ttl`, `warm`,
`renew_at`, `relogin_after_rejection`, `invalid_statuses`, `timeout`) and which keys the block may
hold; the custom flow itself is read by `config/custom_flow.py`. Either way the injector the server
will build is built once here, so a flow that cannot inject fails at start, not on a request.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from types import MappingProxyType

from authproxy.auth.endpoints import is_absolute
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.presets import PRESETS, Preset, PresetProblem
from authproxy.auth_spec import AuthSpec, ExpirySpec, InjectSpec
from authproxy.config.custom_flow import CUSTOM_KEYS, parse_custom_flow
from authproxy.config.interpolate import register_beyond_origin
from authproxy.config.node import Node, did_you_mean
from authproxy.secrets import REGISTRY, Secret

COMMON_KEYS = (
    *("ttl", "warm", "renew_at", "relogin_after_rejection", "invalid_statuses"),
    "timeout",
)

# Stands in for a flow that failed, so its common options are still read and checked.
_NO_FLOW = AuthSpec(None, MappingProxyType({}), None, (), ExpirySpec("none"), InjectSpec())


def auth_fields() -> frozenset[str]:
    """Every key an auth block may hold, whatever its flow: a hint where one is misplaced."""
    presets = (field for preset in PRESETS.values() for field in preset.fields)
    return frozenset({"preset", *COMMON_KEYS, *CUSTOM_KEYS, *presets})


def parse_auth(node: Node) -> AuthSpec | None:
    """The route's AuthSpec, or None once a problem has been recorded."""
    before = len(node.ctx.problems)
    if not isinstance(node.value, dict):
        node.entries()  # records "expected a mapping"
        return None
    flow = _preset_flow(node) if "preset" in node.value else _custom_flow(node)
    # Read the options even when the flow failed, so their problems are reported in the same run.
    spec = _with_common_options(node, flow or _NO_FLOW)
    if flow is None or len(node.ctx.problems) > before:
        return None
    try:  # the injector the server will build; proven buildable now, not on the first request
        CompiledInjector.from_spec(spec)
    except ValueError as exc:
        where = node if spec.preset else node.child("inject")
        where.problem(REGISTRY.scrub(str(exc)))
        return None
    return spec


def _custom_flow(node: Node) -> AuthSpec | None:
    """A flow spelled out in the block; its keys besides the common options are CUSTOM_KEYS."""
    node.keys((*CUSTOM_KEYS, *COMMON_KEYS))
    return parse_custom_flow(node)


# ---- preset flows ----------------------------------------------------------------------------


def _preset_flow(node: Node) -> AuthSpec | None:
    preset, meant = _preset(node.child("preset"))
    if preset is None:
        # The block's other problems still count: read it as the preset probably meant, or
        # against every preset's fields when none is close.
        _preset_fields(node, [meant] if meant else list(PRESETS.values()))
        return None
    before = len(node.ctx.problems)
    credentials, options = _preset_fields(node, [preset])
    if len(node.ctx.problems) > before:
        return None  # the preset would only add "required" for a misspelled or unset field
    try:
        return preset.build(credentials, options)
    except PresetProblem as exc:
        (node.child(exc.key) if exc.key else node).problem(exc.message)
        return None


def _preset_fields(node: Node, presets: list[Preset]) -> tuple[dict[str, Secret], dict[str, str]]:
    """The credentials and options of `presets`' fields; other keys are problems."""
    secret_fields = dict.fromkeys(key for preset in presets for key in preset.secret_fields)
    option_fields = dict.fromkeys(key for preset in presets for key in preset.option_fields)
    table_fields = dict.fromkeys(key for preset in presets for key in preset.table_fields)
    node.keys(("preset", *secret_fields, *option_fields, *table_fields, *COMMON_KEYS))
    credentials: dict[str, Secret] = {}
    for key in secret_fields:
        if (secret := node.child(key).credential()) is not None:
            credentials[key] = secret
    options: dict[str, str] = {}
    for key in option_fields:
        if (option := _option(node.child(key))) is not None:
            options[key] = option
    for key in table_fields:
        options.update(_table(key, node.child(key)))
    return credentials, options


def _preset(node: Node) -> tuple[Preset | None, Preset | None]:
    """The preset named, or None and the one probably meant (a near miss), if any."""
    name = node.string(required=True, secret=False)
    if name is None or name in PRESETS:
        return PRESETS.get(name or ""), None
    hint = did_you_mean(name, PRESETS)
    presets = ", ".join(sorted(PRESETS))
    node.problem(f"unknown preset '{name}'; {hint + ' ' if hint else ''}presets: {presets}")
    close = difflib.get_close_matches(name, list(PRESETS), n=1)
    return None, PRESETS[close[0]] if close else None


def _option(node: Node) -> str | None:
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return str(node.value)  # `login_path` is text, but a number is an easy thing to write
    # A preset's options are plain settings (`login_path`, `password_hash`), shown as they are.
    text = None if node.missing else node.text(secret=False)
    if text is not None and is_absolute(text.value):
        register_beyond_origin(text, text.value)  # a token URL: as an upstream URL (routes_block)
    return None if text is None else text.value


def _table(field: str, node: Node) -> dict[str, str]:
    """A mapping option (`params: {audience: ...}`), as `Preset.table_fields` hands it over."""
    table: dict[str, str] = {}
    for key, child in node.pairs():
        if not key:
            child.problem("an empty name")
        elif (value := _option(child)) is not None:
            table[f"{field}.{key}"] = value
    return table


def _with_common_options(node: Node, spec: AuthSpec) -> AuthSpec:
    """`spec` with the options both kinds of flow take applied over what the flow chose."""
    given = {key: child for key in COMMON_KEYS if not (child := node.child(key)).missing}
    if ttl := given.get("ttl"):
        spec = replace(spec, expiry=ExpirySpec("ttl", seconds=ttl.number(3600.0)))
    if warm := given.get("warm"):
        spec = replace(spec, warm=warm.boolean(False))
    if renew := given.get("renew_at"):
        spec = replace(spec, renew_at=renew.number(0.8))
        if spec.renew_at >= 1:
            renew.problem("must be less than 1: it is a fraction of the token lifetime")
    if relogin := given.get("relogin_after_rejection"):
        spec = replace(spec, relogin_after_rejection=relogin.number(300.0, inclusive=True))
    if statuses := given.get("invalid_statuses"):
        spec = replace(spec, invalid_statuses=_statuses(statuses))
    if timeout := given.get("timeout"):
        spec = replace(spec, timeout=timeout.number(spec.timeout))
    return spec


def _statuses(node: Node) -> frozenset[int]:
    items = node.items()
    if items == []:
        node.problem("empty; list at least one status, e.g. [401]")
    return frozenset(item.integer(401, minimum=400, maximum=599) for item in items or ())

"""The templates of a custom flow, compiled when the config loads and checked to read only names
that will exist when they are rendered, and the header names a flow writes (RFC 9110 tokens).

A typo in a template (`{pasword}`) is a problem at start, naming the key and the names there
are, rather than a failed request; a value a login may not return is refused where it would be
relied on. A message leaves out the template's text, which may hold a substituted secret.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType

from authproxy.auth.templates import compile_template
from authproxy.auth_spec import EMPTY
from authproxy.config.node import Node, unknown
from authproxy.http_syntax import is_token
from authproxy.secrets import REGISTRY


def parse_templates(
    node: Node,
    names: Collection[str],
    *,
    header_names: bool = False,
    optional: Collection[str] = (),
) -> Mapping[str, str]:
    """A mapping of templates, each compiled and checked to read only `names`."""
    templates: dict[str, str] = {}
    for key, child in node.pairs():
        if header_names and not is_token(key):
            child.problem("not a valid HTTP header name")
        elif (text := child.text(template=True)) and _check_template(
            child, text.value, names, optional
        ):
            templates[key] = text.value
    return MappingProxyType(templates) if templates else EMPTY


def _check_template(
    node: Node, text: str, names: Collection[str], optional: Collection[str]
) -> bool:
    try:
        template = compile_template(text)
    except ValueError as exc:
        # Drop the "template '<text>': " head; the text may hold a substituted secret.
        node.problem(REGISTRY.scrub(str(exc).removeprefix(f"template {text!r}: ")))
        return False
    for name in sorted(template.names - set(names)):
        if name in optional:
            node.problem(f"'{name}' is a value the login may not return; it cannot be relied on")
        else:
            node.problem(unknown("name", name, names))
    return template.names <= set(names)


def parse_header_name(node: Node) -> str | None:
    name = node.string(required=True, secret=False)
    if name is not None and not is_token(name):
        node.problem("not a valid HTTP header name")
        return None
    return name


def parse_header_list(node: Node) -> tuple[str, ...]:
    items = [] if node.missing else node.items() or []
    return tuple(name for item in items if (name := parse_header_name(item)))

"""Config text -> plain data: strict YAML, and errors that never quote a source line.

`read_yaml` swaps each `${...}` for a plain token before YAML sees it (see `Shield` in
`config/interpolate.py`) and puts it back in every scalar, so references survive unquoted. PyYAML
would let the last of two equal keys win; here a duplicate key is an error. A YAML error names its
line and column, never the line itself: it may hold a literal secret.
"""

from __future__ import annotations

import yaml

from authproxy.config.interpolate import Shield
from authproxy.errors import ConfigError, ConfigProblem


def read_yaml(text: str, source: str) -> object:
    """The parsed document, `${...}` references kept as written; `ConfigError` if not YAML."""
    shield = Shield(text)
    loader = _StrictLoader(shield)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigProblem("", _yaml_message(exc, shield))]) from None
    except (ValueError, TypeError, OverflowError):
        # An explicit tag PyYAML cannot construct (`!!int abc`, `!!timestamp x`): no position is
        # known, and the value itself may be a secret, so only the kind of problem is named.
        problem = "a value with an explicit YAML tag (such as !!int) could not be read"
        raise ConfigError(source, [ConfigProblem("", problem)]) from None
    finally:
        loader.dispose()


def _yaml_message(exc: yaml.YAMLError, shield: Shield) -> str:
    # Never str(exc): PyYAML quotes the offending source line, which may hold a literal secret.
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        # The mark counts in the shielded text; tokens differ in length from what they replace,
        # so measure the line up to the mark in the user's text. Lines match: no token spans one.
        column = len(shield.restore(shield.text[mark.index - mark.column : mark.index]))
        problem = shield.restore(exc.problem or "syntax error")
        return f"invalid YAML at line {mark.line + 1}, column {column + 1}: {problem}"
    return "invalid YAML"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader over shielded text: puts references back, refuses duplicate keys."""

    def __init__(self, shield: Shield) -> None:
        super().__init__(shield.text)
        self._shield = shield

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        node = super().compose_node(parent, index)
        # Keys are scalars too. The tag is already resolved, from the token: a string, as the
        # reference would have been. Aliases return an anchored node again; restoring is idempotent.
        if isinstance(node, yaml.ScalarNode):
            node.value = self._shield.restore(node.value)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        # PyYAML would silently let the last of two equal keys win.
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)

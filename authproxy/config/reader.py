"""Config text -> plain data: strict YAML, and errors that never quote a source line.

`read_yaml` swaps each `${...}` for a plain token before YAML sees it (see `Shield` in
`config/interpolate.py`) and puts it back in every scalar, so references survive unquoted. PyYAML
would let the last of two equal keys win; here a duplicate key is an error. A YAML error names its
line and column, never the line itself: it may hold a literal secret.
"""

from __future__ import annotations

import re

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
        problem = plain_yaml_problem(shield.restore(exc.problem or "syntax error"))
        return f"invalid YAML at line {mark.line + 1}, column {column + 1}: {problem}"
    return "invalid YAML"


# PyYAML's words for a problem, and what they mean to someone editing a config. The parser's
# words stay the fallback, in parentheses, for a problem not listed.
_PLAIN = (
    (
        r"mapping values are not allowed here",
        "a ':' where none can be: quote a value that holds ': ', or indent this line as its key",
    ),
    (r"found character '\\t' that cannot start any token", "a tab: indent with spaces only"),
    (
        r"found character '(.)' that cannot start any token",
        "a value cannot start with '{0}': put it in quotes",
    ),
    (r"expected ',' or '\]', but got", "a [list] is not closed with ']', or lacks a ','"),
    (r"expected ',' or '\}', but got", "a {{mapping}} is not closed with '}}', or lacks a ','"),
    (
        r"expected <block end>|did not find expected key",
        "this line is not indented like the lines above it",
    ),
    (r"did not find expected '-' indicator", "this line does not line up with the list above"),
    (
        r"found unknown escape character",
        "an unknown backslash escape in double quotes: use single quotes, or write '\\\\'",
    ),
    (r"found undefined alias '(.*)'", "'*{0}' refers to an anchor '&{0}' that is not defined"),
    (r"found unexpected end of stream", "the file ends inside a quoted value: close the quote"),
    (r"could not find expected ':'", "a key without ':', or a quoted value not closed"),
    (
        r"expected '<document start>', but found",
        "something follows the end of the settings: a stray bracket or quote",
    ),
    (r"duplicate key '(.*)'", "the key '{0}' appears twice in the same mapping"),
)


def plain_yaml_problem(problem: str) -> str:
    """PyYAML's problem, said plainly (the list above), else as it is, marked as the parser's."""
    for pattern, plain in _PLAIN:
        if match := re.match(pattern, problem):
            return plain.format(*match.groups())
    return f"not valid YAML here (the parser says: {problem})"


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

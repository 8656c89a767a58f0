"""Headers put on every forwarded request, compiled when the config loads so they cannot fail later.

Same idea as oauth2-proxy's `pkg/header/injector.go`: every template is parsed, and every name it
reads is checked against what the route will have (its credentials, the values its login always
captures), before the first request. `apply` then only looks values up and joins strings.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Final

from authproxy.auth.grant import Grant
from authproxy.auth.templates import Template, compile_template
from authproxy.auth_spec import AuthSpec
from authproxy.http_syntax import is_token

Compiled = tuple[tuple[str, Template], ...]


class CompiledInjector:
    """Sets a route's auth headers on an outgoing request.

    `headers` (from `InjectSpec.headers`) replace any client copy, matched case-insensitively;
    `defaults` are set only when the client sent no header of that name.
    """

    __slots__ = (
        "_credentials",
        "_default_lowered",
        "_defaults",
        "_headers",
        "default_names",
        "names",
    )

    def __init__(self, headers: Compiled, defaults: Compiled, credentials: Mapping[str, str]):
        self._headers = headers
        self._defaults = defaults
        self._credentials = dict(credentials)
        # Lower-cased names, read on every request: built once. `names` are always set, so
        # client copies never get through; `default_names` are set only when the client sent
        # none, so a client's own value for one of those is kept on purpose.
        self.names: Final = frozenset(name.lower() for name, _ in headers)
        self._default_lowered = tuple(name.lower() for name, _ in defaults)
        self.default_names: Final = frozenset(self._default_lowered)

    @classmethod
    def from_spec(cls, spec: AuthSpec) -> CompiledInjector:
        """Compile `spec.inject`; raises ValueError naming the header and the problem."""
        available = set(spec.credentials)
        optional: set[str] = set()
        if not spec.is_static:
            available.update(c.name for c in spec.captures if c.required)
            optional.update(c.name for c in spec.captures if not c.required)
        headers = _compile(spec.inject.headers, available, optional)
        defaults = _compile(spec.inject.defaults, available, optional)
        if both := {n.lower() for n, _ in headers} & {n.lower() for n, _ in defaults}:
            raise ValueError(f"inject: {', '.join(sorted(both))} set both as header and default")
        credentials = {name: secret.reveal() for name, secret in spec.credentials.items()}
        return cls(headers, defaults, credentials)

    def accepts(self, grant: Grant) -> bool:
        """True when `grant` holds every value the templates read that no credential supplies.

        Always true for grants from `flow.py`; a grant persisted under an older config may not be.
        """
        names = {name for _, t in self._headers + self._defaults for name in t.names}
        return names <= self._credentials.keys() | grant.values.keys()

    def apply(self, headers: MutableMapping[str, str], grant: Grant) -> None:
        """Set the auth headers on `headers` (a CIMultiDict or any str mapping) from `grant`.

        Cannot fail for a Grant produced by `flow.py` for the same spec: `from_spec` checked
        every name.
        """
        values = {**self._credentials, **grant.values}
        ours = self.names
        for key in [key for key in headers if key.lower() in ours]:
            if key in headers:  # a CIMultiDict drops every case variant on the first `del`
                del headers[key]
        for name, template in self._headers:
            headers[name] = template.render(values)
        if self._defaults:
            present = {key.lower() for key in headers}
            for (name, template), lowered in zip(
                self._defaults, self._default_lowered, strict=True
            ):
                if lowered not in present:
                    headers[name] = template.render(values)

    def __repr__(self) -> str:
        names = ", ".join(name for name, _ in self._headers + self._defaults)
        return f"CompiledInjector({names})"


def _compile(templates: Mapping[str, str], available: set[str], optional: set[str]) -> Compiled:
    compiled = []
    for name, text in templates.items():
        if not is_token(name):  # RFC 9110 §5.6.2: a field name is a token
            raise ValueError(f"inject header {name!r}: not a valid HTTP header name")
        try:
            template = compile_template(text)
        except ValueError as exc:
            raise ValueError(f"inject header {name!r}: {exc}") from None
        for unknown in sorted(template.names - available):
            why = (
                "a value the login may not return"
                if unknown in optional
                else "neither a credential nor a captured value"
            )
            known = ", ".join(sorted(available)) or "none"
            raise ValueError(f"inject header {name!r}: {{{unknown}}} is {why} (known: {known})")
        compiled.append((name, template))
    return tuple(compiled)

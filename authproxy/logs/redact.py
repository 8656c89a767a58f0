"""The one redaction processor every log event passes through, and what it treats as secret.

Redacting at call sites fails at the next new log line, so it happens here, once: values under
secret-shaped keys are masked, query-string values are masked, and every registered secret value
(credentials from the config, tokens the engine obtained) is masked wherever it appears in a
string. One access line is written per request, so this is kept cheap: numbers skip it, and all
strings of an event are searched for secrets in one pass.
"""

from __future__ import annotations

from typing import Any

from structlog.typing import EventDict

from authproxy.secrets import MASK, SecretRegistry

SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "password",
        "passwd",
        "secret",
        "token",
        "access_token",
        "access-token",
        "refresh_token",
        "auth_token",
        "api_key",
        "api_token",
        "application_token",
        "x-api-token",
        "x-authproxy-key",
        "client_secret",
    }
)
# Fields that carry a request target: their query values are masked (tokens travel in queries).
TARGET_KEYS = frozenset({"path", "url", "target", "location", "referer"})
# Values of these types cannot carry a secret: they pass without a look.
_PLAIN = frozenset({int, float, bool, type(None)})
# Joins an event's strings for one secret search; a secret spanning two fields only makes the
# search hit, and the per-field scrub that follows is exact.
_SEPARATOR = "\x00"


def mask_query(target: str) -> str:
    """`/x?a=1&b=2` → `/x?a=<redacted>&b=<redacted>`; keys stay, so the log stays useful."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        parts.append(f"{name}={MASK}" if eq else name)
    return f"{path}?{'&'.join(parts)}"


class Redact:
    """Mask secret-shaped keys, query values, and every live secret value in strings.

    Nothing derived from the registry is cached here: a token registered a moment ago is
    masked in the very next event.
    """

    def __init__(self, secrets: SecretRegistry) -> None:
        self._secrets = secrets
        # Event keys are names in code, so few: whether each is secret-shaped, decided once.
        self._secret_key: dict[str, bool] = {}

    def _is_secret_key(self, key: str) -> bool:
        secret = key.lower() in SECRET_KEYS
        if len(self._secret_key) < 4096:
            self._secret_key[key] = secret
        return secret

    def __call__(self, _logger: object, _method: str, event: EventDict) -> EventDict:
        strings: list[str] = []
        known = self._secret_key
        for key, value in event.items():
            if value is None:
                continue
            kind = type(value)
            secret = known.get(key)
            if secret is None:
                secret = self._is_secret_key(key)
            if secret:
                event[key] = MASK
            elif kind is str:
                if key in TARGET_KEYS and "?" in value:
                    value = event[key] = mask_query(value)
                strings.append(value)
            elif kind not in _PLAIN:
                event[key] = self._clean(key, value)
        if strings:
            # One search over all strings; only an event that holds a secret is scrubbed per field.
            joined = _SEPARATOR.join(strings)
            scrub = self._secrets.scrub
            if scrub(joined) != joined:
                for key, value in event.items():
                    if type(value) is str:
                        event[key] = scrub(value)
        return event

    def _clean(self, key: str, value: Any) -> Any:
        if key.lower() in SECRET_KEYS and value is not None:
            return MASK
        if isinstance(value, str):
            if key in TARGET_KEYS:
                value = mask_query(value)
            return self._secrets.scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(key, item) for item in value]
        if isinstance(value, BaseException):
            return self._secrets.scrub(repr(value))
        if type(value) in _PLAIN:
            return value
        # Anything else is rendered by its repr: scrub that text rather than trust it.
        return self._secrets.scrub(repr(value))

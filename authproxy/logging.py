"""structlog set-up and the one redaction processor every event passes through.

Redacting at call sites fails at the next new log line, so it happens here, once: values under
secret-shaped keys are masked, query-string values are masked, and every registered secret value
(credentials from the config, tokens the engine obtained) is masked wherever it appears in a
string. Standard-library records (aiohttp's own) are rendered by the same chain.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

from authproxy.secrets import MASK, REGISTRY, SecretRegistry

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
TARGET_KEYS = frozenset({"path", "url", "target", "location"})


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
    """Mask secret-shaped keys, query values, and every live secret value in strings."""

    def __init__(self, secrets: SecretRegistry) -> None:
        self._secrets = secrets

    def __call__(self, _logger: object, _method: str, event: EventDict) -> EventDict:
        return {key: self._clean(key, value) for key, value in event.items()}

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
        return value


def configure_logging(
    *, level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """JSON lines when the stream is not a terminal (or `json=True`), console output otherwise."""
    out = stream if stream is not None else sys.stdout
    as_json = json if json is not None else not out.isatty()
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Processor] = [
        structlog.processors.format_exc_info,
        Redact(REGISTRY),
        renderer,
    ]
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        # No caching: a cached module-level logger keeps the stream and processors of the first
        # configuration, so configuring again (tests, a CLI that reconfigures) silently wrote to
        # the old stream. One access line per request makes the saved microseconds irrelevant.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
            foreign_pre_chain=[*shared[1:], structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)

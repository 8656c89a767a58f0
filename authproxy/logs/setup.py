"""structlog set-up: the processor chain, its JSON and timestamp processors, and `info_fast`.

Every event, structlog's and the standard library's (aiohttp's own), is rendered by the same chain,
which ends in the one redaction processor (logs/redact.py). One access line is written per request,
so the chain is kept cheap: timestamps are formatted once a second, JSON is rendered by one reused
encoder, and lines are written by `LineWriter` in batches (one write per event-loop iteration).
"""

from __future__ import annotations

import json
import json.encoder
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

from authproxy.logs.access import CombinedLogLine
from authproxy.logs.redact import Redact
from authproxy.logs.writer import LineWriter, WriterHandler
from authproxy.secrets import REGISTRY


class IsoTimestamp:
    """`timestamp`: ISO 8601 UTC with microseconds; the seconds part is formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: object, _method: str, event: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1e6):06d}Z"
        return event


def _json_fallback(value: object) -> object:
    # structlog's own rule: an object may say how it wants to be logged, else its repr.
    as_log = getattr(value, "__structlog__", None)
    return as_log() if callable(as_log) else repr(value)


class JsonLine:
    """The event as one JSON object, by an encoder built once (json.dumps builds one per call).

    `JSONEncoder.encode` builds its C encoder anew for every call, with a dict to detect
    circular references; the C encoder built once here, without that check, renders an access
    line in about 3 µs instead of 4 (same text: ASCII, `", "` and `": "`). A circular event cannot
    reach it: the redaction before it rebuilds containers, and would recurse first.
    """

    def __init__(self) -> None:
        self._fallback = json.JSONEncoder(default=_json_fallback).encode
        # Not in the typing stubs; None on interpreters without the _json accelerator.
        make = getattr(json.encoder, "c_make_encoder", None)
        self._encode: Callable[[object, int], list[str]] | None = None
        if make is not None:
            # markers (None: no circular check), default, string encoder (ensure_ascii), indent,
            # key separator, item separator, sort_keys, skipkeys, allow_nan: JSONEncoder's own.
            self._encode = make(
                None, _json_fallback, json.encoder.encode_basestring_ascii, None,
                ": ", ", ", False, False, True,
            )  # fmt: skip

    def __call__(self, _logger: object, _method: str, event: EventDict) -> str:
        encode = self._encode
        if encode is None or type(event) is not dict:
            return self._fallback(event)
        return "".join(encode(event, 0))


@dataclass(frozen=True, slots=True)
class _Direct:
    """The chain `configure_logging` installed, split where `info_fast` defers the rest."""

    processors: list[Processor]  # the whole chain, as structlog holds it
    now: tuple[Processor, ...]  # what reads the moment of the call: context, level, time
    later: tuple[Processor, ...]  # redaction and rendering, run at the writer's flush
    writer: LineWriter
    info_enabled: bool
    tail: tuple[Processor, ...]  # `later` of every other event: the access line may differ


_DIRECT: _Direct | None = None


def info_fast(logger: Any, event: str, **fields: Any) -> None:
    """`logger.info(event, **fields)` for the one event logged per request.

    structlog assembles a bound logger on every call through a lazy proxy (the price of loggers
    that follow reconfiguration), and that machinery cost more than the processors themselves.
    While the chain `configure_logging` installed is still structlog's, the event runs through
    exactly those processors (Redact included) into the same writer, the last ones batched at
    the writer's flush; after any other configuration (`capture_logs`, `reset_defaults`) it goes
    through `logger` as usual.
    """
    direct = _DIRECT
    if direct is None or structlog.get_config()["processors"] is not direct.processors:
        logger.info(event, **fields)
        return
    if not direct.info_enabled:
        return
    fields["event"] = event
    processed: Any = fields
    try:
        for processor in direct.now:
            processed = processor(direct.writer, "info", processed)
    except structlog.DropEvent:
        return
    direct.writer.defer(direct.later, processed)


def configure_logging(
    *, level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """JSON lines when the stream is not a terminal (or `json=True`), console output otherwise."""
    out = stream if stream is not None else sys.stdout
    as_json = json if json is not None else not out.isatty()
    renderer: Processor = (
        JsonLine() if as_json else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        IsoTimestamp(),
    ]
    tail: list[Processor] = [
        structlog.processors.format_exc_info,
        Redact(REGISTRY),
        renderer,
    ]
    writer = LineWriter(out)
    processors = [*shared, *tail]
    threshold = logging.getLevelName(level.upper())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # One writer per configuration, handed out as is: a factory call per event is cheap, and
        # a logger used before `configure` runs again still follows the new configuration,
        # which caching loggers on first use would break (tests and the CLI reconfigure).
        logger_factory=writer.factory,
        cache_logger_on_first_use=False,
    )
    handler = WriterHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
            # merge_contextvars included: aiohttp's own lines carry worker=<n> too.
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    global _DIRECT
    _DIRECT = _Direct(
        processors,
        tuple(shared),
        tuple(tail),
        writer,
        info_enabled=threshold <= logging.INFO,
        tail=tuple(tail),
    )


def use_access_format(log_format: str) -> None:
    """The config's `log_format`: `clf` writes each access line in the combined log format
    (logs/access.py), after the same redaction; anything else, like every other event."""
    global _DIRECT
    direct = _DIRECT
    if direct is None:
        return
    later = direct.tail
    if log_format == "clf":
        # The renderer is the chain's last step; redaction and the rest run before it.
        later = (*direct.tail[:-1], CombinedLogLine())
    _DIRECT = replace(direct, later=later)

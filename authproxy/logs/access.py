"""The access line in the combined log format (`log_format: clf`), for tools that read web logs.

    ::1 - alice [28/Nov/2026:10:47:13 +0000] "GET /api/x?q=<redacted> HTTP/1.1" 200 233 "-" "curl"

It renders the same `request` event as the structured line, after the one redaction processor
(logs/redact.py) has masked query values in the path and referer and every live secret in the
user agent. Quotes, backslashes and control characters in the quoted fields are escaped as
Apache does (`\\"`, `\\\\`, `\\xhh`), so a client cannot forge a line of its own in the log.
"""

from __future__ import annotations

import re

from structlog.typing import EventDict

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\" + char if char in '"\\' else f"\\x{ord(char):02x}"


def quoted(value: object) -> str:
    """A field for a quoted CLF slot: `-` when absent, escaped otherwise."""
    if value is None or value == "":
        return "-"
    return _UNSAFE.sub(_escape, str(value))


def bare(value: object) -> str:
    """A field for an unquoted slot (host, user): no spaces or quotes may split the line."""
    if value is None or value == "":
        return "-"
    return _UNSAFE.sub(_escape, str(value)).replace(" ", "\\x20")


class CombinedLogLine:
    """A structlog renderer: the access event as one combined-log-format line."""

    def __init__(self) -> None:
        self._second = ""
        self._stamp = ""

    def _time(self, timestamp: object) -> str:
        # `2026-11-28T10:47:13.123456Z` (logs/setup.IsoTimestamp), formatted once a second;
        # month names from a table, not strftime's locale.
        text = str(timestamp)
        second = text[:19]
        if second != self._second and len(second) == 19:
            year, month, day, clock = second[:4], int(second[5:7]), second[8:10], second[11:]
            self._stamp = f"{day}/{_MONTHS[month - 1]}/{year}:{clock} +0000"
            self._second = second
        return self._stamp

    def __call__(self, _logger: object, _method: str, event: EventDict) -> str:
        request = f"{event.get('method')} {event.get('path')} {event.get('protocol') or 'HTTP/1.1'}"
        size = event.get("bytes_out") or "-"
        return (
            f"{bare(event.get('remote'))} - {bare(event.get('client'))} "
            f'[{self._time(event.get("timestamp"))}] "{quoted(request)}" '
            f"{event.get('status')} {size} "
            f'"{quoted(event.get("referer"))}" "{quoted(event.get("user_agent"))}"'
        )

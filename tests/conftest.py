"""Fixtures every folder of the tests uses."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from authproxy.logs.setup import configure_logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The real logging pipeline, rendering JSON into a StringIO; undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)

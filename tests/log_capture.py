"""Logs as the processes write them (services/platform/logs.py), captured for a test.

with captured_logs() as lines:   # JSON, whatever the terminal
    ...
    assert any(line["event"] == "request" for line in lines())
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from services.platform.logs import configure_logging
from services.platform.settings import Settings

Lines = Callable[[], list[dict[str, Any]]]


@contextmanager
def captured_logs(settings: Settings | None = None, **overrides: Any) -> Iterator[Lines]:
    """Configure the process's logging onto a buffer; restore the logging found after."""
    base = settings if settings is not None else Settings()
    chosen = base.model_copy(update={"log_format": "json", **overrides})
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging(chosen, buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


@contextmanager
def captured_text(**overrides: Any) -> Iterator[Callable[[], str]]:
    """As `captured_logs`, the raw text (for the console format)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging(Settings().model_copy(update=overrides), buffer)
    try:
        yield buffer.getvalue
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()

"""Logs: one JSON object a line on stderr (structlog), for every process and every library.

`configure_logging(settings)` is called once by each composition root (`creditledger ...` in
services/cli.py, an API worker in services/api/workers.py) before anything logs. It installs
one handler on the root logger whose formatter is structlog's: the project's modules keep
logging through the standard library (`logging.getLogger("creditledger....")`, with `extra=`
for fields), and aiokafka's, uvicorn's and asyncpg's records come out in the same shape.

Each line carries `timestamp` (UTC, ISO 8601), `level`, `logger`, `event` (the message), the
fields given in `extra=` or bound for the task (`bound_contextvars`), the `request_id` of the
HTTP request being answered (`REQUEST_ID`, set by services/api/metrics.py: one context variable,
read only when a line is written), and `exception` (the traceback as text) when there is one.

`CREDITLEDGER_LOG_FORMAT`: `json` (the default; what a log shipper reads) or `console` (aligned
text for people); unset, a terminal gets `console`. `CREDITLEDGER_LOG_LEVEL`: the root level
(INFO by default). aiokafka and httpx narrate at INFO (every group join, every request): they
log from WARNING, whatever the level.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
import time
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import Processor

from services.platform.settings import Settings

QUIET_LOGGERS = ("aiokafka", "httpx", "httpcore")


def _drop_color_message(_: Any, __: str, event: structlog.typing.EventDict) -> Any:
    event.pop("color_message", None)  # uvicorn's `extra=`: the message again, with ANSI codes
    return event


# The id of the HTTP request being answered (services/api/metrics.py sets it per request): one
# context variable set, instead of structlog's bound contextvars (a context manager and a
# variable per key, ~6 us a request), read only when a line is written.
REQUEST_ID: ContextVar[str | None] = ContextVar("creditledger_request_id", default=None)


def _add_request_id(_: Any, __: str, event: structlog.typing.EventDict) -> Any:
    """As a bound context variable: a field given with the line (or bound) wins."""
    request_id = REQUEST_ID.get()
    if request_id is not None and "request_id" not in event:
        event["request_id"] = request_id
    return event


# Every line, ours or a library's: bound context, level, logger, `extra=` fields, UTC time.
_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    _add_request_id,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    _drop_color_message,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _json(event: Any, **_: Any) -> str:
    # default=str: a datetime, UUID or Decimal in `extra=` is written, never refused.
    return orjson.dumps(event, default=str).decode()


def _formatter(log_format: str) -> logging.Formatter:
    renderer: Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json)
        tail: list[Processor] = [structlog.processors.format_exc_info]
    else:  # plain tracebacks: a rich one would print local variables (secrets among them)
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        tail = []
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tail,
            renderer,
        ],
    )


def resolved_format(settings: Settings, stream: TextIO) -> str:
    if settings.log_format is not None:
        return settings.log_format
    return "console" if stream.isatty() else "json"


ACCESS_LOGGER = "creditledger.access"
# The JSON handler configure_logging installed, which `access_line` writes to directly.
_json_handler: logging.StreamHandler[TextIO] | None = None
# Access lines wait at most this many for the event loop's current pass to end.
MAX_PENDING_ACCESS_LINES = 512


class AccessLines:
    """Access lines written once per pass of the event loop: a request's line waits (in order)
    until the callbacks that were ready with it have run, then all of that pass's go in one
    write and one flush. A write is a system call (~5 us, the largest part of the line); under
    load a pass answers several requests. Bounded: the `max_lines`-th pending line writes them
    all at once. Never lost on a clean stop: written when the handler is replaced
    (`configure_logging`) and at interpreter exit (`atexit`, before logging's own shutdown);
    outside a running event loop a line is written at once."""

    def __init__(self, max_lines: int = MAX_PENDING_ACCESS_LINES) -> None:
        self.max_lines = max_lines
        self.pending: list[str] = []
        self.handler: logging.StreamHandler[TextIO] | None = None
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # a line is added on one thread while another flushes

    def add(self, handler: logging.StreamHandler[TextIO], text: str) -> None:
        if handler is not self.handler:
            self.flush()
            self.handler = handler
        with self._lock:
            self.pending.append(text)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if len(self.pending) >= self.max_lines:
            self.flush()
        elif self._scheduled_on is not loop:  # a loop closed with a flush due is not waited for
            self._scheduled_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled_on = None
        with self._lock:
            handler, pending = self.handler, self.pending
            if handler is None or not pending:
                return
            self.pending = []
        text = "".join(pending)
        with handler.lock or nullcontext():  # as StreamHandler.emit: one writer at a time
            try:
                handler.stream.write(text)
                handler.stream.flush()
            except (OSError, ValueError):  # a closed stream: as logging, never the caller's error
                pass


_access_lines = AccessLines()
atexit.register(_access_lines.flush)  # after logging's import: runs before logging.shutdown


def flush_access_lines() -> None:
    """Write the access lines waiting for the end of the event loop's pass now."""
    _access_lines.flush()


class _UtcStamp:
    """`datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")` at a tenth of its cost: the
    seconds are formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"


_utc_stamp = _UtcStamp()
_access_logger = logging.getLogger(ACCESS_LOGGER)  # once: `getLogger` takes logging's lock


def access_line(fields: dict[str, Any]) -> None:
    """One access-log line (`event` "request", logger `creditledger.access`) with `fields`.

    In JSON format it is written straight to the root handler's stream, in the shape the
    formatter gives every line (timestamp, level, logger, event, then the fields), at the end
    of the event loop's pass (`AccessLines`): a request answered in ~100 us spent ~50 us more
    on a LogRecord and structlog's processor chain (the read API's balance reads fell from
    9,100 to 6,200/s with the access log on), and ~5 us on its own write. In console format,
    or once another configuration replaced that handler, it goes through `logging` like any
    other line."""
    logger = _access_logger
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _json_handler
    if handler is None or handler not in logging.getLogger().handlers:
        logger.info("request", extra=fields)
        return
    line = {
        "event": "request", "level": "info", "logger": ACCESS_LOGGER,
        "timestamp": _utc_stamp.now(), **fields,
    }  # fmt: skip
    text = orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE).decode()
    _access_lines.add(handler, text)


class _LineHandler(logging.StreamHandler[TextIO]):
    """The root handler: the access lines still waiting go first, so the stream stays in
    the order the lines were made."""

    def emit(self, record: logging.LogRecord) -> None:
        if _access_lines.pending and _access_lines.handler is self:
            _access_lines.flush()
        super().emit(record)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route every logger of the process through one structlog formatter on `stream`
    (stderr by default). Idempotent: a second call replaces the first's handler."""
    global _json_handler
    _access_lines.flush()  # the lines of the handler being replaced, to its stream
    out = stream if stream is not None else sys.stderr
    handler = _LineHandler(out)
    log_format = resolved_format(settings, out)
    handler.setFormatter(_formatter(log_format))
    _json_handler = handler if log_format == "json" else None
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_creditledger", False)]:
        root.removeHandler(old)
    handler._creditledger = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own handlers (when something configured them) would print plain text.
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

"""Every log line is one JSON object (services/platform/logs.py): the project's, the libraries'
(aiokafka, uvicorn), with `extra=` fields, the bound context and tracebacks; `console` is text."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from datetime import datetime
from typing import TextIO

import structlog
from structlog.contextvars import bound_contextvars

from services.platform.logs import (
    ACCESS_LOGGER,
    REQUEST_ID,
    AccessLines,
    access_line,
    flush_access_lines,
    resolved_format,
)
from services.platform.settings import Settings
from tests.log_capture import captured_logs, captured_text


def test_a_project_line_is_json_with_its_fields() -> None:
    with captured_logs() as lines:
        logging.getLogger("creditledger.writer").info("applied %d records", 3, extra={"n": 3})
    (line,) = lines()
    assert line["event"] == "applied 3 records"
    assert line["level"] == "info" and line["logger"] == "creditledger.writer"
    assert line["n"] == 3
    stamped = datetime.fromisoformat(line["timestamp"])
    offset = stamped.utcoffset()
    assert offset is not None and offset.total_seconds() == 0  # UTC


def test_library_lines_are_json_too() -> None:
    with captured_logs() as lines:
        logging.getLogger("aiokafka.consumer").warning("heartbeat failed")
        logging.getLogger("aiokafka.consumer").info("joined group")  # quiet below WARNING
        logging.getLogger("uvicorn.error").error("port taken", extra={"color_message": "\x1b[1m"})
    assert [(line["logger"], line["event"]) for line in lines()] == [
        ("aiokafka.consumer", "heartbeat failed"),
        ("uvicorn.error", "port taken"),
    ]
    assert "color_message" not in lines()[-1]


def test_bound_context_and_structlog_loggers() -> None:
    with captured_logs() as lines:
        with bound_contextvars(request_id="req-1"):
            logging.getLogger("creditledger.api").info("inside")
            structlog.get_logger("creditledger.api").info("native", account_id="acme")
        logging.getLogger("creditledger.api").info("outside")
    inside, native, outside = lines()
    assert inside["request_id"] == native["request_id"] == "req-1"
    assert native["account_id"] == "acme" and native["logger"] == "creditledger.api"
    assert "request_id" not in outside


def test_a_traceback_stays_on_its_line() -> None:
    with captured_logs() as lines:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("creditledger.writer").exception("batch failed")
    (line,) = lines()
    assert "ValueError: boom" in line["exception"]


def test_the_level_is_a_setting() -> None:
    with captured_logs(log_level="WARNING") as lines:
        logging.getLogger("creditledger.writer").info("hidden")
        logging.getLogger("creditledger.writer").warning("shown")
    assert [line["event"] for line in lines()] == ["shown"]
    assert Settings(log_level="debug").log_level == "DEBUG"


def test_console_is_text_for_people() -> None:
    with captured_text(log_format="console") as text:
        logging.getLogger("creditledger.writer").info("hello")
    assert "hello" in text() and not text().lstrip().startswith("{")


def test_unset_format_is_json_unless_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    unset = Settings(log_format=None)
    assert resolved_format(unset, io.StringIO()) == "json"
    assert resolved_format(unset, Terminal()) == "console"
    assert resolved_format(Settings(log_format="json"), Terminal()) == "json"


def test_the_access_line_has_the_shape_of_a_line_through_the_formatter() -> None:
    fields = {"method": "GET", "path": "/v1/x", "status": 200, "duration_ms": 0.5, "client": None}
    with captured_logs() as lines:
        access_line(fields)  # straight to the handler's stream
        logging.getLogger(ACCESS_LOGGER).info("request", extra=fields)  # the formatter's chain
    fast, formatted = lines()
    # (`message`: pytest's own log capture formats the record first, which sets it)
    assert fast.keys() == formatted.keys() - {"message"}
    for key in fast.keys() - {"timestamp"}:
        assert fast[key] == formatted[key], key
    assert fast["timestamp"].endswith("Z") and datetime.fromisoformat(fast["timestamp"])


def test_the_access_line_follows_the_level_and_the_format() -> None:
    with captured_logs(log_level="WARNING") as lines:
        access_line({"status": 200})
    assert lines() == []
    with captured_text(log_format="console") as text:  # through logging, as text
        access_line({"status": 204})
    assert "request" in text() and "204" in text()


def test_the_request_being_answered_names_its_lines() -> None:
    with captured_logs() as lines:
        bound = REQUEST_ID.set("req-2")
        try:
            logging.getLogger("creditledger.api").info("inside")
            structlog.get_logger("creditledger.api").info("native")
            logging.getLogger("creditledger.api").info("given", extra={"request_id": "other"})
        finally:
            REQUEST_ID.reset(bound)
        logging.getLogger("creditledger.api").info("outside")
    inside, native, given, outside = lines()
    assert inside["request_id"] == native["request_id"] == "req-2"
    assert given["request_id"] == "other"  # a field given with the line wins, as when bound
    assert "request_id" not in outside


async def test_access_lines_wait_for_the_end_of_the_loop_pass_in_order() -> None:
    with captured_logs() as lines:
        for status in (200, 201, 202):
            access_line({"status": status})
        assert lines() == []  # not written yet: one write for the pass
        await asyncio.sleep(0)  # the pass ends
        assert [line["status"] for line in lines()] == [200, 201, 202]
        access_line({"status": 203})
        logging.getLogger("creditledger.api").warning("later")  # the waiting line goes first
        assert [line.get("status", line["event"]) for line in lines()[3:]] == [203, "later"]
        await asyncio.sleep(0)
        assert len(lines()) == 5  # nothing written twice


async def test_waiting_access_lines_are_bounded_and_flushed_on_demand() -> None:
    buffer, other_buffer = io.StringIO(), io.StringIO()
    handler: logging.StreamHandler[TextIO] = logging.StreamHandler(buffer)
    other: logging.StreamHandler[TextIO] = logging.StreamHandler(other_buffer)
    waiting = AccessLines(max_lines=3)
    waiting.add(handler, "1\n")
    waiting.add(handler, "2\n")
    assert buffer.getvalue() == ""
    waiting.add(handler, "3\n")  # the bound: all at once
    assert buffer.getvalue() == "1\n2\n3\n" and waiting.pending == []
    waiting.add(handler, "4\n")
    waiting.flush()
    assert buffer.getvalue().splitlines() == ["1", "2", "3", "4"]
    waiting.add(handler, "5\n")
    waiting.add(other, "6\n")  # another handler: the first's lines go to the first
    assert buffer.getvalue().splitlines()[-1] == "5"
    await asyncio.sleep(0)
    assert other_buffer.getvalue() == "6\n"


async def test_replacing_the_handler_writes_the_waiting_lines_to_the_old_one() -> None:
    with captured_logs() as first:
        access_line({"status": 200})
        with captured_logs() as second:
            assert [line["status"] for line in first()] == [200]
            access_line({"status": 201})
            flush_access_lines()
            assert [line["status"] for line in second()] == [201]


def test_no_access_line_is_lost_when_the_process_stops_cleanly() -> None:
    # The loop stops right after the lines are made, before its next pass would write them.
    program = """
import asyncio, sys
from services.platform.logs import access_line, configure_logging
from services.platform.settings import Settings
configure_logging(Settings(log_format="json"), sys.stdout)
loop = asyncio.new_event_loop()
def answer():
    for status in range(200, 210):
        access_line({"status": status})
    loop.stop()
loop.call_soon(answer)
loop.run_forever()
loop.close()
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    statuses = [json.loads(line)["status"] for line in done.stdout.splitlines()]
    assert statuses == list(range(200, 210)), done.stderr

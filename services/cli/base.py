"""What every command shares: the help format, exit codes, one-line errors, instants."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

# Exit codes: documented in `creditledger --help` and docs/operations.md. Scripts branch on them.
OK = 0
FAILED = 1  # the command ran and its answer is "no": drift found, replay differs, target missed
USAGE = 2  # bad arguments or a bad input file (argparse's own code for usage errors)
DATABASE_UNREACHABLE = 3
KAFKA_UNREACHABLE = 4
NOT_FOUND = 5  # nothing there: no ledger entry, no local stack, a price version refused
LOG_GAP = 6  # replay / reprice refused: the Kafka log lacks records the ledger covers
INTERNAL = 70  # a bug (sysexits' EX_SOFTWARE): one line, `--traceback` shows the rest
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

EXIT_CODES_HELP = f"""exit codes:
  {OK}   success
  {FAILED}   the command ran and found a difference (audit drift, replay differs, bench target)
  {USAGE}   bad arguments or input file
  {DATABASE_UNREACHABLE}   Postgres unreachable (CREDITLEDGER_DATABASE_URL)
  {KAFKA_UNREACHABLE}   Kafka unreachable (CREDITLEDGER_KAFKA_BOOTSTRAP)
  {NOT_FOUND}   not found or refused (no ledger entry, no local stack running, ...)
  {LOG_GAP}   refused: the Kafka log no longer holds the range the ledger covers
  {INTERNAL}  internal error (run again with --traceback and report it)
  {INTERRUPTED} interrupted"""


class CliError(Exception):
    """A failure the user can act on: printed as one line, the process exits with `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions are wrapped to the terminal; text with indented lines (the examples, the
    exit codes) keeps its lines. Every option with a default says it, except flags and options
    whose absence means "none"."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n  " in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shows_default = (
            "%(default)" not in text
            and default not in (None, False, argparse.SUPPRESS)
            and (action.option_strings or action.nargs in ("?", "*"))
        )
        return f"{text} (default: %(default)s)" if shows_default else text


class Parser(argparse.ArgumentParser):
    """Every parser and sub-parser (also those other packages add) formats help this way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def examples(*lines: str) -> str:
    """An epilog: `examples:` and one indented command line each."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


# Instants: the forms the API takes in its query parameters (services/api/reads/common.py
# `parse_instant`, shared here), plus `now`.
INSTANT_HELP = (
    "ISO-8601: 2026-11-21T10:00:00Z, an offset (+01:00), a date (2026-11-21 = its 00:00 UTC) or now"
)
END_INSTANT_HELP = (
    "ISO-8601: 2026-11-21T10:00:00Z, an offset (+01:00), a date (2026-11-21 = up to the end of "
    "that UTC day) or now"
)


def _instant(text: str, *, end: bool) -> datetime:
    from services.api.problems import Problem
    from services.api.reads.common import parse_instant

    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        moment = parse_instant(text, "value", end=end)
    except Problem as problem:
        reason = problem.detail.removeprefix("value: ")
        raise argparse.ArgumentTypeError(f"{text!r}: {reason} ({INSTANT_HELP})") from None
    assert moment is not None  # parse_instant returns None only for None
    return moment


def instant(text: str) -> datetime:
    """A point in time; a bare date is that day's 00:00 UTC."""
    return _instant(text, end=False)


def end_instant(text: str) -> datetime:
    """The exclusive end of a range; a bare date includes that day (the next 00:00 UTC)."""
    return _instant(text, end=True)

"""Every command of `creditledger` has its own help (found from the parser, not a list kept
here), `--version` answers, errors are one line with their documented exit code, and instants
take the API's forms."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.api.problems import Problem
from services.api.reads.common import parse_instant
from services.cli import base, build_parser, main, package_version

ROOT = Path(__file__).resolve().parents[2]


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


COMMANDS = [path for path, _ in _commands(build_parser())]


def test_the_parser_has_the_commands_of_the_contract() -> None:
    # Not the list the help test runs (that one comes from the parser): a floor it must reach.
    names = {" ".join(path) for path in COMMANDS}
    for command in ("stack up", "stack env", "serve", "projections rebuild", "projections audit",
                    "balance", "export", "replay", "reprice", "prices set", "prices show",
                    "bench", "schemas export"):  # fmt: skip
        assert command in names


def _help(path: tuple[str, ...]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    assert exited.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "creditledger")
def test_every_command_prints_its_own_usage_line(path: tuple[str, ...]) -> None:
    text = _help(path)
    usage = " ".join(("usage: creditledger", *path))
    assert text.startswith(usage + " ") or text.startswith(usage + "\n"), text[:200]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "creditledger")
def test_every_option_is_explained_and_leaf_commands_show_examples(path: tuple[str, ...]) -> None:
    parser = dict(_commands(build_parser()))[path]
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            assert action.help, f"creditledger {' '.join(path)}: {action.dest} has no help"
    assert parser.epilog and "examples:" in parser.epilog, f"{path}: no examples"
    assert parser.description, f"{path}: no description"


def test_defaults_are_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "500")  # one line per option: no default split by wrapping
    text = _help(("export",))
    assert "(default: csv)" in text and "(default: recorded)" in text
    assert "(default: None)" not in text  # an option whose absence means "none" says so itself


def test_version() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert out.getvalue().strip() == f"creditledger {package_version()}"
    assert package_version() != "unknown"


def test_exit_codes_are_distinct_and_documented() -> None:
    codes = [base.OK, base.FAILED, base.USAGE, base.DATABASE_UNREACHABLE, base.KAFKA_UNREACHABLE,
             base.NOT_FOUND, base.LOG_GAP, base.INTERNAL, base.INTERRUPTED]  # fmt: skip
    assert len(set(codes)) == len(codes)
    top = _help(())
    for code in codes:
        assert f"\n  {code} " in top


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=environment, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ("balance", "acct_1", "--as-of", "now"),
        ("export", "--from", "2026-11-21"),
        ("projections", "audit"),
        ("prices", "show"),
    ],
    ids=" ".join,
)
def test_an_unreachable_database_is_one_line_and_exit_3(args: tuple[str, ...]) -> None:
    port = _closed_port()
    done = _cli(
        *args,
        CREDITLEDGER_DATABASE_URL=f"postgresql://postgres:secret@127.0.0.1:{port}/creditledger",
        CREDITLEDGER_KAFKA_BOOTSTRAP=f"127.0.0.1:{_closed_port()}",
    )
    assert done.returncode == base.DATABASE_UNREACHABLE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("creditledger: error: Postgres at 127.0.0.1:")
    assert str(port) in lines[0] and "CREDITLEDGER_DATABASE_URL" in lines[0]
    assert "secret" not in done.stderr  # the password stays out of the message
    assert done.stdout == ""


def test_no_configuration_and_no_stack_is_one_line_and_exit_5(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CREDITLEDGER_")}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "balance", "acct_1", "--as-of", "now"],
        env={**environment, "PYTHONPATH": str(ROOT), "CREDITLEDGER_STACK_DIR": str(tmp_path)},
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == base.NOT_FOUND, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "creditledger stack up" in done.stderr


def test_a_bad_instant_is_a_usage_error_naming_the_forms() -> None:
    done = _cli("balance", "acct_1", "--as-of", "yesterday")
    assert done.returncode == base.USAGE
    last = done.stderr.strip().splitlines()[-1]
    assert "--as-of" in last and "'yesterday'" in last and "ISO-8601" in last
    assert "_aware_time" not in done.stderr and "Traceback" not in done.stderr


# The forms the API takes in `from`/`to` (services/api/reads/common.py), the CLI takes alike.
API_FORMS = [
    "2026-11-21T10:00:00Z",
    "2026-11-21T10:00:00z",
    "2026-11-21T10:00:00+01:00",
    "2026-11-21 10:00:00+00:00",
    "2026-11-21T10:00:00.123456Z",
    "2026-11-21",
    " 2026-11-21T10:00Z ",
]


@pytest.mark.parametrize("text", API_FORMS)
def test_instants_are_read_as_the_api_reads_them(text: str) -> None:
    assert base.instant(text) == parse_instant(text, "from")
    assert base.end_instant(text) == parse_instant(text, "to", end=True)


@pytest.mark.parametrize("text", ["2026-11-21T10:00:00", "yesterday", "2026-13-01", "1700000000"])
def test_what_the_api_refuses_the_cli_refuses(text: str) -> None:
    with pytest.raises(Problem):
        parse_instant(text, "from")
    with pytest.raises(argparse.ArgumentTypeError):
        base.instant(text)


def test_instant_forms_in_utc() -> None:
    assert base.instant("2026-11-21T10:00:00+01:00") == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert base.instant("2026-11-21") == datetime(2026, 11, 21, tzinfo=UTC)
    assert base.end_instant("2026-11-21") == datetime(2026, 11, 22, tzinfo=UTC)
    before = datetime.now(UTC)
    now = base.instant("now")
    assert before <= now <= datetime.now(UTC) + timedelta(seconds=1)
    assert now.utcoffset() == timedelta(0)


def test_a_bug_is_one_line_and_exit_70_with_the_traceback_on_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.cli import errors

    def bug() -> int:
        raise ZeroDivisionError("division by zero")

    assert errors.run_reporting(bug, show_traceback=False) == base.INTERNAL
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "creditledger: error: internal error: ZeroDivisionError: division by zero "
        "(run again with --traceback for the details)"
    ]
    assert errors.run_reporting(bug, show_traceback=True) == base.INTERNAL
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    assert errors.run_reporting(bug, show_traceback=False, service=True) == base.INTERNAL
    assert "Traceback (most recent call last)" in capsys.readouterr().err  # a service's log

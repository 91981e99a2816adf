"""Progress goes to stderr, and only to a terminal: a pipe or a log file gets none of it."""

from __future__ import annotations

import io

import pytest

from services.cli import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    with progress.bar("exporting", total=10) as bar:
        bar.update(completed=5)
    with progress.phases() as phase:
        phase("fetching")
        phase("starting")
    assert err.getvalue() == ""


def test_a_terminal_sees_the_phases_and_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    err, out = Terminal(), io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr("sys.stdout", out)
    with progress.phases() as phase:
        phase("fetching Kafka's jars")
        phase("starting Postgres")
    with progress.bar("exporting ledger rows") as bar:
        bar.update(completed=3, text="exporting (3 rows)")
    drawn = err.getvalue()
    assert "fetching Kafka's jars" in drawn and "starting Postgres" in drawn
    assert out.getvalue() == ""  # stdout stays the command's answer

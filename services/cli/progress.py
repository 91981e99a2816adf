"""Progress on stderr (rich), only when stderr is a terminal: pipes and logs stay clean.

Two shapes: a `bar` counting rows (rebuild, export, replay, reprice) and `phases` naming the
step a long command is in (stack up's Maven download, the bench's phases), each with its
elapsed time. The library functions take plain callbacks; this module is the only one that
knows rich.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


def enabled(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class Bar:
    """Updates one progress line; a no-op when progress is off."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress, self._task = progress, task

    def update(
        self, completed: int | None = None, total: int | None = None, text: str | None = None
    ) -> None:
        if self._progress is None or self._task is None:
            return
        fields: dict[str, object] = {} if text is None else {"description": text}
        self._progress.update(self._task, completed=completed, total=total, **fields)  # type: ignore[arg-type]


@contextmanager
def bar(description: str, total: int | None = None) -> Iterator[Bar]:
    if not enabled():
        yield Bar(None, None)
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield Bar(progress, progress.add_task(description, total=total))


class Phases:
    """`phase(name)` ends the previous phase (a line with its time) and starts the next."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._task: TaskID | None = None
        self._name = ""
        self._started = 0.0

    def __call__(self, name: str) -> None:
        self.finish()
        if self._progress is None:
            return
        self._name, self._started = name, time.monotonic()
        self._task = self._progress.add_task(name, total=None)

    def finish(self) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.remove_task(self._task)
        seconds = time.monotonic() - self._started
        self._progress.console.print(f"[green]✓[/green] {self._name} ({seconds:.1f} s)")
        self._task = None


@contextmanager
def phases() -> Iterator[Phases]:
    if not enabled():
        yield Phases(None)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        tracker = Phases(progress)
        try:
            yield tracker
        finally:
            tracker.finish()

"""Progress bars for long steps (scan, projections, occlusion, accuracy, report pages).

One look everywhere: rich's bar with the count done of the total, the time spent and the time
left, and optionally a rate (``12.3 img/s``). A bar that is not enabled costs nothing and
prints nothing, so library functions take ``progress=False`` by default and the CLI turns it
on. ``progress=None`` means "when stderr is a terminal". rich is imported only when a bar is
shown.

>>> list(track([1, 2, 3], "counting", enabled=False))
[1, 2, 3]
>>> with progress_bar("work", 10, enabled=False) as bar:
...     bar.advance(4)
>>> bar.completed
4
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["Bar", "progress_bar", "track", "wanted"]

T = TypeVar("T")


def wanted(progress: bool | None) -> bool:
    """``progress`` itself, or for None whether stderr is a terminal.

    >>> wanted(True), wanted(False)
    (True, False)
    """
    return sys.stderr.isatty() if progress is None else bool(progress)


class Bar:
    """The handle a :func:`progress_bar` block advances; ``completed`` counts the steps."""

    def __init__(self, progress: Any = None, task: Any = None, completed: int = 0) -> None:
        self._progress, self._task, self.completed = progress, task, completed

    def advance(self, steps: int = 1) -> None:
        """Record ``steps`` more steps done."""
        self.completed += steps
        if self._progress is not None:
            self._progress.advance(self._task, steps)


def _rich_progress(description: str, rate: str | None) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Rate(TextColumn):
        def render(self, task: Any) -> Any:  # steps per second
            speed = task.speed
            return Text(f"{speed:.1f} {rate}/s" if speed else f"? {rate}/s")

    columns: list[Any] = [TextColumn(description), BarColumn(), MofNCompleteColumn()]
    if rate is not None:
        columns.append(_Rate(""))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, transient=False)


@contextlib.contextmanager
def progress_bar(
    description: str,
    total: int | None,
    *,
    enabled: bool | None,
    completed: int = 0,
    rate: str | None = None,
) -> Iterator[Bar]:
    """A bar for ``total`` steps while the block runs (:func:`wanted` decides ``enabled``);
    ``rate`` names the unit of a steps-per-second column (``"img"``). The bar is stopped when
    the block ends, also on an error or Ctrl-C."""
    if not wanted(enabled):
        yield Bar(completed=completed)
        return
    shown = _rich_progress(description, rate)
    shown.start()
    try:
        task = shown.add_task(description, total=total, completed=completed)
        yield Bar(shown, task, completed)
    finally:
        shown.stop()


def track(
    items: Iterable[T], description: str, *, enabled: bool | None, total: int | None = None
) -> Iterator[T]:
    """``items`` one by one, with a bar while they are consumed (``total`` defaults to
    ``len(items)`` where the items have a length)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with progress_bar(description, total, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.advance()

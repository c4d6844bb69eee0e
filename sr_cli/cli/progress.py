"""The one progress-bar builder of the CLI: description, bar, amount, rate, elapsed, ETA -- on stderr.

Every command draws its bars with `progress_bars()` (several tasks in one display) or `progress_bar()`
(one bar, as a context manager yielding the `(done, total)` callback the library calls). A task says
what it counts with its `kind`:

  count    "3/12"              rate "2.5 img/s" (or "40 s/img", "21 min/img" when slower than one a second)
  bytes    "12.3/80.0 MB"      rate "4.1 MB/s"

Figures are never wrapped; a description longer than DESCRIPTION_WIDTH is cut with an ellipsis and the
bar takes the width left, so a line fits 80 columns.
  percent  "37.4%"             no rate (the units are the engine's, not something a person counts)

The ETA is (total - done) / rate, with the rate taken over the last minute, or since the start when the
updates are sparser than that (one image a minute still gets an ETA). A total of 0 or None means
"not known yet": the bar pulses and amount/ETA show what is known. Bars are drawn only where a person
watches (`console.shows_progress()`: a terminal, not -q); elsewhere every call is a cheap no-op.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from sr_cli.cli.console import shows_progress, stderr

Kind = Literal["count", "bytes", "percent"]
ProgressCallback = Callable[[float, int], None]  # (done, total); total 0 = not known yet; done may be fractional
SPEED_WINDOW_SECONDS = 60.0
DESCRIPTION_WIDTH = 24  # columns; a longer file name is cut with an ellipsis, so the line fits 80 columns
MIN_BAR_WIDTH = 6


def progress_bars(*, transient: bool = True, console: Console | None = None) -> Progress:
    """A rich Progress with our columns, disabled unless `shows_progress()`. Start it (or use it as a
    context manager), then `add_bar` for each thing that advances. transient: the bars vanish when it
    stops (the command's summary says what happened)."""
    def fixed() -> Column:  # figures are never cut or wrapped; the bar and a long description give way
        return Column(no_wrap=True)

    return _Bars(
        TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis",
                                                             max_width=DESCRIPTION_WIDTH)),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=MIN_BAR_WIDTH)),
        AmountColumn(table_column=fixed()), RateColumn(table_column=fixed()),
        TimeElapsedColumn(table_column=fixed()), EtaColumn(table_column=fixed()),
        console=console or stderr, transient=transient, disable=not shows_progress(),
        speed_estimate_period=SPEED_WINDOW_SECONDS,
        # rich would send what the command prints on stdout while bars run to the bars' console (stderr),
        # so `sr eval --json | jq` lost its records to the terminal: only a terminal's stdout is redirected
        # (its lines then print above the bars, on the same screen).
        redirect_stdout=_stdout_is_terminal(),
    )


class _Bars(Progress):
    """A disabled Progress that prints nothing at all: rich before 14 prints a newline on stop() even when
    disabled, which left a blank line on stderr after every `-q` run or run off a terminal."""

    def stop(self) -> None:
        if not self.disable:
            super().stop()


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def add_bar(bars: Progress, label: str, *, kind: Kind = "count", unit: str = "", total: int | None = None,
            visible: bool = True) -> tuple[TaskID, ProgressCallback]:
    """A new task in `bars` and its `(done, total)` callback. `label` is plain text (escaped here);
    `unit` names one item in the rate ("img" -> "2.5 img/s")."""
    task = bars.add_task(escape(label), total=total or None, kind=kind, unit=unit, visible=visible)

    def update(done: float, new_total: int) -> None:
        bars.update(task, completed=done, total=new_total or None)

    return task, update


@contextmanager
def progress_bar(label: str, *, kind: Kind = "count", unit: str = "", total: int | None = None,
                 transient: bool = True) -> Iterator[ProgressCallback]:
    """One bar for the duration of the block; yields its `(done, total)` callback."""
    with progress_bars(transient=transient) as bars:
        _task, update = add_bar(bars, label, kind=kind, unit=unit, total=total)
        yield update


def rate_of(task: Task) -> float | None:
    """Units per second: over the speed window, else the average since the task started."""
    speed = task.speed
    if speed:
        return speed
    elapsed = task.elapsed
    if elapsed and task.completed > 0:
        return task.completed / elapsed
    return None


def eta_seconds(task: Task) -> float | None:
    """Seconds left, or None while the total or the rate is unknown."""
    if task.total is None:
        return None
    if task.finished:
        return 0.0
    rate = rate_of(task)
    if not rate:
        return None
    return max(task.total - task.completed, 0.0) / rate


def clock(seconds: float) -> str:
    """0:42, 12:05, 1:02:03."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def byte_amount(done: int, total: int | None) -> str:
    """12.0/67.0 MB (one unit when both share it), 900 kB/1.2 MB, or 12.0 MB while the total is unknown."""
    done_text = decimal(done)
    if total is None:
        return done_text
    total_text = decimal(total)
    done_number, _, done_unit = done_text.partition(" ")
    total_number, _, total_unit = total_text.partition(" ")
    return f"{done_number}/{total_text}" if done_unit == total_unit else f"{done_text}/{total_text}"


class AmountColumn(ProgressColumn):
    """3/12, 12.3/80.0 MB or 37.4% (kind of the task); '?' for a total not known yet."""

    def render(self, task: Task) -> Text:
        kind = task.fields.get("kind", "count")
        if kind == "bytes":
            return Text(byte_amount(int(task.completed), int(task.total) if task.total else None),
                        style="progress.download")
        if kind == "percent":
            # one decimal: on a 40-minute image 0.1 % is 2.4 s, so the figure moves every few seconds
            return Text(f"{task.percentage:5.1f}%" if task.total else "", style="progress.percentage")
        total = f"{int(task.total)}" if task.total is not None else "?"
        return Text(f"{int(task.completed)}/{total}", style="progress.download")


class RateColumn(ProgressColumn):
    """2.5 img/s, 40 s/img, 21 min/img, 4.1 MB/s; empty while unknown and for percent tasks."""

    def render(self, task: Task) -> Text:
        kind = task.fields.get("kind", "count")
        rate = rate_of(task)
        if kind == "percent" or not rate:
            return Text("")
        if kind == "bytes":
            return Text(f"{decimal(int(rate))}/s", style="progress.data.speed")
        unit = task.fields.get("unit", "") or "it"
        seconds_each = 1 / rate
        text = (f"{rate:.1f} {unit}/s" if rate >= 1 else f"{seconds_each:.0f} s/{unit}" if seconds_each < 120
                else f"{seconds_each / 60:.0f} min/{unit}")
        return Text(text, style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """'eta 1:23' while running; empty while the total or the rate is unknown."""

    def render(self, task: Task) -> Text:
        left = eta_seconds(task)
        if left is None or task.finished:
            return Text("")
        return Text(f"eta {clock(left)}", style="progress.remaining")


__all__ = ["Kind", "ProgressCallback", "progress_bars", "add_bar", "progress_bar", "rate_of", "eta_seconds", "clock", "byte_amount"]

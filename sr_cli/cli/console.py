"""Where the CLI writes: results to stdout, diagnostics (progress, warnings, errors) to stderr.

One verbosity for the whole process, set by every command's `-q/--quiet` and `-v/--verbose`
(sr_cli.cli.options.Quiet / Verbose, through their callbacks): quiet keeps errors and results only;
verbose adds `detail` lines (what was resolved: weights source, tile plan, memory budget).

Results: `result_path` prints one written path per line (so `sr upscale ... | xargs` works) and
`json_line` one JSON record per result (one shape for every command: a flat object with a `"command"`
and a `"status"` key). A command prints one or the other, never both: with `--json` stdout is JSON lines only.
"""
from __future__ import annotations

import enum
import io
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class Verbosity(enum.IntEnum):
    QUIET = 0  # errors and results only
    NORMAL = 1  # plus notes, warnings, progress and the closing summary
    VERBOSE = 2  # plus details of what was resolved


_level = Verbosity.NORMAL


def set_verbosity(level: Verbosity) -> None:
    global _level
    _level = level


def verbosity() -> Verbosity:
    return _level


def shows_progress() -> bool:
    """Bars only where a person watches (a terminal) and has not asked for quiet."""
    return _level >= Verbosity.NORMAL and stderr.is_terminal


def warn(message: str) -> None:
    if _level >= Verbosity.NORMAL:
        stderr.print(f"[yellow]warning:[/] {escape(message)}", markup=True)


def note(message: str) -> None:
    if _level >= Verbosity.NORMAL:
        stderr.print(message, markup=False)


def detail(message: str) -> None:
    """What -v adds: how something was resolved (which file, which tile plan, which budget)."""
    if _level >= Verbosity.VERBOSE:
        stderr.print(message, markup=False)


def error_line(message: str) -> None:
    """A failure of one item of a batch (the run goes on): printed even with -q."""
    stderr.print(f"[red]failed:[/] {escape(message)}", markup=True, highlight=False)


def result_path(path: str | Path) -> None:
    """One written file: its path alone on a stdout line, whatever the verbosity."""
    sys.stdout.write(f"{path}\n")
    sys.stdout.flush()


def json_line(record: Mapping[str, object]) -> None:
    """One JSON record on one stdout line, flushed at once (records stream while a batch runs)."""
    sys.stdout.write(json.dumps(record, ensure_ascii=False, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def print_table(table: Table) -> None:
    """A table on stdout with every cell whole: rich would otherwise cut cells to fit 80 columns (the
    width it assumes when stdout is a pipe), and a cut number ("28.…") is a wrong number. A table wider
    than the terminal is printed at the terminal's width when rich can make it fit by folding its text
    columns (those declared `overflow="fold"`, such as a long model name) and cuts nothing, else at its
    natural width, which the terminal wraps and which loses nothing either."""
    needed = Measurement.get(stdout, stdout.options.update_width(10_000), table).maximum
    if needed <= stdout.width or _cut_marks(table, stdout.width) == _cut_marks(table, needed):
        stdout.print(table)
        return
    width = stdout.width
    stdout.width = needed
    try:
        stdout.print(table)
    finally:
        stdout.width = width


def _cut_marks(table: Table, width: int) -> int:
    """How many cells rich cuts (it marks each with "…") when it renders `table` at `width` columns."""
    text = io.StringIO()
    Console(file=text, width=width, color_system=None, highlight=False, soft_wrap=False).print(table)
    return text.getvalue().count("…")

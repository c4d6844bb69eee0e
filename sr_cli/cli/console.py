"""Where the CLI writes: results to stdout, diagnostics (progress, warnings, errors) to stderr."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(message)}", markup=True)


def note(message: str) -> None:
    stderr.print(message, markup=False)


def print_table(table: Table) -> None:
    """A table on stdout at its natural width: rich would otherwise cut cells to fit 80 columns (the
    width it assumes when stdout is a pipe), and a cut number ("28.…") is a wrong number. A table wider
    than the terminal wraps there instead, which loses nothing."""
    needed = Measurement.get(stdout, stdout.options.update_width(10_000), table).maximum
    if needed <= stdout.width:
        stdout.print(table)
        return
    width = stdout.width
    stdout.width = needed
    try:
        stdout.print(table)
    finally:
        stdout.width = width

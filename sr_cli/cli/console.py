"""Where the CLI writes: results to stdout, diagnostics (progress, warnings, errors) to stderr."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/] {escape(message)}", markup=True)


def note(message: str) -> None:
    stderr.print(message, markup=False)

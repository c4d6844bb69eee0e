"""`sr downscale` (being written; see docs/design.md for who owns it)."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `downscale` command(s) to the app."""
    @app.command("downscale", hidden=True)
    def _placeholder() -> None:
        raise typer.Exit(1)

"""`sr`: the table of contents. Each command group lives in its own module and registers itself here."""
from __future__ import annotations

import sys

import typer

from sr_cli.cli import (
    blend_cmd,
    downscale_cmd,
    eval_cmd,
    train_cmd,
    upscale_cmd,
    weights_cmd,
)
from sr_cli.cli.console import stderr
from sr_cli.errors import SRError

app = typer.Typer(
    name="sr",
    help="Super-resolution: upscale images with EDSR, MDSR, ESRGAN or VDSR; evaluate; blend; train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

upscale_cmd.register(app)
weights_cmd.register(app)
eval_cmd.register(app)
downscale_cmd.register(app)
blend_cmd.register(app)
train_cmd.register(app)

EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn our exceptions into one line on stderr plus an exit code."""
    try:
        code = app(args=argv, standalone_mode=False)
    except SRError as error:
        stderr.print(f"error: {error}", markup=False)
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        stderr.print("interrupted", markup=False)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # stdout closed early (`sr ... --json | head`): not an error of ours
        sys.stderr.close()
        sys.exit(1)
    except typer.TyperException as error:  # usage errors: typer prints them the usual way
        error.show()  # type: ignore[attr-defined]  # on its ClickException subclasses; typer exports only the base
        sys.exit(error.exit_code)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    sys.exit(code if isinstance(code, int) else 0)

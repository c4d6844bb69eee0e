"""`sr`: the table of contents. Each command is a function in its own module; this file names them.

Nothing here (nor in the command modules) imports torch, numpy or OpenCV: they load inside the command
that needs them, so `sr --help` and usage errors stay fast (bench/cli_startup.py).
"""
from __future__ import annotations

import sys

import typer

from sr_cli.cli import blend_cmd, downscale_cmd, eval_cmd, train_cmd, upscale_cmd, weights_cmd
from sr_cli.cli.console import stderr
from sr_cli.errors import SRError

app = typer.Typer(
    name="sr",
    help="Super-resolution: upscale images with EDSR, MDSR, ESRGAN or VDSR; evaluate; blend; train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("upscale")(upscale_cmd.upscale)

weights = typer.Typer(name="weights", no_args_is_help=True,
                      help="The published weights: list, download, verify, locate, inspect, import.")
weights.command("list")(weights_cmd.list_models)
weights.command("download")(weights_cmd.download)
weights.command("verify")(weights_cmd.verify)
weights.command("path")(weights_cmd.cached_path)
weights.command("inspect")(weights_cmd.inspect_checkpoint)
weights.command("import")(weights_cmd.import_checkpoint)
app.add_typer(weights, name="weights")

app.command("eval")(eval_cmd.eval_command)
app.command("downscale")(downscale_cmd.downscale)
app.command("blend")(blend_cmd.blend)
app.command("train")(train_cmd.train_command)

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

"""`sr`: the table of contents. Each command is a function in its own module; this file names them.

Nothing here (nor in the command modules) imports torch, numpy or OpenCV: they load inside the command
that needs them, so `sr --help` and usage errors stay fast (bench/cli_startup.py).

`main` is the one place where failures become one line and an exit code (docs/reliability.md): our
exceptions by their class, Ctrl-C and SIGTERM as 130 / 143, anything else as one line that says it is
a bug (the traceback only with SR_DEBUG=1).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Annotated

import typer

from sr_cli.cli import blend_cmd, compare_cmd, downscale_cmd, env_cmd, eval_cmd, train_cmd, upscale_cmd, weights_cmd
from sr_cli.cli.console import Verbosity, set_verbosity, stderr
from sr_cli.cli.conventions import CONTEXT_SETTINGS, SrCommand, SrGroup, epilog
from sr_cli.errors import SRError

app = typer.Typer(
    name="sr",
    help="Super-resolution: upscale images with EDSR, MDSR, ESRGAN or VDSR; evaluate; blend; train.",
    epilog=epilog(),
    cls=SrGroup,
    context_settings=CONTEXT_SETTINGS,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion SHELL (Typer's)
    pretty_exceptions_enable=False,
)
app.command("upscale", cls=SrCommand)(upscale_cmd.upscale)

weights = typer.Typer(name="weights", cls=SrGroup, no_args_is_help=True,
                      help="The published weights: list, download, verify, locate, inspect, import, remove.")
weights.command("list", cls=SrCommand)(weights_cmd.list_models)
weights.command("download", cls=SrCommand)(weights_cmd.download)
weights.command("verify", cls=SrCommand)(weights_cmd.verify)
weights.command("path", cls=SrCommand)(weights_cmd.cached_path)
weights.command("inspect", cls=SrCommand)(weights_cmd.inspect_checkpoint)
weights.command("import", cls=SrCommand)(weights_cmd.import_checkpoint)
weights.command("rm", cls=SrCommand)(weights_cmd.remove)
weights.command("prune", cls=SrCommand)(weights_cmd.prune)
app.add_typer(weights, name="weights")

app.command("eval", cls=SrCommand)(eval_cmd.eval_command)
app.command("downscale", cls=SrCommand)(downscale_cmd.downscale)
app.command("blend", cls=SrCommand)(blend_cmd.blend)
app.command("compare", cls=SrCommand)(compare_cmd.compare)
app.command("train", cls=SrCommand)(train_cmd.train_command)
app.command("env", cls=SrCommand)(env_cmd.env)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(env_cmd.version_text())  # torch is imported here only, never for --help
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", is_eager=True, callback=_show_version,
                                          help="sr's version, torch's and the devices available, then exit.")] = False,
) -> None:
    """Options before the command name (sr -V, sr --install-completion)."""
    # Each invocation starts at the default verbosity, however it is invoked (main, or typer's CliRunner in
    # tests): this runs before the command's own options are parsed, so its -q / -v callbacks come after.
    set_verbosity(Verbosity.NORMAL)


EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
UNEXPECTED_EXIT_CODE = 1
DEBUG_VARIABLE = "SR_DEBUG"  # set to 1: tracebacks instead of one-line errors (for bug reports)


class _Signals:
    """SIGINT and SIGTERM both unwind the command as Ctrl-C does: KeyboardInterrupt in the main thread,
    so every command's cleanup runs (temporaries removed, a checkpoint or a summary written). A second
    signal while that cleanup runs exits at once."""

    def __init__(self) -> None:
        self.received: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
            yield
            return
        previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            os.write(2, b"interrupted again: stopped at once\n")
            os._exit(128 + self.received)
        self.received = number
        raise KeyboardInterrupt

    def exit_code(self) -> int:
        return 128 + self.received if self.received is not None else EXIT_INTERRUPTED

    def describe(self) -> str:
        return "terminated (SIGTERM)" if self.received == signal.SIGTERM else "interrupted"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn our exceptions into one line on stderr plus an exit code."""
    signals = _Signals()
    set_verbosity(Verbosity.NORMAL)  # -q / -v set it while parsing; each run starts from the default
    with signals.installed():
        code = _run(argv, signals)
    sys.exit(code)


def _run(argv: list[str] | None, signals: _Signals) -> int:
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        code = app(args=argv, prog_name="sr", standalone_mode=False)
    except SRError as error:
        if debug:
            raise
        stderr.print(f"error: {error}", markup=False)
        return error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        stderr.print(signals.describe(), markup=False)
        return signals.exit_code()
    except BrokenPipeError:  # stdout closed early (`sr ... --json | head`): not an error of ours
        sys.stderr.close()
        return 1
    except typer.TyperException as error:  # usage errors: typer prints them the usual way
        error.show()  # type: ignore[attr-defined]  # on its ClickException subclasses; typer exports only the base
        return error.exit_code
    except typer.Exit as exit_:
        return exit_.exit_code
    except Exception as error:  # not foreseen: still one line, with what a bug report needs
        if debug:
            raise
        stderr.print(f"error: {_unexpected(error)}", markup=False)
        return UNEXPECTED_EXIT_CODE
    code = code if isinstance(code, int) else 0
    if code == EXIT_INTERRUPTED or signals.received is not None:  # typer turns KeyboardInterrupt into exit 130
        stderr.print(signals.describe(), markup=False)
        return signals.exit_code()
    return code


def _unexpected(error: Exception) -> str:
    if isinstance(error, MemoryError):
        return "out of memory; use a smaller --tile or fewer/smaller inputs"
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror} (errno {error.errno}); check the path and its permissions"
    return (f"unexpected {type(error).__name__}: {error} -- a bug in sr; rerun with {DEBUG_VARIABLE}=1 "
            f"for the traceback and report it")

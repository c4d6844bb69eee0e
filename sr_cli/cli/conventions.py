"""The help conventions every `sr` command follows, in one place (app.py gives these classes to each command).

- `-h` is `--help` everywhere (`CONTEXT_SETTINGS`; sub-commands inherit it from the root context).
- A flag is shown as a flag. Typer's rich help prints every option's type, so a flag reads
  `--ensemble <bool>` and people try `--ensemble true`, which the parser takes for an input file
  ("true: no such file"). A flag takes no value, so its type column is left empty here.
- Positional arguments are named in capitals, `INPUTS...` (Typer writes `{inputs}...` in the usage line
  and `inputs...` in the panel): required as `NAME`, optional as `[NAME]`, repeatable with `...`, the
  click convention people know from other tools.
- The help option keeps the order it is declared in (`-h, --help`), where click lists a set.
- `--ensemble true` is refused as such ("--ensemble is a flag and takes no value") rather than read as an
  input named `true` (unless a file of that name exists).
- Docstrings are wrapped at the source's width; Typer's rich help keeps those line breaks and then wraps
  again at the terminal's, which leaves half-empty lines. Prose paragraphs are joined into one line here;
  a paragraph with indented lines (an `Examples:` block) is kept as written.
"""
from __future__ import annotations

import inspect
import os
from typing import Any

from typer import _click as click  # Typer's own click (it vendors one): its Context and Parameter
from typer._click.exceptions import UsageError
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


def argument_label(argument: TyperArgument) -> str:
    """`INPUTS...` for a repeatable argument, `FILE` for a single one (the author's metavar when given)."""
    label = (argument.metavar or (argument.name or "arg").upper()).removesuffix("...")
    return f"{label}..." if argument.nargs != 1 else label


def reflowed(text: str | None) -> str | None:
    """`text` with each prose paragraph on one line (the terminal wraps it), indented blocks kept."""
    if not text:
        return text
    first, *rest = [paragraph if any(line[:1].isspace() for line in paragraph.splitlines()[1:])
                    else " ".join(line.strip() for line in paragraph.splitlines())
                    for paragraph in inspect.cleandoc(text).split("\n\n")]
    # Typer dedents the paragraphs after the first once more, as one text whose first line does not count,
    # so an `Examples:` block right after the first paragraph would lose its indentation; an empty paragraph
    # before it makes that first line an empty one (Typer drops it).
    remaining = "\n\n".join(rest)
    indents = [len(line) - len(line.lstrip()) for line in remaining.splitlines()[1:] if line.strip()]
    if min(indents, default=0):
        remaining = "\n\n" + remaining
    return f"{first}\n\n{remaining}" if rest else first


def _follow_conventions(parameter: click.Parameter) -> None:
    if isinstance(parameter, TyperOption) and parameter.is_flag and parameter.metavar is None:
        parameter.metavar = ""  # Typer's rich help shows the metavar in place of `<bool>`: nothing
    elif isinstance(parameter, TyperArgument):
        parameter.metavar = argument_label(parameter)


def _usage_piece(parameter: click.Parameter, ctx: click.Context) -> list[str]:
    if not isinstance(parameter, TyperArgument):
        return parameter.get_usage_pieces(ctx)
    label = argument_label(parameter)
    if parameter.required:
        return [label]
    name = label.removesuffix("...")
    return [f"[{name}]..." if parameter.nargs != 1 else f"[{name}]"]


BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


def refuse_values_after_flags(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    """A UsageError for `--flag true`: the word would otherwise become a positional argument."""
    flags = {name for parameter in command.params if isinstance(parameter, TyperOption) and parameter.is_flag
             for name in (*parameter.opts, *parameter.secondary_opts)}
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "--":
            return
        if flag in flags and value.lower() in BOOLEAN_WORDS and not os.path.lexists(value):
            raise UsageError(f"{flag} is a flag and takes no value: write `{flag}` alone to turn it on, "
                                   f"leave it out for off (not `{flag} {value}`)", ctx=ctx)


def _ordered_help_names(command: click.Command, ctx: click.Context) -> list[str]:
    taken = {name for parameter in command.params for name in (*parameter.opts, *parameter.secondary_opts)}
    return [name for name in ctx.help_option_names if name not in taken]


class _Conventions(click.Command):
    """What commands and groups share: reflowed help, flags shown as flags, -h beside --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Typer's own signature, passed through unchanged
        super().__init__(*args, **kwargs)
        self.help = reflowed(self.help)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        parameters = super().get_params(ctx)
        for parameter in parameters:
            _follow_conventions(parameter)
        return parameters

    def get_help_option_names(self, ctx: click.Context) -> list[str]:
        return _ordered_help_names(self, ctx)


class SrCommand(_Conventions, TyperCommand):
    """A Typer command that follows the conventions above."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:  # completion parses half-typed lines: never refuse those
            refuse_values_after_flags(self, ctx, args)
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for parameter in self.get_params(ctx):
            pieces.extend(_usage_piece(parameter, ctx))
        return pieces


class SrGroup(_Conventions, TyperGroup):
    """A Typer group (`sr`, `sr weights`) that follows the conventions above."""


# --- what `sr --help` ends with (docs/reliability.md has the same tables) --------------------------------

EXIT_CODES: tuple[tuple[str, str], ...] = (
    ("0", "done (a batch: every file done or skipped)"),
    ("1", "unforeseen error (SR_DEBUG=1 for the traceback)"),
    ("2", "usage: bad option, unknown model, device unavailable"),
    ("3", "input: missing, unreadable, not an image, dataset"),
    ("4", "output: exists (no --overwrite), cannot be written"),
    ("5", "checkpoint: unsafe, corrupt, unknown, wrong scale"),
    ("6", "download: failed, checksum mismatch, offline"),
    ("7", "training stopped (non-finite loss)"),
    ("130/143", "stopped by Ctrl-C / SIGTERM"),
)

# Every variable sr reads (sr env lists those that are set). torchrun's RANK/WORLD_SIZE are left to torchrun.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("SR_OFFLINE=1", "no network: use the cache and bundled files only"),
    ("HF_HUB_OFFLINE=1", "the same, Hugging Face's name for it"),
    ("SR_CACHE_DIR", "sr's cache (else $XDG_CACHE_HOME/sr, ~/.cache/sr)"),
    ("XDG_CACHE_HOME", "the base of the default cache folder"),
    ("HF_ENDPOINT", "hub or mirror URL (default https://huggingface.co)"),
    ("HF_HOME, HF_HUB_CACHE", "the Hugging Face cache (hub downloads land there)"),
    ("SR_MAX_PIXELS", "largest image read or made, e.g. 800M (--max-pixels)"),
    ("SR_BENCHMARK_BASE_URL", "mirror of the benchmark sets (sr eval)"),
    ("SR_DIV2K_BASE_URL", "mirror of DIV2K (sr train)"),
    ("OMP_NUM_THREADS", "CPU threads; torchrun's 1 = unset (cores split)"),
    ("SR_DEBUG=1", "tracebacks instead of one-line errors (bug reports)"),
    ("NO_COLOR=1", "no colours"),
)

# The names as sr reads them (without "=1" and split), for `sr env`.
VARIABLE_NAMES: tuple[str, ...] = tuple(
    name.strip() for names, _ in ENVIRONMENT for name in names.split("=")[0].split(","))


def epilog() -> str:
    """The end of `sr --help`: exit codes and environment variables, aligned (rich markup, escaped)."""
    def block(title: str, rows: tuple[tuple[str, str], ...]) -> str:
        width = max(len(key) for key, _ in rows)
        return "\n".join([f"[bold]{title}[/bold]", *(f"  {key:<{width}}  {text}" for key, text in rows)])

    return (block("Exit codes", EXIT_CODES) + "\n\n" + block("Environment", ENVIRONMENT) +
            "\n\nMore: sr env (versions, devices, caches), docs/reliability.md")

"""Options that several commands share, declared once: the same flag, type and help text everywhere.

A command uses one as its parameter's type and gives only the default: `device: Device = "auto"`.
Options that mean something different per command (`--scale`, `--json`, `--output`) stay with their command.
"""
from __future__ import annotations

import copy
from typing import Annotated, Optional, get_args

import typer
from typer.models import OptionInfo

from sr_cli.cli.console import Verbosity, set_verbosity

DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps (auto: the first CUDA GPU, else Apple MPS, else the CPU)."
RES_SCALE_HELP = ("EDSR/MDSR residual scaling, for checkpoints that do not record it "
                  "(it is not visible in the tensor shapes).")

# Where inference runs (upscale, eval, blend images): sr_cli.engine.device.resolve_device reads it.
Device = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
# Training runs on one device per torchrun process (sr_cli.train.distributed.pick_device): no MPS there.
# None = not given, so the --config file or the default (auto) decides.
TrainDevice = Annotated[Optional[str], typer.Option("--device", rich_help_panel="Hardware", help="auto | cpu | cuda | cuda:N.")]
ResScale = Annotated[Optional[float], typer.Option("--res-scale", help=RES_SCALE_HELP)]
# `sr weights download/path/import`: a name such as `edsr` covers several files, one per scale.
EntryScale = Annotated[Optional[float], typer.Option("--scale", "-s", help="Picks the entry for aliases such as `edsr`.")]
# The pixel budget (sr_cli.imageio.budget) of every command that reads or makes images; its errors name this flag.
MaxPixels = Annotated[Optional[str], typer.Option("--max-pixels", help=(
    "Largest image read or made, in pixels (e.g. 800M; default 200M in, 500M out; env SR_MAX_PIXELS)."))]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace outputs that exist (inputs are never replaced).")]


def _quiet(value: bool) -> bool:
    if value:
        set_verbosity(Verbosity.QUIET)
    return value


def _verbose(value: bool) -> bool:
    if value:
        set_verbosity(Verbosity.VERBOSE)
    return value


# Every command takes both; their callbacks set the process verbosity (sr_cli.cli.console) as the
# command line is parsed, before the command body runs. Given both, the later one on the line wins.
Quiet = Annotated[bool, typer.Option("--quiet", "-q", callback=_quiet, help="Errors and results only: no notes, warnings or progress.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", callback=_verbose, help="Also say what was resolved: weights source, tile plan, memory budget.")]
# --json on every command: JSON lines on stdout, one record per result (sr_cli.cli.console.json_line).
Json = Annotated[bool, typer.Option("--json", help="JSON lines on stdout: one record per result.")]


def in_panel(option: object, panel: str) -> OptionInfo:
    """A shared option above (`Device`, `Quiet`, ...) shown in one command's rich help panel, declared
    nowhere else: `device: Annotated[str, in_panel(Device, "Speed & memory")] = "auto"`."""
    info = next(item for item in get_args(option) if isinstance(item, OptionInfo))
    placed = copy.copy(info)
    placed.rich_help_panel = panel
    return placed

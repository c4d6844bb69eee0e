"""`sr train`: the papers' training recipes (docs/train.md). One process, or K with torchrun:

    torchrun --nproc_per_node=K -m sr_cli train --model edsr-baseline --scale 2 --data div2k --out runs/x2

Only rank 0 reports; the other processes stay silent. What rank 0 shows is in train_report.py.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from sr_cli.cli.console import note
from sr_cli.cli.options import Json, Quiet, TrainDevice, Verbose
from sr_cli.cli.train_report import TrainReport

_RUN = "Run"
_DATA = "Data and validation"
_RECIPE = "Recipe overrides"
_SCHEDULE = "Checkpoints and logging"
_HARDWARE = "Hardware"  # also the panel of --device (TrainDevice, sr_cli.cli.options)


def train_command(
    model: Annotated[Optional[str], typer.Option(rich_help_panel=_RUN, help=(
        "Recipe: edsr-baseline, edsr, mdsr-baseline, mdsr, vdsr, esrgan-psnr, esrgan."))] = None,
    scale: Annotated[Optional[int], typer.Option(rich_help_panel=_RUN, help=(
        "2, 3 or 4 (MDSR/VDSR: all three unless given)."))] = None,
    out: Annotated[Optional[Path], typer.Option(rich_help_panel=_RUN, help=(
        "Run folder, e.g. runs/edsr-x2; the model is exported as runs/edsr-x2/edsr-x2.safetensors."))] = None,
    resume: Annotated[Optional[bool], typer.Option("--resume", rich_help_panel=_RUN, help=(
        "Continue the run in --out where its checkpoint stopped, with the options it recorded; "
        "--steps, logging, hardware and --lr may change, what defines the run may not."))] = None,
    config: Annotated[Optional[Path], typer.Option(rich_help_panel=_RUN, help=(
        "TOML file with the same options (top level or a train table); flags win over it."))] = None,
    data: Annotated[Optional[str], typer.Option(rich_help_panel=_DATA, help=(
        "Folder of HR images (recursive), or 'div2k'."))] = None,
    val: Annotated[Optional[str], typer.Option(rich_help_panel=_DATA, help=(
        "Validation: set5 (default), set14, b100, urban100, a folder of HR images, or 'none'."))] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", rich_help_panel=_DATA, help=(
        "Folder holding <Set>/HR (EDSR benchmark layout), looked in before the cache and the download."))] = None,
    val_every: Annotated[Optional[int], typer.Option(rich_help_panel=_DATA, help=(
        "Validate (and export the best) every N updates."))] = None,
    steps: Annotated[Optional[int], typer.Option(rich_help_panel=_RECIPE, help=(
        "Total optimizer updates (recipe default)."))] = None,
    batch: Annotated[Optional[int], typer.Option(rich_help_panel=_RECIPE, help=(
        "Global batch (split across torchrun processes)."))] = None,
    patch: Annotated[Optional[int], typer.Option(rich_help_panel=_RECIPE, help=(
        "LR patch side (VDSR: input patch side)."))] = None,
    lr: Annotated[Optional[float], typer.Option(rich_help_panel=_RECIPE, help=(
        "Initial learning rate (recipe default)."))] = None,
    init: Annotated[Optional[str], typer.Option(rich_help_panel=_RECIPE, help=(
        "Start from weights: a file (sr export, run checkpoint, official file) or a model name."))] = None,
    ema: Annotated[Optional[float], typer.Option(rich_help_panel=_RECIPE, help=(
        "Keep an EMA of the weights (e.g. 0.999); exported."))] = None,
    seed: Annotated[Optional[int], typer.Option(rich_help_panel=_RECIPE, help=(
        "Seed of the init and the data stream."))] = None,
    blocks: Annotated[Optional[int], typer.Option(rich_help_panel=_RECIPE, help=(
        "Residual blocks / RRDBs / VDSR layers."))] = None,
    features: Annotated[Optional[int], typer.Option(rich_help_panel=_RECIPE, help=(
        "Feature channels."))] = None,
    clip_theta: Annotated[Optional[float], typer.Option(rich_help_panel=_RECIPE, help=(
        "VDSR adjustable gradient clipping theta (0 = off)."))] = None,
    vgg_weights: Annotated[Optional[Path], typer.Option(rich_help_panel=_RECIPE, help=(
        "Local torchvision vgg19-dcbb9e9d.pth for the ESRGAN perceptual loss (else downloaded)."))] = None,
    save_every: Annotated[Optional[int], typer.Option(rich_help_panel=_SCHEDULE, help=(
        "Write runs/NAME/last.pt every N updates."))] = None,
    log_every: Annotated[Optional[int], typer.Option(rich_help_panel=_SCHEDULE, help=(
        "Write metrics.jsonl (and, when stderr is no terminal, a log line) every N updates."))] = None,
    device: TrainDevice = None,
    amp: Annotated[Optional[str], typer.Option(rich_help_panel=_HARDWARE, help=(
        "Mixed precision on CUDA: off, bf16, fp16."))] = None,
    workers: Annotated[Optional[int], typer.Option(rich_help_panel=_HARDWARE, help=(
        "Data loader worker processes."))] = None,
    json_out: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    random_vgg: Annotated[Optional[bool], typer.Option(
        "--random-vgg", hidden=True, help="TEST ONLY: random VGG19 weights.")] = None,
) -> None:
    """Train a model with its paper's recipe; exports runs/NAME/NAME.safetensors.

    Prints the exported file on stdout; steps, time and the best validation PSNR
    (beside bicubic's) on stderr.

    Examples:

      sr train --model edsr-baseline --scale 2 --data hr/ --out runs/x2

      sr train --resume --out runs/x2 --steps 600000

      sr train --model vdsr --data hr/ --val val/ --out runs/vdsr --json
    """
    from sr_cli.train.loop import train
    from sr_cli.train.options import TrainOverrides
    from sr_cli.train.run_options import resolve_run_options, resume_changes

    flags = TrainOverrides(
        model=model, scale=scale, data=data, out=out, val=val, data_dir=data_dir, steps=steps, batch=batch,
        patch=patch, lr=lr, init=init, resume=resume, amp=amp, ema=ema, seed=seed, workers=workers,
        val_every=val_every, save_every=save_every, log_every=log_every, device=device, blocks=blocks,
        features=features, clip_theta=clip_theta, vgg_weights=vgg_weights, random_vgg=random_vgg,
    )
    options = resolve_run_options(flags, config)
    if int(os.environ.get("RANK", "0")) != 0:
        train(options)
        return
    if options.resume:
        recorded = resume_changes(options)
        if recorded is not None:
            note(f"resuming with the options recorded in {recorded}")
    report = TrainReport(options, json_out=json_out)
    started = time.monotonic()
    with report.running():
        result = train(options, report.callbacks())
    report.finished(result, time.monotonic() - started)

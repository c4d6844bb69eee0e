"""`sr train`: the papers' training recipes (docs/train.md). One process, or K with torchrun:

    torchrun --nproc_per_node=K -m sr_cli train --model edsr-baseline --scale 2 --data div2k --out runs/x2

Only rank 0 draws the live view; the other processes stay silent.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from sr_cli.cli.console import note, stderr, stdout
from sr_cli.cli.options import TrainDevice

if TYPE_CHECKING:  # torch loads only when the command runs
    from sr_cli.train.loop import StepInfo, TrainResult, ValInfo


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _LiveView:
    """Step/s, ETA, losses, lr and the last validation (+ data preparation bars), redrawn in place on stderr."""

    def __init__(self) -> None:
        self.step: StepInfo | None = None
        self.val: ValInfo | None = None
        # Not started on its own: its task table is part of the one Live display (rich allows one).
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), console=stderr)
        self._tasks: dict[str, TaskID] = {}
        self.live = Live(self._render(), console=stderr, refresh_per_second=4, transient=False)

    def _render(self) -> Group:
        table = Table.grid(padding=(0, 2))
        if self.step is not None:
            s = self.step
            losses = "  ".join(f"{k} {v:.4g}" for k, v in s.losses.items())
            table.add_row(f"step {s.step}/{s.total}", f"{s.steps_per_second:.2f} step/s",
                          f"ETA {_duration(s.eta_seconds)}", f"lr {s.lr:.3g}", losses)
        if self.val is not None:
            v = self.val
            scales = "  ".join(f"x{k} {p:.2f}" for k, (p, _) in v.result.per_scale.items()) \
                if len(v.result.per_scale) > 1 else ""
            table.add_row(f"val @ {v.step}", f"PSNR {v.result.psnr:.3f} dB", f"SSIM {v.result.ssim:.4f}",
                          "best" if v.best else "", scales)
        active = [task for task in self.bars.tasks if not task.finished]
        return Group(self.bars.make_tasks_table(active), table) if active else Group(table)

    def on_step(self, info: StepInfo) -> None:
        self.step = info
        self.live.update(self._render())

    def on_val(self, info: ValInfo) -> None:
        self.val = info
        self.live.update(self._render())

    def on_note(self, message: str) -> None:
        self.live.console.print(message, markup=False, highlight=False)

    def on_progress(self, what: str, done: int, total: int) -> None:
        if what not in self._tasks:
            self._tasks[what] = self.bars.add_task(what, total=total or None)
        self.bars.update(self._tasks[what], completed=done, total=total or None)
        self.live.update(self._render())

    def close(self) -> None:
        self.live.stop()
        if not stderr.is_terminal:  # redirected: rich leaves the last frame without a line end
            stderr.print()


def train_command(
    model: Annotated[Optional[str], typer.Option(
        help="Recipe: edsr-baseline, edsr, mdsr-baseline, mdsr, vdsr, esrgan-psnr, esrgan.")] = None,
    scale: Annotated[Optional[int], typer.Option(help="2, 3 or 4 (MDSR/VDSR: all three unless given).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Folder of HR images (recursive), or 'div2k'.")] = None,
    val: Annotated[Optional[str], typer.Option(
        help="Validation: set5 (default), set14, b100, urban100, a folder of HR images, or 'none'.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder, e.g. runs/edsr-x2.")] = None,
    config: Annotated[Optional[Path], typer.Option(
        help="TOML file with the same options (top level or a train table); flags win over it.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Total optimizer updates (recipe default).")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Global batch (split across torchrun processes).")] = None,
    patch: Annotated[Optional[int], typer.Option(help="LR patch side (VDSR: input patch side).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Initial learning rate (recipe default).")] = None,
    init: Annotated[Optional[str], typer.Option(
        help="Start from weights: a file (sr export, run checkpoint, official file) or a model name.")] = None,
    resume: Annotated[Optional[bool], typer.Option(
        "--resume/--no-resume", help="Continue the run in --out exactly where its checkpoint stopped.")] = None,
    amp: Annotated[Optional[str], typer.Option(help="Mixed precision on CUDA: off, bf16, fp16.")] = None,
    ema: Annotated[Optional[float], typer.Option(help="Keep an EMA of the weights (e.g. 0.999); exported.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the init and the data stream.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data loader worker processes.")] = None,
    val_every: Annotated[Optional[int], typer.Option(help="Validate (and export the best) every N updates.")] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Write runs/NAME/last.pt every N updates.")] = None,
    log_every: Annotated[Optional[int], typer.Option(help="Write metrics.jsonl every N updates.")] = None,
    device: TrainDevice = None,
    blocks: Annotated[Optional[int], typer.Option(
        help="Override the recipe's residual blocks / RRDBs / VDSR layers.")] = None,
    features: Annotated[Optional[int], typer.Option(help="Override the recipe's feature channels.")] = None,
    clip_theta: Annotated[Optional[float], typer.Option(
        help="VDSR adjustable gradient clipping theta (0 = off).")] = None,
    vgg_weights: Annotated[Optional[Path], typer.Option(
        help="Local torchvision vgg19-dcbb9e9d.pth for the ESRGAN perceptual loss (else downloaded).")] = None,
    random_vgg: Annotated[Optional[bool], typer.Option(
        "--random-vgg", hidden=True, help="TEST ONLY: random VGG19 weights.")] = None,
) -> None:
    """Train a model with its paper's recipe; exports runs/NAME/model.safetensors."""
    from sr_cli.train.loop import TrainCallbacks, train
    from sr_cli.train.options import TrainOverrides, resolve_options

    flags = TrainOverrides(
        model=model, scale=scale, data=data, out=out, val=val, steps=steps, batch=batch, patch=patch, lr=lr,
        init=init, resume=resume, amp=amp, ema=ema, seed=seed, workers=workers, val_every=val_every,
        save_every=save_every, log_every=log_every, device=device, blocks=blocks, features=features,
        clip_theta=clip_theta, vgg_weights=vgg_weights, random_vgg=random_vgg,
    )
    options = resolve_options(flags, config)
    is_main = int(os.environ.get("RANK", "0")) == 0
    if not is_main:
        train(options)
        return
    view = _LiveView()
    view.live.start()
    try:
        result = train(options, TrainCallbacks(note=view.on_note, progress=view.on_progress, step=view.on_step,
                                               validated=view.on_val))
    finally:
        view.close()
    _summary(result)


def _summary(result: TrainResult) -> None:
    best = (f"best val PSNR {result.best_psnr:.3f} dB at step {result.best_step}"
            if result.best_psnr is not None else "no validation")
    note(f"done: step {result.step}/{result.total_steps}, {best}")
    if result.exported is not None:
        stdout.print(str(result.exported), markup=False)

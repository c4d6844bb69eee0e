"""What `sr train` shows (rank 0), from the loop's `TrainCallbacks` events.

stderr, one of three by where it goes:
- a terminal: the live view, redrawn in place (step/total, it/s, ETA, lr, losses, the last validation
  beside bicubic's PSNR, and bars for data preparation);
- anything else (nohup, CI, a pipe, a file): plain lines, no control codes: one every --log-every updates
  with the same figures, one per validation, and data preparation in tenths;
- -q: nothing but errors.
Then the summary: steps, wall time, device, the best validation PSNR (at which step, against bicubic).

stdout: the exported file's path (one line), or with --json JSON lines only: one `"status": "validated"`
record per validation as it happens, then one `"status": "done"` record for the run (or `"interrupted"`
on Ctrl-C / SIGTERM, after the checkpoint is written).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.live import Live
from rich.progress import TaskID
from rich.table import Table

from sr_cli.cli.console import Verbosity, detail, json_line, note, result_path, shows_progress, stderr, verbosity
from sr_cli.cli.progress import Kind, ProgressCallback, add_bar, progress_bars

if TYPE_CHECKING:  # torch loads only when the command runs
    from sr_cli.train.loop import StepInfo, TrainCallbacks, TrainResult, ValInfo
    from sr_cli.train.options import TrainOptions

COMMAND = "train"


def duration(seconds: float) -> str:
    """'4:05', '1:02:03'; '?' when not known (no rate yet)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def step_cells(info: StepInfo) -> list[str]:
    losses = "  ".join(f"{name} {value:.4g}" for name, value in info.losses.items())
    return [f"step {info.step}/{info.total}", f"{info.steps_per_second:.2f} it/s", f"ETA {duration(info.eta_seconds)}",
            f"lr {info.lr:.3g}", losses]


def val_cells(info: ValInfo) -> list[str]:
    result, bicubic = info.result, info.bicubic
    cells = [f"val @ {info.step}", f"PSNR {result.psnr:.3f} dB",
             f"bicubic {bicubic.psnr:.3f} ({result.psnr - bicubic.psnr:+.3f})", f"SSIM {result.ssim:.4f}",
             "best" if info.best else ""]
    if len(result.per_scale) > 1:
        cells.append("  ".join(f"x{s} {p:.2f}" for s, (p, _) in result.per_scale.items()))
    return cells


def log_line(info: StepInfo, last_val: ValInfo | None) -> str:
    """The plain line written every --log-every updates where no live view can be drawn."""
    cells = [cell for cell in step_cells(info) if cell]
    if last_val is not None:
        cells.append(f"val {last_val.result.psnr:.3f} dB (bicubic {last_val.bicubic.psnr:.3f}) @ {last_val.step}")
    return "  ".join(cells)


def val_line(info: ValInfo, exported: Path | None) -> str:
    result, bicubic = info.result, info.bicubic
    line = (f"val @ {info.step}: PSNR {result.psnr:.3f} dB, bicubic {bicubic.psnr:.3f} dB "
            f"({result.psnr - bicubic.psnr:+.3f}), SSIM {result.ssim:.4f}")
    if len(result.per_scale) > 1:
        line += " (" + ", ".join(f"x{s} {p:.3f}" for s, (p, _) in result.per_scale.items()) + ")"
    return line + (f"; best so far, exported {exported}" if info.best and exported is not None else "")


class _LiveView:
    """The terminal view: one rich Live on stderr holding the bars of the CLI's one bar builder
    (cli/progress.py: data preparation, downloads, and the updates with their rate and ETA) and the
    rows of the last step (lr, losses) and the last validation."""

    def __init__(self) -> None:
        self.step: StepInfo | None = None
        self.val: ValInfo | None = None
        # Not started on its own: its task table is part of the one Live display (rich allows one).
        self.bars = progress_bars(transient=False)
        self._tasks: dict[str, tuple[TaskID, ProgressCallback]] = {}
        self._updates: tuple[TaskID, ProgressCallback] | None = None
        self.live = Live(self._render(), console=stderr, refresh_per_second=4, transient=False)

    def _render(self) -> Group:
        table = Table.grid(padding=(0, 2))
        if self.step is not None:
            table.add_row(f"lr {self.step.lr:.3g}", "  ".join(f"{k} {v:.4g}" for k, v in self.step.losses.items()))
        if self.val is not None:
            table.add_row(*val_cells(self.val))
        updates = self._updates[0] if self._updates is not None else None
        shown = [task for task in self.bars.tasks if task.id == updates or not task.finished]
        return Group(self.bars.make_tasks_table(shown), table) if shown else Group(table)

    def on_step(self, info: StepInfo) -> None:
        self.step = info
        if self._updates is None:
            self._updates = add_bar(self.bars, "train", unit="it", total=info.total)
        self._updates[1](info.step, info.total)
        self.live.update(self._render())

    def on_val(self, info: ValInfo) -> None:
        self.val = info
        self.live.update(self._render())

    def on_note(self, message: str) -> None:
        self.live.console.print(message, markup=False, highlight=False)

    def on_progress(self, what: str, done: int, total: int) -> None:
        if what not in self._tasks:
            kind: Kind = "bytes" if what == "download DIV2K" else "count"  # the archive counts bytes, the rest items
            self._tasks[what] = add_bar(self.bars, what, kind=kind, unit="" if kind == "bytes" else "img",
                                        total=total)
        self._tasks[what][1](done, total)
        self.live.update(self._render())

    def close(self) -> None:
        self.live.stop()


class TrainReport:
    """Turns the loop's events into the live view or plain lines (stderr) and the results (stdout)."""

    def __init__(self, options: TrainOptions, *, json_out: bool) -> None:
        from sr_cli.train.run_options import recorded_values

        self.options = options
        self.json_out = json_out
        self.live = _LiveView() if shows_progress() else None
        self.plain = self.live is None and verbosity() >= Verbosity.NORMAL
        self.last_step: StepInfo | None = None
        self.last_val: ValInfo | None = None
        self._tenths: dict[str, int] = {}
        detail("options: " + ", ".join(f"{key}={value}" for key, value in recorded_values(options).items()))

    def callbacks(self) -> TrainCallbacks:
        from sr_cli.train.loop import TrainCallbacks

        return TrainCallbacks(note=self._note, progress=self._progress, step=self._step, validated=self._validated)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        if self.live is not None:
            self.live.live.start()
        try:
            yield
        except KeyboardInterrupt:
            if self.json_out:
                checkpoint = self.options.out / "last.pt"
                json_line({"command": COMMAND, "status": "interrupted", "run": str(self.options.out),
                           "step": self.last_step.step if self.last_step is not None else None,
                           "checkpoint": str(checkpoint) if checkpoint.is_file() else None})
            raise
        finally:
            if self.live is not None:
                self.live.close()

    def finished(self, result: TrainResult, seconds: float) -> None:
        """The results on stdout (the exported path, or the --json record) and the summary on stderr."""
        rate = self.last_step.steps_per_second if self.last_step is not None else None
        if self.json_out:
            json_line(result_record(result, self.options, seconds, rate))
        elif result.exported is not None:
            result_path(result.exported)
        for line in summary_lines(result, seconds, rate):
            note(line)

    # --- the loop's events -----------------------------------------------------------------------------

    def _note(self, message: str) -> None:
        if self.live is not None:
            self.live.on_note(message)
        else:
            note(message)

    def _progress(self, what: str, done: int, total: int) -> None:
        if self.live is not None:
            self.live.on_progress(what, done, total)
            return
        if not self.plain or total <= 0:
            return
        tenth = min(10, done * 10 // total)
        if tenth > self._tenths.get(what, 0):  # a line per tenth: readable in a log, alive on a long download
            self._tenths[what] = tenth
            amount = f"{done / 1e6:.0f}/{total / 1e6:.0f} MB" if total >= 10**6 else f"{done}/{total}"
            note(f"{what}: {amount} ({done * 100 // total}%)")

    def _step(self, info: StepInfo) -> None:
        self.last_step = info
        if self.live is not None:
            self.live.on_step(info)
        elif self.plain and (info.step % self.options.log_every == 0 or info.step == info.total):
            note(log_line(info, self.last_val))

    def _validated(self, info: ValInfo) -> None:
        self.last_val = info
        exported = self._export_path() if info.best else None
        if self.live is not None:
            self.live.on_val(info)
        elif self.plain:
            note(val_line(info, exported))
        if self.json_out:
            json_line(val_record(info, self.options, exported))

    def _export_path(self) -> Path:
        from sr_cli.train.export import export_path

        return export_path(self.options.out)


def val_record(info: ValInfo, options: TrainOptions, exported: Path | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "command": COMMAND, "status": "validated", "run": str(options.out), "step": info.step,
        "psnr": round(info.result.psnr, 4), "ssim": round(info.result.ssim, 6),
        "bicubic_psnr": round(info.bicubic.psnr, 4), "bicubic_ssim": round(info.bicubic.ssim, 6),
        "best": info.best, "path": str(exported) if exported is not None else None,
    }
    if len(info.result.per_scale) > 1:
        record.update({f"psnr_x{s}": round(p, 4) for s, (p, _) in info.result.per_scale.items()})
    return record


def result_record(result: TrainResult, options: TrainOptions, seconds: float, rate: float | None) -> dict[str, Any]:
    """seconds: the whole command (data preparation and validation included); rate: updates per second
    of the training loop."""
    return {
        "command": COMMAND, "status": "done", "run": str(result.run_dir),
        "path": str(result.exported) if result.exported is not None else None,
        "model": options.model, "scales": list(options.scales), "device": result.device,
        "step": result.step, "total_steps": result.total_steps, "start_step": result.start_step,
        "seconds": round(seconds, 3), "steps_per_second": round(rate, 4) if rate is not None else None,
        "val": options.val,
        "best_psnr": round(result.best_psnr, 4) if result.best_psnr is not None else None,
        "best_step": result.best_step,
        "bicubic_psnr": round(result.bicubic.psnr, 4) if result.bicubic is not None else None,
    }


def summary_lines(result: TrainResult, seconds: float, rate: float | None) -> list[str]:
    """What is left on stderr after the run: what was trained, how fast, how good, and where it went."""
    trained = result.step - result.start_step
    if trained > 0:
        speed = f" (training {rate:.2f} it/s)" if rate is not None else ""
        steps = f"steps {result.start_step + 1}-{result.step}" if trained > 1 else f"step {result.step}"
        first = (f"trained {result.run_dir}: {steps} of {result.total_steps} "
                 f"in {duration(seconds)}{speed}, on {result.device}")
    else:
        first = f"nothing trained: {result.run_dir} is at step {result.step} of {result.total_steps} (raise --steps)"
    if result.best_psnr is not None and result.best_step is not None:
        best = f"best val PSNR {result.best_psnr:.3f} dB at step {result.best_step}"
        if result.bicubic is not None:
            best += f" (bicubic {result.bicubic.psnr:.3f} dB, {result.best_psnr - result.bicubic.psnr:+.3f})"
    else:
        best = "no validation (--val none)" if result.bicubic is None else "not validated yet"
    where = f"exported {result.exported}" if result.exported is not None else "nothing exported"
    return [first, f"{best}; {where}"]

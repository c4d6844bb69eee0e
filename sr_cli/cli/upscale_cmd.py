"""`sr upscale`: parse options, plan the outputs, load the model once, run the batch, render results.

Planning (sr_cli.batch) happens before the model loads, so a typo or an existing output costs nothing.
Progress and warnings go to stderr; with --json, stdout carries one JSON record per file.
"""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import TaskID

from sr_cli.cli.console import note, stderr, warn
from sr_cli.cli.estimate import LongRunCheck
from sr_cli.cli.options import Device, MaxPixels, Overwrite, ResScale
from sr_cli.cli.progress import add_bar, progress_bars
from sr_cli.defaults import DEFAULT_MODEL
from sr_cli.errors import UsageError

if TYPE_CHECKING:  # numpy, cv2, the api and torch load only when the command runs
    import numpy as np

    from sr_cli.api import UpscaleOptions, Upscaler
    from sr_cli.batch import ExistingPolicy, Ignored, Job
    from sr_cli.batch_run import FileResult
    from sr_cli.zoo import ModelSession

MAX_FAILURES_LISTED = 20


def parse_tile(value: str) -> int | None:
    """--tile text: 'auto' -> None (engine decides), else the whole number (UpscaleOptions checks its range)."""
    if value.strip().lower() == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--tile {value}: use a whole number of pixels, 0 (whole image) or auto") from None


def existing_policy(overwrite: bool, skip_existing: bool) -> ExistingPolicy:
    from sr_cli.batch import ExistingPolicy

    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing contradict each other; pick one")
    return ExistingPolicy.OVERWRITE if overwrite else ExistingPolicy.SKIP if skip_existing else ExistingPolicy.ERROR


def upscale(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=(
        "Output file (one input) or folder (created if missing). Default: beside each input."))] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=(
        f"Model name from the manifest (sr weights list). Default: {DEFAULT_MODEL}, shipped with sr (works offline)."
    ))] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", "-w", help="A checkpoint file instead of --model (family detected).")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help=(
        "Model scale (default: the only one the model serves; MDSR: 2, 3 or 4; VDSR: any factor > 1)."))] = None,
    outscale: Annotated[Optional[float], typer.Option("--outscale", help="Final factor, e.g. 3.5: run the model, then resize to exactly this.")] = None,
    tile: Annotated[str, typer.Option("--tile", help="Input tile side in pixels, 0 = whole image, auto = from free memory.")] = "auto",
    overlap: Annotated[Optional[int], typer.Option("--overlap", min=0, help="Context pixels around each tile (default: the model's minimum).")] = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", help="Geometric self-ensemble (8 flips/rotations averaged; 8x slower).")] = False,
    device: Device = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto | fp32 | bf16 | fp16")] = "auto",
    bit_depth: Annotated[Optional[int], typer.Option("--bit-depth", help="8 or 16 bits per channel (default: the input's).")] = None,
    out_format: Annotated[Optional[str], typer.Option("--format", "-f", help="png | jpg | webp | tiff (default: the input's).")] = None,
    quality: Annotated[Optional[int], typer.Option("--quality", min=1, max=100, help="JPEG/WebP quality (default 95; WebP 100 = lossless).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Enter sub-folders; with -o DIR the tree is mirrored.")] = False,
    overwrite: Overwrite = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Keep outputs that exist (resume a stopped run).")] = False,
    alpha: Annotated[Optional[float], typer.Option("--alpha", min=0.0, max=1.0, help="Network interpolation PSNR (0) .. GAN (1), ESRGAN pairs.")] = None,
    denoise: Annotated[Optional[float], typer.Option("--denoise", help=(
        "Denoise strength S, 0..1 (Real-ESRGAN's -dn; realesr-general): 1 = strong, 0 = keep noise."))] = None,
    res_scale: ResScale = None,
    json_records: Annotated[bool, typer.Option("--json", help="One JSON record per file on stdout.")] = False,
    max_pixels: MaxPixels = None,
) -> None:
    """Upscale images with a super-resolution model."""
    from sr_cli.batch import ExistingPolicy, expand_inputs, output_bit_depth, plan_jobs
    from sr_cli.batch_run import RunSettings, remove_stale_temporaries, run_jobs

    if model is not None and weights is not None:
        raise UsageError("give one of --model NAME or --weights FILE, not both")
    chosen: str | Path = model if model is not None else weights if weights is not None else DEFAULT_MODEL
    if bit_depth not in (None, 8, 16):
        raise UsageError(f"--bit-depth {bit_depth}: use 8 or 16")
    policy = existing_policy(overwrite, skip_existing)
    from sr_cli.imageio.budget import check_output_factor, pixel_budget

    budget = pixel_budget(max_pixels)
    options = _upscale_options(parse_tile(tile), overlap, ensemble, device, precision, budget.output)
    session = _model_session()  # one read of a weights file for both questions: its scale, then loading it
    if scale is None and outscale is None:
        scale = float(session.default_scale(chosen, res_scale=res_scale))  # before planning: names carry the scale
    factor = outscale if outscale is not None else scale
    assert factor is not None
    check_output_factor(factor, budget, "--outscale" if outscale is not None else "--scale")  # before any loading

    files, ignored = expand_inputs(inputs, recursive=recursive)
    jobs, own_outputs = plan_jobs(
        files, output=output, factor=factor, model=str(chosen),
        out_format=out_format, existing=policy, recursive=recursive,
    )
    for job in jobs:  # an explicit --bit-depth 16 into JPEG/WebP is a usage error, caught before loading
        output_bit_depth(bit_depth, 8, job.format)
    removed, in_use = remove_stale_temporaries(jobs)
    for path in removed:
        note(f"{path}: removed, a temporary file an interrupted run left behind")
    for path in in_use:
        warn(f"{path}: a temporary file of a run still writing here (or just stopped); left alone")
    leftovers = set(removed) | set(in_use)
    for item in ignored:
        if not item.failed and item.path not in leftovers:
            warn(f"{item.path}: skipped, {item.reason}")
    for item in own_outputs:
        note(f"{item.path}: not an input, {item.reason}")

    renderer = _Renderer(json_records, total=len(jobs))
    with renderer:
        for item in ignored:
            if item.failed:  # e.g. a sub-folder it could not list: the run reports it and fails
                renderer.result(_folder_failure(item))
        upscaler = None
        try:
            if any(not job.skip for job in jobs):
                upscaler = _load(chosen, scale, res_scale, alpha, denoise, outscale, options, renderer, session)
                renderer.weights_used(upscaler)
            # a long CPU run is said once, from the first image's first seconds
            long_run = LongRunCheck(upscaler, [job.source for job in jobs if not job.skip])
            run_jobs(
                jobs,
                upscaler.upscale if upscaler is not None else _never_called,
                RunSettings(bit_depth=bit_depth, quality=quality, overwrite=policy is ExistingPolicy.OVERWRITE,
                            budget=budget, check_output=upscaler.check_output_size if upscaler is not None else None),
                on_file_start=long_run.file_started(renderer.file_started),
                on_tiles=long_run.progress(renderer.tiles),
                on_result=renderer.result,
            )
        except KeyboardInterrupt:
            renderer.stop()
            _summarize(renderer.results, total=len(jobs), interrupted=True)
            raise
    code = _summarize(renderer.results, total=len(jobs))
    if code:
        raise typer.Exit(code)


def _upscale_options(tile: int | None, overlap: int | None, ensemble: bool, device: str, precision: str,
                     max_pixels: int) -> UpscaleOptions:
    from sr_cli.api import UpscaleOptions

    return UpscaleOptions(tile=tile, overlap=overlap, ensemble=ensemble, device=device, precision=precision,
                          max_pixels=max_pixels)


def _model_session() -> ModelSession:
    from sr_cli.zoo import ModelSession

    return ModelSession()


def _load(
    model_or_file: str | Path, scale: float | None, res_scale: float | None, alpha: float | None,
    denoise: float | None, outscale: float | None, options: UpscaleOptions, renderer: _Renderer, session: ModelSession,
) -> Upscaler:
    from sr_cli.api import load_model

    return load_model(model_or_file, scale, res_scale=res_scale, alpha=alpha, denoise=denoise, outscale=outscale,
                      options=options, progress_download=renderer.download, session=session)


def _folder_failure(item: Ignored) -> FileResult:
    from sr_cli.batch_run import FileResult
    from sr_cli.errors import InputError

    return FileResult(str(item.path), "", "failed", f"{item.path}: {item.reason}", InputError.exit_code)


def _never_called(pixels: np.ndarray, progress: object) -> np.ndarray:  # every job was a skip: no model loaded
    raise AssertionError("no model loaded, yet a job ran")


class _Renderer:
    """Rich bars on stderr (files, tiles, downloads) and the --json lines on stdout; thread-safe."""

    def __init__(self, json_records: bool, total: int) -> None:
        self._json = json_records
        self._lock = threading.Lock()
        self._progress = progress_bars()
        self._files, _ = add_bar(self._progress, "files", unit="file", total=total)
        # one file's work in the engine's units (conv layers x ensemble views x tiles): a percentage
        self._tiles, self._on_tiles = add_bar(self._progress, "", kind="percent", visible=False)
        self._download: TaskID | None = None
        self._weights: dict[str, str | None] = {}
        self.results: list[FileResult] = []  # every result so far, in completion order

    def weights_used(self, upscaler: Upscaler) -> None:
        """Say which file runs (a bundled copy, the cache, a --weights file): on stderr and in every --json record."""
        file, digest = getattr(upscaler, "weights_file", None), getattr(upscaler, "weights_sha256", None)
        path = str(file) if file is not None else None
        self._weights = {"model": getattr(upscaler, "name", None), "weights_file": path, "weights_sha256": digest}
        if path is not None:
            note(f"{upscaler.name}: weights {path}")

    def __enter__(self) -> _Renderer:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Remove the bars (the summary that follows must not be drawn over)."""
        with self._lock:
            self._progress.stop()

    def download(self, done: int, total: int) -> None:
        if self._download is None:
            self._download, _ = add_bar(self._progress, "download", kind="bytes", total=total)
        self._progress.update(self._download, completed=done, total=total or None)

    def file_started(self, job: Job, index: int) -> None:
        self._progress.reset(self._tiles, total=None, description=escape(job.source.name), visible=True)

    def tiles(self, done: int, total: int) -> None:
        self._on_tiles(done, total)

    def result(self, result: FileResult) -> None:
        with self._lock:
            self.results.append(result)
            self._progress.advance(self._files)
            for message in result.notes:
                warn(f"{result.input}: {message}")
            if result.status == "failed":
                stderr.print(f"[red]failed:[/] {escape(result.reason or '')}", markup=True, highlight=False)
            if self._json:
                record = {**asdict(result), **self._weights}
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
                sys.stdout.flush()


def _summarize(results: list[FileResult], *, total: int, interrupted: bool = False) -> int:
    """Print done/skipped/failed (failures with reasons) on stderr; the exit code (0, or the first failure's).
    After an interruption: how many files were not started, and how to finish the run."""
    counts = {status: sum(result.status == status for result in results) for status in ("done", "skipped", "failed")}
    summary = f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']}"
    if interrupted:
        not_started = max(total - sum(result.output != "" for result in results), 0)
        note(f"stopped: {summary}, not started {not_started}; the files written are complete")
        note("to finish, run the same command again with --skip-existing (instead of --overwrite, if given): "
             "files already written are kept")
        return 0
    note(summary)
    failures = [result for result in results if result.status == "failed"]
    for result in failures[:MAX_FAILURES_LISTED]:
        note(f"  failed: {result.reason}")
    if len(failures) > MAX_FAILURES_LISTED:
        note(f"  ... and {len(failures) - MAX_FAILURES_LISTED} more")
    return failures[0].exit_code if failures else 0

"""`sr upscale`: parse options, plan the outputs, load the model once, run the batch, render results.

Planning (sr_cli.batch) happens before the model loads, so a typo or an existing output costs nothing.
Results on stdout: each written path on its own line, or with --json one JSON record per file. Progress,
warnings, failures and the closing summary (what ran, as the engine reported it) go to stderr.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import TaskID

from sr_cli.cli.console import Verbosity, detail, error_line, json_line, note, result_path, set_verbosity, warn
from sr_cli.cli.estimate import LongRunCheck
from sr_cli.cli.options import Device, Json, MaxPixels, Overwrite, Quiet, ResScale, Verbose, in_panel
from sr_cli.cli.progress import add_bar, progress_bars
from sr_cli.defaults import DEFAULT_MODEL
from sr_cli.errors import UsageError

if TYPE_CHECKING:  # numpy, cv2, the api and torch load only when the command runs
    import numpy as np

    from sr_cli.api import RunReport, UpscaleOptions, Upscaler
    from sr_cli.batch import ExistingPolicy, Ignored, Job
    from sr_cli.batch_run import FileResult
    from sr_cli.zoo import ModelSession

MAX_FAILURES_LISTED = 20
MAX_TILES_LISTED = 5  # files named when the tile differed between files (--json has every one)


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


INPUT_OUTPUT, MODEL, SPEED, REPORTING = "Input/Output", "Model", "Speed & memory", "Reporting"


def upscale(
    inputs: Annotated[list[str], typer.Argument(
        help="Image files, folders or glob patterns.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", rich_help_panel=INPUT_OUTPUT, help=(
        "Output file (one input) or folder (created if missing). Default: beside each input."))] = None,
    suffix: Annotated[Optional[str], typer.Option("--suffix", rich_help_panel=INPUT_OUTPUT, help=(
        "Name outputs <stem>_<suffix>.<ext>, not <stem>_x<scale>_<model>.<ext>; '' keeps <stem>."))] = None,
    out_format: Annotated[Optional[str], typer.Option("--format", "-f", rich_help_panel=INPUT_OUTPUT, help=(
        "png | jpg | webp | tiff (default: the input's)."))] = None,
    quality: Annotated[Optional[int], typer.Option("--quality", rich_help_panel=INPUT_OUTPUT, help=(
        "JPEG/WebP quality (default 95; WebP 100 = lossless)."))] = None,
    bit_depth: Annotated[Optional[int], typer.Option("--bit-depth", rich_help_panel=INPUT_OUTPUT, help=(
        "8 or 16 bits per channel (default: the input's)."))] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", rich_help_panel=INPUT_OUTPUT, help=(
        "Enter sub-folders; with -o DIR the tree is mirrored."))] = False,
    overwrite: Annotated[bool, in_panel(Overwrite, INPUT_OUTPUT)] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", rich_help_panel=INPUT_OUTPUT, help=(
        "Keep outputs that exist (resume a stopped run)."))] = False,
    max_pixels: Annotated[Optional[str], in_panel(MaxPixels, INPUT_OUTPUT)] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", rich_help_panel=MODEL, help=(
        f"Model name from the manifest (sr weights list). Default: {DEFAULT_MODEL}, shipped with sr (works offline)."
    ))] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", "-w", rich_help_panel=MODEL, help=(
        "A checkpoint file instead of --model (family detected)."))] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", rich_help_panel=MODEL, help=(
        "Model scale (default: the only one the model serves; MDSR: 2, 3 or 4; VDSR: any factor > 1)."))] = None,
    outscale: Annotated[Optional[float], typer.Option("--outscale", rich_help_panel=MODEL, help=(
        "Final factor, e.g. 3.5: run the model, then resize to exactly this."))] = None,
    alpha: Annotated[Optional[float], typer.Option("--alpha", rich_help_panel=MODEL, help=(
        "Network interpolation PSNR (0) .. GAN (1), ESRGAN pairs."))] = None,
    denoise: Annotated[Optional[float], typer.Option("--denoise", rich_help_panel=MODEL, help=(
        "Denoise strength S, 0..1 (Real-ESRGAN's -dn; realesr-general): 1 = strong, 0 = keep noise."))] = None,
    res_scale: Annotated[Optional[float], in_panel(ResScale, MODEL)] = None,
    tile: Annotated[str, typer.Option("--tile", rich_help_panel=SPEED, help=(
        "Input tile side in pixels, 0 = whole image, auto = from free memory."))] = "auto",
    overlap: Annotated[Optional[int], typer.Option("--overlap", min=0, rich_help_panel=SPEED, help=(
        "Context pixels around each tile (default: the model's minimum)."))] = None,
    ensemble: Annotated[bool, typer.Option("--ensemble", rich_help_panel=SPEED, help=(
        "Geometric self-ensemble (8 flips/rotations averaged; 8x slower)."))] = False,
    device: Annotated[str, in_panel(Device, SPEED)] = "auto",
    precision: Annotated[str, typer.Option("--precision", rich_help_panel=SPEED, help="auto | fp32 | bf16 | fp16")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", rich_help_panel=SPEED, help=(
        "torch.compile the model (long GPU runs); if compiling fails it runs without."))] = False,
    json_records: Annotated[bool, in_panel(Json, REPORTING)] = False,
    quiet: Annotated[bool, in_panel(Quiet, REPORTING)] = False,
    verbose: Annotated[bool, in_panel(Verbose, REPORTING)] = False,
) -> None:
    """Upscale images with a super-resolution model.

    Written paths go to stdout, one per line (pipe them to xargs). Progress,
    warnings and a closing summary go to stderr: counts, time, model, weights
    file, device, precision, tile, ensemble.

    Examples:

      sr upscale photo.png

      sr upscale shots/ -o big/ --suffix sr -q | xargs ls -l

      sr upscale shots/ -o big/ --skip-existing --json > report.jsonl
    """
    from sr_cli import distributed, scaleout
    from sr_cli.batch import ExistingPolicy, expand_inputs, output_bit_depth, plan_jobs
    from sr_cli.batch_run import RowUpscaler, RunSettings, remove_stale_temporaries, run_jobs
    from sr_cli.errors import SRError

    started = time.perf_counter()
    context = scaleout.start(device)  # torchrun: this process's place, GPU and threads (no-op alone)
    if not context.is_main:  # rank 0 alone speaks: errors, warnings, results, the summary
        set_verbosity(Verbosity.QUIET)
    completed = False
    try:
        with distributed.together(context):  # every rank plans the whole batch; a failure stops all
            if model is not None and weights is not None:
                raise UsageError("give one of --model NAME or --weights FILE, not both")
            chosen: str | Path = model if model is not None else weights if weights is not None else DEFAULT_MODEL
            if bit_depth not in (None, 8, 16):
                raise UsageError(f"--bit-depth {bit_depth}: use 8 or 16")
            # ranges checked here, not by typer: its "[1<=x<=100]" would widen the help's type column at 80 columns
            if quality is not None and not 1 <= quality <= 100:
                raise UsageError(f"--quality {quality}: use 1 to 100 (WebP 100 = lossless)")
            if alpha is not None and not 0.0 <= alpha <= 1.0:
                raise UsageError(f"--alpha {alpha:g}: use 0 (the PSNR model) to 1 (the GAN model)")
            policy = existing_policy(overwrite, skip_existing)
            from sr_cli.imageio.budget import check_output_factor, pixel_budget

            budget = pixel_budget(max_pixels)
            options = _upscale_options(parse_tile(tile), overlap, ensemble, device, precision, budget.output,
                                       compile_model)
            session = _model_session()  # one read of a weights file for both questions: its scale, then loading it
            if scale is None and outscale is None:
                scale = float(session.default_scale(chosen, res_scale=res_scale))  # before planning: names carry the scale
            factor = outscale if outscale is not None else scale
            assert factor is not None
            check_output_factor(factor, budget, "--outscale" if outscale is not None else "--scale")  # before any loading

            files, ignored = expand_inputs(inputs, recursive=recursive)
            jobs, own_outputs = plan_jobs(
                files, output=output, factor=factor, model=str(chosen),
                out_format=out_format, existing=policy, recursive=recursive, suffix=suffix,
            )
            for job in jobs:  # an explicit --bit-depth 16 into JPEG/WebP is a usage error, caught before loading
                output_bit_depth(bit_depth, 8, job.format)
        scaleout.check_same_plan(jobs, context)
        share = scaleout.share_for_rank(jobs, context)
        with distributed.together(context):  # rank 0 alone tidies up (after every rank planned)
            removed, in_use = remove_stale_temporaries(jobs) if context.is_main else ([], [])
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
        detail(f"pixel budget: {budget.input:,} px read, {budget.output:,} px made; "
               f"{len(jobs)} file(s) planned, {sum(job.skip for job in jobs)} kept (--skip-existing)")

        renderer = _Renderer(json_records, total=len(jobs), out_format=out_format)
        collected: list[FileResult] = []  # torchrun: this rank's results, rendered by rank 0 once all are in
        on_result = collected.append if context.distributed else renderer.result
        with renderer:
            if context.is_main:
                for item in ignored:
                    if item.failed:  # e.g. a sub-folder it could not list: the run reports it and fails
                        on_result(_folder_failure(item))
            try:
                # rank 0 loads whenever anything runs (its summary names the model), another rank when its
                # share has work; local rank 0 first, so a download happens once per machine
                needed = any(not job.skip for job in (jobs if context.is_main else share.jobs))
                for loads_now in (context.local_rank == 0, context.local_rank != 0):
                    with distributed.together(context):
                        if loads_now and needed:
                            loaded = _load(chosen, scale, res_scale, alpha, denoise, outscale, options, renderer, session)
                            renderer.weights_used(loaded, Blend(alpha=alpha, denoise=denoise))
                upscaler = renderer.upscaler
                # a long CPU run is said once, from the first image's first seconds
                long_run = LongRunCheck(upscaler, [job.source for job in share.jobs if not job.skip])
                with distributed.together(context):
                    run_jobs(
                        share.jobs,
                        upscaler.upscale_with_report if upscaler is not None else _never_called,
                        RunSettings(bit_depth=bit_depth, quality=quality, overwrite=policy is ExistingPolicy.OVERWRITE,
                                    budget=budget, check_output=upscaler.check_output_size if upscaler is not None else None,
                                    # a stand-in for the Upscaler (tests) may not stream
                                    row_upscaler=upscaler if isinstance(upscaler, RowUpscaler) else None),
                        on_file_start=long_run.file_started(renderer.file_started),
                        on_tiles=long_run.progress(renderer.tiles),
                        on_result=on_result,
                    )
                fallback = getattr(upscaler, "compile_fallback_reason", None)  # a test stand-in has none
                if fallback:
                    warn(f"--compile: torch.compile failed, the model ran without it ({fallback})")
            except KeyboardInterrupt:
                renderer.stop()
                if context.distributed:
                    note(f"torchrun: the counts below are process 0's share ({len(share.jobs)} of {len(jobs)} files)")
                _summarize(collected or renderer.results, total=len(share.jobs), interrupted=True)
                raise
            results = scaleout.gather_results(collected, jobs, context) if context.distributed else renderer.results
            if context.distributed and context.is_main:
                for result in results:  # all ranks' results, in the plan's order
                    renderer.result(result)
        if context.distributed:
            note(f"torchrun: {context.world_size} processes, files per process: {', '.join(map(str, share.counts))}")
        code = _summarize(results, total=len(jobs), seconds=time.perf_counter() - started,
                          upscaler=renderer.upscaler, ensemble=ensemble, blend=renderer.blend)
        completed = True
    except SRError:
        if context.is_main:
            raise
        # Shared with rank 0, which says it and exits with its code. The others end cleanly: torchrun
        # stops every process when one fails, and would report them (killed) beside the real cause.
        raise typer.Exit(0) from None
    finally:
        distributed.teardown(context, completed=completed)
    if code and context.is_main:  # the other ranks leave the outcome to rank 0 (see above)
        raise typer.Exit(code)


def _upscale_options(tile: int | None, overlap: int | None, ensemble: bool, device: str, precision: str,
                     max_pixels: int, compile_model: bool) -> UpscaleOptions:
    from sr_cli.api import UpscaleOptions

    return UpscaleOptions(tile=tile, overlap=overlap, ensemble=ensemble, device=device, precision=precision,
                          max_pixels=max_pixels, compile=compile_model)


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


def _never_called(pixels: np.ndarray, progress: object) -> tuple[np.ndarray, RunReport]:  # every job was a skip
    raise AssertionError("no model loaded, yet a job ran")


class _Renderer:
    """Rich bars on stderr (files, tiles, downloads); each result as it comes: its path on stdout (or its
    --json record), its warnings and failure on stderr, the -v details of how it ran. Thread-safe."""

    def __init__(self, json_records: bool, total: int, out_format: str | None = None) -> None:
        self._json = json_records
        self._out_format = out_format
        self._lock = threading.Lock()
        self._progress = progress_bars()
        self._files, _ = add_bar(self._progress, "files", unit="file", total=total)
        # one file's work in the engine's units (conv layers x ensemble views x tiles): a percentage
        self._tiles, self._on_tiles = add_bar(self._progress, "", kind="percent", visible=False)
        self._download: TaskID | None = None
        self.upscaler: Upscaler | None = None
        self.blend = Blend()
        self.results: list[FileResult] = []  # every result so far, in completion order

    def weights_used(self, upscaler: Upscaler, blend: Blend) -> None:
        """Remember which model and file run (for the summary and every --json record); -v says it now,
        with how the device, precision and tile were resolved."""
        self.upscaler = upscaler
        self.blend = blend
        options = upscaler.options
        if upscaler.weights_file is not None:
            detail(f"weights: {upscaler.weights_source} {upscaler.weights_file} (sha256 {upscaler.weights_sha256})")
        detail(f"model: {upscaler.name} ({upscaler.family}, net x{upscaler.model_scale}, output x{upscaler.output_scale:g})")
        detail(f"device: {options.device} -> {upscaler.device_description}; precision: {options.precision} -> {upscaler.precision}")
        detail(f"tile: {_tile_request(options.tile)}; overlap {upscaler.overlap} px; ensemble {_on_off(options.ensemble)}")

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
                error_line(result.reason or "")
            if result.run is not None:
                detail(f"{result.input}: {_plan_text(result.run)}, {result.seconds:.2f} s")
            if self._json:
                json_line(self._record(result))
            elif result.status == "done":
                result_path(result.output)

    def _record(self, result: FileResult) -> dict[str, object]:
        """The --json record: flat, one shape for every command ("command", "status" first)."""
        upscaler = self.upscaler
        run = result.run
        fields = asdict(result)
        del fields["run"]
        return {
            "command": "upscale", "status": fields.pop("status"), **fields,
            "format": format_as_said(self._out_format, result.output) if result.output else None,
            "model": upscaler.name if upscaler is not None else None,
            "weights_file": str(upscaler.weights_file) if upscaler is not None and upscaler.weights_file else None,
            "weights_source": upscaler.weights_source if upscaler is not None else None,
            "weights_sha256": upscaler.weights_sha256 if upscaler is not None else None,
            "alpha": self.blend.alpha, "denoise": self.blend.denoise,
            "device": run.device if run else None,
            "precision": run.precision if run else None,
            "tile": run.tile if run else None,
            "ensemble": run.ensemble if run else None,
            "tiles": run.tiles if run else None,
            "oom_splits": run.oom_splits if run else None,
            "fp32_redos": run.fp32_redos if run else None,
            "memory_budget": run.memory_budget if run else None,
            "cost_per_pixel": run.cost_per_pixel if run else None,
        }


@dataclass(frozen=True)
class Blend:
    """--alpha / --denoise: the weights that ran are the file's blended with its partner's."""

    alpha: float | None = None
    denoise: float | None = None

    def describe(self) -> str:
        if self.alpha is not None:
            return f", blended with its PSNR/GAN partner at --alpha {self.alpha:g}"
        if self.denoise is not None:
            return f", blended with its denoise partner at --denoise {self.denoise:g}"
        return ""


def format_as_said(out_format: str | None, output: str | Path) -> str:
    """The output format in the user's words: `--format jpg` stays `jpg` (not `jpeg`), else the suffix
    of the output name (`-o big.jpeg` gives `jpeg`, a `.tif` input gives `tif`)."""
    if out_format:
        return out_format.strip().lower()
    return Path(output).suffix.lstrip(".").lower()


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def _tile_request(tile: int | None) -> str:
    if tile is None:
        return "auto (sized for each image from the free memory)"
    return "whole image (--tile 0)" if tile == 0 else f"{tile} px (--tile)"


def _tile_text(tile: int) -> str:
    return "whole image" if tile == 0 else f"{tile} px"


def _plan_text(run: RunReport) -> str:
    """-v, per file: the tile plan the engine ran and the memory budget it was sized for."""
    text = f"tile {_tile_text(run.tile)} ({run.tiles} forward pass(es)), device {run.device}, {run.precision}"
    if run.memory_budget is not None:
        per_pixel = f" at {_bytes(run.cost_per_pixel)}/px" if run.cost_per_pixel else ""
        text += f" (auto: memory budget {_bytes(run.memory_budget)}{per_pixel})"
    if run.oom_splits:
        text += f", halved {run.oom_splits}x after out of memory"
    if run.fp32_redos:
        text += f", {run.fp32_redos} tile(s) redone in fp32"
    return text


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _summarize(results: list[FileResult], *, total: int, interrupted: bool = False, seconds: float | None = None,
               upscaler: Upscaler | None = None, ensemble: bool = False, blend: Blend | None = None) -> int:
    """Print the closing summary on stderr (silent with -q; failures are listed, by error_line, as they
    happen): counts and wall time, then what ran -- model, weights file, device, precision, tile,
    ensemble -- from what the engine reported. Returns the exit code (0, or the first failure's).
    After an interruption: how many files were not started, and how to finish the run."""
    counts = {status: sum(result.status == status for result in results) for status in ("done", "skipped", "failed")}
    summary = f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']}"
    if interrupted:
        not_started = max(total - sum(result.output != "" for result in results), 0)
        note(f"stopped: {summary}, not started {not_started}; the files written are complete")
        note("to finish, run the same command again with --skip-existing (instead of --overwrite, if given): "
             "files already written are kept")
        return 0
    note(summary + (f" in {_duration(seconds)}" if seconds is not None else ""))
    if upscaler is not None:
        note("  " + _model_line(upscaler) + (blend.describe() if blend is not None else ""))
        note("  " + _run_line([result for result in results if result.run is not None], upscaler, ensemble))
    failures = [result for result in results if result.status == "failed"]
    for result in failures[:MAX_FAILURES_LISTED]:
        note(f"  failed: {result.reason}")
    if len(failures) > MAX_FAILURES_LISTED:
        note(f"  ... and {len(failures) - MAX_FAILURES_LISTED} more")
    return failures[0].exit_code if failures else 0


def _model_line(upscaler: Upscaler) -> str:
    if upscaler.weights_file is None:
        return f"model {upscaler.name}"
    return f"model {upscaler.name}, weights ({upscaler.weights_source}) {upscaler.weights_file}"


def _run_line(ran: list[FileResult], upscaler: Upscaler, ensemble: bool) -> str:
    """Device, precision, tile and ensemble as the engine ran them; before any file ran (all failed),
    the device and precision resolved for the run."""
    runs = [result.run for result in ran if result.run is not None]
    if not runs:
        return (f"device {upscaler.device_description}, precision {upscaler.precision}, ensemble {_on_off(ensemble)} "
                "(no file ran to the end)")
    devices = sorted({run.device for run in runs})
    precision: str = runs[0].precision
    redos = sum(run.fp32_redos for run in runs)
    if redos:
        precision += f" ({redos} tile(s) redone in fp32)"
    tiles = {run.tile for run in runs}
    if len(tiles) == 1:
        tile = f"tile {_tile_text(runs[0].tile)}"
    else:
        listed = [f"{Path(result.input).name} {_tile_text(result.run.tile)}" for result in ran if result.run is not None]
        more = f", ... ({len(listed) - MAX_TILES_LISTED} more)" if len(listed) > MAX_TILES_LISTED else ""
        tile = "tile per file: " + ", ".join(listed[:MAX_TILES_LISTED]) + more
    splits = sum(run.oom_splits for run in runs)
    if splits:
        tile += f" (halved {splits}x after out of memory)"
    return f"device {', '.join(devices)}, precision {precision}, {tile}, ensemble {_on_off(runs[0].ensemble)}"

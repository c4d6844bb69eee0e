"""Run planned upscale jobs: a reader thread, compute on the calling thread, a writer thread.

Bounded queues (two images each way) keep memory flat while loading and saving overlap the model.
One file that fails (unreadable, alpha into JPEG, a model error) is recorded and the batch goes on.
On Ctrl-C (or SIGTERM, which the CLI turns into the same KeyboardInterrupt) the calling thread stops,
the writer finishes the (atomic) write it is in, and KeyboardInterrupt propagates: no partial file,
no temporary file, and a rerun with --skip-existing picks up where this one stopped. Both threads
are daemons joined with a time limit, so a reader stuck in the kernel (a hung network mount) or a
very long write never keeps the process alive; a temporary such a write leaves behind (as a SIGKILL
would) is removed by the next run into that folder (`remove_stale_temporaries`).
"""
from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from sr_cli.batch import Job, output_bit_depth
from sr_cli.errors import OutputError, SRError
from sr_cli.files.atomic import TEMPORARY_SUFFIX
from sr_cli.imageio import FORMATS_WITH_ALPHA, Image, read_image, write_image, write_image_rows, writes_rows
from sr_cli.imageio.budget import PixelBudget

if TYPE_CHECKING:  # the api imports torch; this module is used before (and without) it
    from sr_cli.api import RunReport

Progress = Callable[[int, int], None]
# Upscaler.upscale_with_report: the pixels, and how the engine ran them (device, precision, tile).
UpscaleFunction = Callable[[np.ndarray, Progress | None], "tuple[np.ndarray, RunReport]"]
Status = Literal["done", "skipped", "failed"]
QUEUE_DEPTH = 2
POLL_SECONDS = 0.1
UNEXPECTED_EXIT_CODE = 1
WRITER_GRACE_SECONDS = 10.0  # an interrupted run waits this long for the write in progress to complete
READER_GRACE_SECONDS = 0.5  # reading has no side effect: a reader that does not stop by then is left behind
# `<output name>.<8 hex>.tmp`: what sr_cli.files.atomic.temporary_path_for makes (tests cross-check it).
TEMPORARY_NAME = re.compile(r"(?P<target>.+)\.[0-9a-f]{8}" + re.escape(TEMPORARY_SUFFIX))
STALE_TEMPORARY_SECONDS = 60.0  # younger ones may belong to a run still writing into the same folder
# A result whose float canvas (3 channels x 4 bytes a pixel) would be larger is streamed to its file row band by
# row band where it can be (RowUpscaler, imageio.writes_rows): memory stays bounded. Below it the whole result is
# made first and written by the writer thread, overlapping the next image's compute.
STREAM_ABOVE_CANVAS_BYTES = 256 * 1024**2


@runtime_checkable
class RowUpscaler(Protocol):
    """What streaming an output needs of the model (sr_cli.api.Upscaler has it)."""

    def output_size(self, height: int, width: int) -> tuple[int, int]: ...

    def why_not_streamed(self, shape: tuple[int, ...], dtype: np.dtype) -> str | None: ...

    def upscale_rows_with_report(self, image: np.ndarray, bit_depth: int, progress: Progress | None = None,
                                 ) -> tuple[Iterator[np.ndarray], Callable[[], RunReport]]: ...


@dataclass
class FileResult:
    """What happened to one input (the `--json` record)."""

    input: str
    output: str
    status: Status
    reason: str | None = None
    exit_code: int = 0
    notes: list[str] = field(default_factory=list)
    input_size: tuple[int, int] | None = None  # (width, height)
    output_size: tuple[int, int] | None = None
    bit_depth: int | None = None
    format: str | None = None
    seconds: float | None = None
    run: RunReport | None = None  # how the engine ran it; None when it did not (skipped, failed before or in the model)


@dataclass(frozen=True)
class RunSettings:
    bit_depth: int | None = None  # None: the input's
    quality: int | None = None
    overwrite: bool = False  # replace outputs; without it a file that appears after planning is kept (a failure)
    budget: PixelBudget | None = None  # pixel limits; None: SR_MAX_PIXELS or the defaults
    # Refuses an input whose result would be over the output limit, naming the file (Upscaler.check_output_size).
    check_output: Callable[[object, int, int], None] | None = None
    # Streams large results to their files (PNG, TIFF); None: every result is made whole first.
    row_upscaler: RowUpscaler | None = None
    stream_above_bytes: int = STREAM_ABOVE_CANVAS_BYTES


@dataclass
class _Computed:
    job: Job
    image: Image
    pixels: np.ndarray | None  # None: already streamed to the output file
    bit_depth: int
    notes: list[str]
    started: float
    run: RunReport
    size: tuple[int, int]  # (height, width) of the result


_END = object()


def run_jobs(
    jobs: Sequence[Job],
    upscale: UpscaleFunction,
    settings: RunSettings,
    *,
    on_file_start: Callable[[Job, int], None] | None = None,
    on_tiles: Progress | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Process every job that is not a skip; returns one result per job, in completion order.
    ``on_result`` is called from the writer thread too: it must be thread-safe. KeyboardInterrupt
    propagates after both threads have stopped."""
    results: list[FileResult] = []
    lock = threading.Lock()

    def report(result: FileResult) -> None:
        with lock:
            results.append(result)
            if on_result is not None:
                on_result(result)

    for job in jobs:
        if job.skip:
            report(FileResult(str(job.source), str(job.output), "skipped", "output exists (--skip-existing)", notes=_job_notes(job), format=job.format))
    pending = [job for job in jobs if not job.skip]
    stop = threading.Event()
    crashed: list[BaseException] = []  # a thread that died (e.g. on_result raised): the run stops and re-raises it
    loaded: queue.Queue[object] = queue.Queue(maxsize=QUEUE_DEPTH)
    computed: queue.Queue[object] = queue.Queue(maxsize=QUEUE_DEPTH)
    reader = _thread("sr-reader", lambda: _read_all(pending, settings, loaded, stop), stop, crashed)
    writer = _thread("sr-writer", lambda: _write_all(computed, settings, report, stop), stop, crashed)
    reader.start()
    writer.start()
    try:
        for index, (job, image, error) in enumerate(_drain(loaded, stop)):
            if on_file_start is not None:
                on_file_start(job, index)
            started = time.perf_counter()
            if error is not None:
                report(_failed(job, error, started))
                continue
            assert image is not None
            try:
                item = _compute(job, image, upscale, settings, on_tiles, started)
            except Exception as failure:  # reported in the summary and the exit code; the batch goes on
                report(_failed(job, failure, started, image))
                continue
            _put(computed, item, stop)
        _put(computed, _END, stop)
    except BaseException:
        stop.set()
        writer.join(WRITER_GRACE_SECONDS)  # the write in progress completes (atomic either way)
        reader.join(READER_GRACE_SECONDS)
        raise
    reader.join()
    writer.join()
    if crashed:
        raise crashed[0]
    return results


def _thread(name: str, body: Callable[[], None], stop: threading.Event, crashed: list[BaseException]) -> threading.Thread:
    """A daemon thread (it never keeps the process alive; run_jobs waits for it as long as it should)
    that stops the whole run if its body raises."""
    def guarded() -> None:
        try:
            body()
        except BaseException as error:  # kept and re-raised on the calling thread by run_jobs
            crashed.append(error)
            stop.set()

    return threading.Thread(target=guarded, name=name, daemon=True)


def _read_all(jobs: Sequence[Job], settings: RunSettings, loaded: queue.Queue[object], stop: threading.Event) -> None:
    for job in jobs:
        if stop.is_set():
            return
        try:
            item: tuple[Job, Image | None, Exception | None] = (job, read_image(job.source, budget=settings.budget), None)
        except Exception as error:  # handed to the compute loop, which records it for this file
            item = (job, None, error)
        if not _put(loaded, item, stop):
            return
    _put(loaded, _END, stop)


def _drain(loaded: queue.Queue[object], stop: threading.Event) -> Iterator[tuple[Job, Image | None, Exception | None]]:
    while not stop.is_set():
        try:
            item = loaded.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        if item is _END:
            return
        yield item  # type: ignore[misc]


def _put(target: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Put unless the run is stopping; False when it stopped first."""
    while not stop.is_set():
        try:
            target.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _compute(job: Job, image: Image, upscale: UpscaleFunction, settings: RunSettings, on_tiles: Progress | None, started: float) -> _Computed:
    if image.has_alpha and job.format not in FORMATS_WITH_ALPHA:  # fail before spending compute on it
        raise OutputError(f"{job.output}: the image has an alpha channel and {job.format.upper()} cannot store one; use --format png, webp or tiff")
    if settings.check_output is not None:  # before the model allocates the result
        settings.check_output(job.source, *image.pixels.shape[:2])
    depth, note = output_bit_depth(settings.bit_depth, image.metadata.bit_depth, job.format)
    notes = list(image.notes) + ([note] if note else [])
    streamed, held_note = _stream_choice(job, image, depth, settings)
    if held_note:
        notes.append(held_note)
    if streamed is not None:
        height, width = streamed.output_size(*image.pixels.shape[:2])
        bands, report = streamed.upscale_rows_with_report(image.pixels, depth, on_tiles)
        job.output.parent.mkdir(parents=True, exist_ok=True)
        notes += write_image_rows(job.output, bands, width=width, height=height, channels=image.pixels.shape[2],
                                  bit_depth=depth, metadata=image.metadata, format=job.format,
                                  overwrite=settings.overwrite)
        return _Computed(job, image, None, depth, notes, started, report(), (height, width))
    pixels, run = upscale_at_bit_depth(upscale, image.pixels, depth, on_tiles)
    return _Computed(job, image, pixels, depth, notes, started, run, pixels.shape[:2])


def _stream_choice(job: Job, image: Image, depth: int, settings: RunSettings) -> tuple[RowUpscaler | None, str | None]:
    """Whether this result goes to its file in row bands as it is computed, and the note when a large
    result cannot (it is then held in memory whole)."""
    rows = settings.row_upscaler
    if rows is None:
        return None, None
    height, width = rows.output_size(*image.pixels.shape[:2])
    if height * width * 3 * 4 <= settings.stream_above_bytes:
        return None, None
    reason = rows.why_not_streamed(image.pixels.shape, image.pixels.dtype)
    if reason is None and not writes_rows(job.format, depth, image.metadata):
        reason = f"{job.format.upper()} is encoded from the whole image (PNG and TIFF are written in rows)"
    if reason is not None:
        return None, f"the {width}x{height} result is held in memory whole: {reason}"
    return rows, None


def upscale_at_bit_depth(upscale: UpscaleFunction, pixels: np.ndarray, bit_depth: int,
                         progress: Progress | None) -> tuple[np.ndarray, RunReport]:
    """Run the model and return uint8/uint16 at ``bit_depth`` (and the engine's report). When it differs
    from the input's, the model runs on float [0, 1] so 8-bit input gains real 16-bit precision (and
    16-bit input is rounded once, at the end)."""
    source_depth = 16 if pixels.dtype == np.uint16 else 8
    if source_depth == bit_depth:
        return upscale(pixels, progress)
    source_max = 65535.0 if source_depth == 16 else 255.0
    result, run = upscale(pixels.astype(np.float32) / np.float32(source_max), progress)
    target_max, target_type = (65535.0, np.uint16) if bit_depth == 16 else (255.0, np.uint8)
    return np.rint(np.clip(result, 0.0, 1.0) * target_max).astype(target_type), run


def _write_all(computed: queue.Queue[object], settings: RunSettings, report: Callable[[FileResult], None], stop: threading.Event) -> None:
    while True:
        try:
            item = computed.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if stop.is_set():
                return
            continue
        if item is _END or stop.is_set():
            return
        assert isinstance(item, _Computed)
        try:
            notes: list[str] = []
            if item.pixels is not None:  # else the compute thread streamed it to its file already
                item.job.output.parent.mkdir(parents=True, exist_ok=True)
                notes = write_image(item.job.output, item.pixels, item.image.metadata, format=item.job.format,
                                    quality=settings.quality, bit_depth=item.bit_depth, overwrite=settings.overwrite)
        except Exception as error:  # reported in the summary and the exit code; the batch goes on
            report(_failed(item.job, error, item.started, item.image))
            continue
        height, width = item.size
        report(FileResult(
            str(item.job.source), str(item.job.output), "done",
            notes=_job_notes(item.job) + item.notes + notes,
            input_size=(item.image.pixels.shape[1], item.image.pixels.shape[0]),
            output_size=(width, height),
            bit_depth=item.bit_depth,
            format=item.job.format,
            seconds=round(time.perf_counter() - item.started, 3),
            run=item.run,
        ))


def _failed(job: Job, error: Exception, started: float, image: Image | None = None) -> FileResult:
    if isinstance(error, SRError):
        reason, code = str(error), error.exit_code
    elif isinstance(error, OSError) and error.strerror:  # e.g. the output folder cannot be created
        reason, code = f"{job.output}: {error.strerror}; check the output folder", OutputError.exit_code
    else:  # not one of ours: keep the type, it is what a bug report needs
        reason, code = f"{job.source}: {type(error).__name__}: {error}", UNEXPECTED_EXIT_CODE
    size = (image.pixels.shape[1], image.pixels.shape[0]) if image is not None else None
    return FileResult(str(job.source), str(job.output), "failed", reason, code, _job_notes(job) + (list(image.notes) if image else []),
                      input_size=size, format=job.format, seconds=round(time.perf_counter() - started, 3))


def _job_notes(job: Job) -> list[str]:
    return [job.note] if job.note else []


def remove_stale_temporaries(jobs: Sequence[Job], *, now: float | None = None) -> tuple[list[Path], list[Path]]:
    """Temporaries of this run's outputs that an earlier, killed run left in the output folders.
    Returns (removed, kept): those older than STALE_TEMPORARY_SECONDS are removed; younger ones may
    belong to a run writing there right now and are only reported. Other files are never touched."""
    wanted: dict[Path, set[str]] = {}
    for job in jobs:
        wanted.setdefault(job.output.parent, set()).add(job.output.name)
    now = time.time() if now is None else now
    removed: list[Path] = []
    kept: list[Path] = []
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # not created yet, or not listable: nothing of ours can be there
            continue
        for entry in entries:
            match = TEMPORARY_NAME.fullmatch(entry.name)
            if match is None or match["target"] not in names:
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if now - entry.stat(follow_symlinks=False).st_mtime < STALE_TEMPORARY_SECONDS:
                    kept.append(Path(entry.path))
                    continue
                os.unlink(entry.path)
            except OSError:
                kept.append(Path(entry.path))
                continue
            removed.append(Path(entry.path))
    return sorted(removed), sorted(kept)

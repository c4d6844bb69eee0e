"""At the start of a long CPU job: how long it will take, said once, with the faster choices.

work   = the model's multiply-accumulates per pixel (engine `profile_forward`, from its conv shapes)
         x the pixels each image puts through the network x ensemble views x (2 with an alpha pass)
rate   = MACs per second, measured on the first units of the run itself (`LongRunCheck`: the share of
         the first image done in CALIBRATION_SECONDS after its first unit, times its work, over that
         time), so nothing is spent on a calibration and the figure is the machine's real speed
time   = work of every input / rate; above LONG_RUN_SECONDS it is said once on stderr (not with -q),
         with what would make it faster.

The pure parts (`estimate_run`, `long_run_message`) take the rate as a number, and `LongRunCheck` takes
its clock, so tests inject both. A timed probe forward was tried first and dropped: a probe small enough
to be cheap ran RRDB 6x slower per pixel than the real image and told a 36-minute run it took 4 hours.
The figure is still rough ("about 7 min"): it is meant to let a person choose before waiting; the bars
then give the ETA.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sr_cli.cli.console import Verbosity, note, verbosity

if TYPE_CHECKING:
    from sr_cli.api import Upscaler
    from sr_cli.batch import Job

LONG_RUN_SECONDS = 60.0
CALIBRATION_SECONDS = 3.0  # of the first image's work before the rate is taken (or the whole image, if quicker)
# SRVGG compact (realesr-general-x4v3: 32 convs of 64 features), MACs per input pixel: a model this cheap
# is already the fast choice (tests check the figure against the engine's count).
COMPACT_MACS_PER_PIXEL = 1.21e6
MAX_HEADERS_READ = 1000  # headers read for the estimate (a few ms each), once
SMALLER_MODEL = "a smaller model (--model realesr-general-x4v3; offline: the bundled realesr-animevideov3, for drawings)"


@dataclass(frozen=True)
class RunEstimate:
    images: int
    macs: float  # multiply-accumulates of the whole run
    macs_per_second: float
    on_cpu: bool
    ensemble: bool
    macs_per_input_pixel: float  # of the run, per pixel of the inputs (views and pre-upscaling included)
    runs_at_output_size: bool  # the network runs on the upscaled image: a smaller --outscale saves work

    @property
    def seconds(self) -> float:
        return self.macs / self.macs_per_second


def estimate_run(upscaler: Upscaler, sizes: Iterable[tuple[int, int, bool]], *,
                 macs_per_second: float, images: int | None = None) -> RunEstimate:
    """The estimate for images of (width, height, has_alpha) at a rate of `macs_per_second`; `images`
    (more than the sizes given) extrapolates from those sizes to that many images."""
    macs = 0.0
    pixels = 0
    sampled = 0
    for width, height, has_alpha in sizes:
        macs += upscaler.work_macs(height, width, has_alpha=has_alpha)
        pixels += width * height
        sampled += 1
    if images is not None and images > sampled > 0:
        macs *= images / sampled
    else:
        images = sampled
    return RunEstimate(images=images, macs=macs, macs_per_second=macs_per_second, on_cpu=upscaler.device.type == "cpu",
                       ensemble=bool(upscaler.options.ensemble), macs_per_input_pixel=macs / max(pixels, 1),
                       runs_at_output_size=upscaler.runs_at_output_size)


def faster_choices(estimate: RunEstimate) -> list[str]:
    """What would cut the run's time, the largest saving first; only choices that apply."""
    choices = []
    if estimate.on_cpu:
        choices.append("a GPU (--device cuda)")
    if estimate.ensemble:
        choices.append("no --ensemble (8x less work)")
    per_view = estimate.macs_per_input_pixel / (8 if estimate.ensemble else 1)
    if per_view > 2 * COMPACT_MACS_PER_PIXEL:
        choices.append(SMALLER_MODEL)
    if estimate.runs_at_output_size:
        choices.append("a smaller --outscale (this model's work grows with the output size)")
    return choices


def long_run_message(estimate: RunEstimate) -> str | None:
    """The one line to say, or None for a run under LONG_RUN_SECONDS."""
    if estimate.images == 0 or estimate.seconds <= LONG_RUN_SECONDS:
        return None
    where = "the CPU" if estimate.on_cpu else "this device"
    count = f"{estimate.images} image{'s' if estimate.images != 1 else ''}"
    line = (f"this will take about {duration(estimate.seconds)} ({count}, {engineering(estimate.macs)}MAC at "
            f"{engineering(estimate.macs_per_second)}MAC/s on {where})")
    choices = faster_choices(estimate)
    return f"{line}; faster: {', '.join(choices)}" if choices else line


class LongRunCheck:
    """Times the first image's first units and says once, if the whole run will be long, how long.

    Wraps the batch's callbacks: `file_started(job, index)` and `progress(done, total)` (the engine's
    units), calling the wrapped ones first. Does nothing (and reads nothing) with -q, off the CPU, or
    for a stand-in upscaler without a device."""

    def __init__(self, upscaler: Upscaler | None, sources: Sequence[Path], *,
                 clock: Callable[[], float] | None = None) -> None:
        device = getattr(upscaler, "device", None)
        self._upscaler = upscaler
        self._sources = list(sources)
        self._clock = clock or now
        self._active = (verbosity() >= Verbosity.NORMAL and upscaler is not None and device is not None
                        and device.type == "cpu" and bool(self._sources))
        self._source: Path | None = None
        self._started = 0.0
        self._mark: tuple[float, float] | None = None  # (time, share of the image done) at its first unit
        self.message: str | None = None  # what was said, once decided

    def file_started(self, then: Callable[[Job, int], None]) -> Callable[[Job, int], None]:
        def started(job: Job, index: int) -> None:
            then(job, index)
            if self._active:
                self._source = job.source
                self._started = self._clock()
                self._mark = None
        return started

    def progress(self, then: Callable[[int, int], None]) -> Callable[[int, int], None]:
        def moved(done: int, total: int) -> None:
            then(done, total)
            if self._active and self._source is not None and done > 0:
                self._observe(done / total, self._clock(), finished=done >= total)
        return moved

    def _observe(self, fraction: float, now: float, *, finished: bool) -> None:
        """The rate is taken between the first unit and CALIBRATION_SECONDS later, leaving out what came
        before the first unit (the first layer's warm-up, the tile planner's probe); an image finished
        sooner gives its whole time."""
        if self._mark is None:
            self._mark = (now, fraction)
            if finished:
                self._decide(fraction, now - self._started)
            return
        mark_time, mark_fraction = self._mark
        if now - mark_time >= CALIBRATION_SECONDS or finished:
            self._decide(fraction - mark_fraction, now - mark_time)

    def _decide(self, fraction: float, elapsed: float) -> None:
        """Once: the rate from the share of this image done, then the whole run at that rate."""
        self._active = False
        from sr_cli.imageio.reader import peek_header

        assert self._upscaler is not None and self._source is not None
        current = peek_header(self._source)
        if current is None or elapsed <= 0 or fraction <= 0:
            return
        width, height, has_alpha = current
        rate = fraction * self._upscaler.work_macs(height, width, has_alpha=has_alpha) / elapsed
        sample = self._sources[:MAX_HEADERS_READ]  # a huge batch: the first ones stand for the rest
        sizes = [size for size in (peek_header(source) for source in sample) if size is not None]
        images = round(len(sizes) * len(self._sources) / len(sample))
        self.message = long_run_message(estimate_run(self._upscaler, sizes, macs_per_second=rate, images=images))
        if self.message is not None:
            note(self.message)


def now() -> float:
    """The clock LongRunCheck reads unless given one (a seam for the command's tests)."""
    return time.perf_counter()


def duration(seconds: float) -> str:
    """45 s, 7 min, 1.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def engineering(value: float) -> str:
    """4.5 T, 820 G, 3.1 M (a space before the unit letter)."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "

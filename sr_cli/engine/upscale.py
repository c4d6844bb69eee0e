"""`upscale_tensor`: tiled, feathered, optionally self-ensembled inference of one [C,H,W] image, and
`upscale_bands`, the same computation handed out as finished output row bands (for output streamed to disk).

The input stays in host memory in its own dtype (uint8/uint16 inputs are converted to float32 one window at a
time); only a tile's window (times the ensemble batch) travels to the device. A tile is pasted only after its
forward pass succeeded, and once. Tiles run row-major, so output rows above the topmost window still pending
are final: `upscale_bands` hands them out and drops them, keeping in float only a band of about one tile row
plus its context (`TileStats.peak_band_rows`). `upscale_tensor` copies the bands into one canvas; both add the
same tile outputs in the same order from zero, so their pixels are bit-identical.
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from sr_cli.engine.blending import blend_plan, tile_weights
from sr_cli.engine.ensemble import CPU_VIEW_BATCH_PIXELS, ensemble_forward
from sr_cli.engine.memory import MIN_TILE, auto_tile_size, memory_budget, streamed_tile_size
from sr_cli.engine.pipeline import PipelineStats, TileQueue, Unit, batch_for_budget, make_lane, run_pipeline
from sr_cli.engine.plan import EnginePlan
from sr_cli.engine.progress import ForwardProfile, WorkMeter, counting_convs, profile_forward
from sr_cli.engine.tiling import crop, pad_to_multiple, tile_grid
from sr_cli.errors import ModelOutputError

Model = Callable[[Tensor], Tensor]
Progress = Callable[[int, int], None]


@dataclass
class TileStats:
    """What happened during one `upscale_tensor` call (for tests, benchmarks and verbose output)."""

    tiles_pasted: int = 0
    oom_splits: int = 0
    fp32_redos: int = 0
    oom_batch_halvings: int = 0  # batches of tiles halved after an out-of-memory error
    largest_batch: int = 0  # the most tiles that ran in one forward pass
    overlapped_transfers: bool = False  # pinned transfers on side streams overlapped with compute (CUDA)
    tile_size: int = 0  # the core size the grid started with (0 = whole image)
    memory_budget: int | None = None  # bytes the auto tile was sized for (None: the caller gave the tile)
    peak_band_rows: int = 0  # the most output rows (padded width) held in float at once


def upscale_tensor(model: Model, image: Tensor, plan: EnginePlan, *, progress: Progress | None = None,
                   profile: ForwardProfile | None = None, stats: TileStats | None = None) -> Tensor:
    """Run `model` ([N,C,h,w] -> [N,C',h*scale,w*scale], already on `plan.device`) over `image` [C,H,W], as
    `plan` says (tile, overlap, ensemble, precision...: `EnginePlan`).

    image: float in [0, 1], or uint8/uint16 (read as value / 255 or / 65535, one window at a time);
    progress: called with (done, total) in units of conv layer x view x tile (engine/progress.py), the
    total fixed before the first forward; profile: the model's `profile_forward` (measured here if None);
    stats: filled in with how the run went (`TileStats`).
    Returns the unclamped [C',H*scale,W*scale] float32 result on the CPU.
    """
    out_h, out_w = image.shape[-2] * plan.scale, image.shape[-1] * plan.scale
    output: Tensor | None = None
    for start, band in upscale_bands(model, image, plan, progress=progress, profile=profile, stats=stats):
        if start == 0 and band.shape[-2] == out_h:  # one band (e.g. the whole image): no second canvas
            output = band.contiguous()
            continue
        if output is None:
            output = torch.empty((band.shape[0], out_h, out_w), dtype=torch.float32)
        output[:, start:start + band.shape[-2]] = band
    assert output is not None
    return output


def upscale_bands(model: Model, image: Tensor, plan: EnginePlan, *, progress: Progress | None = None,
                  profile: ForwardProfile | None = None, stats: TileStats | None = None,
                  host_budget_bytes: int | None = None) -> Generator[tuple[int, Tensor], None, None]:
    """`upscale_tensor`'s result as (first output row, [C',rows,W*scale] float32 band) pairs, top to bottom.

    The bands partition the output's rows; each is final when handed out (every tile it overlaps was
    blended) and is a view the next step no longer writes to. The arguments are `upscale_tensor`'s, and
    host_budget_bytes: with the auto tile, the band (and on the CPU the tile's activations) also stay
    within it (`memory.streamed_tile_size`; e.g. memory.STREAMED_HOST_BUDGET_BYTES).
    """
    _check_image(image)
    scale, device, size_multiple, cost_per_pixel = plan.scale, plan.device, plan.size_multiple, plan.cost_per_pixel
    tile, batch = plan.tile, plan.batch  # None (auto) is resolved below
    stats = stats if stats is not None else TileStats()
    height, width = image.shape[-2:]
    out_h, out_w = height * scale, width * scale
    padded = pad_to_multiple(image.cpu(), size_multiple)  # in the input's dtype: no whole float copy
    padded_h, padded_w = padded.shape[-2:]
    views = 8 if plan.ensemble else 1
    # On the CPU large batches of views leave the caches (engine/ensemble.py); accelerators take all 8.
    # The memory plan counts the views one forward really holds.
    view_batch_pixels = CPU_VIEW_BATCH_PIXELS if device.type == "cpu" else None
    blend = blend_plan(plan.overlap, min_overlap=plan.min_overlap, exact_overlap=plan.exact_overlap)
    reach, feather = blend.reach, blend.feather  # how far a window extends past its core; the fade inside it
    if tile is None and host_budget_bytes is not None:
        host_ceiling = memory_budget(torch.device("cpu"))
        device_budget = memory_budget(device)
        tile, host_budget = streamed_tile_size(
            padded_h, padded_w, cost_per_pixel=cost_per_pixel, overlap=reach, views=views,
            view_batch_pixels=view_batch_pixels, size_multiple=size_multiple, device_budget_bytes=device_budget,
            host_budget_bytes=min(host_budget_bytes, host_ceiling), host_ceiling_bytes=host_ceiling,
            shares_host=device.type == "cpu",
            band_bytes_per_row=4.0 * image.shape[0] * scale * scale * padded_w)  # float32, C' = C
        stats.memory_budget = min(device_budget, host_budget) if device.type == "cpu" else device_budget
    elif tile is None:
        stats.memory_budget = memory_budget(device)
        tile = auto_tile_size(padded_h, padded_w, cost_per_pixel=cost_per_pixel, overlap=reach, views=views,
                              view_batch_pixels=view_batch_pixels, size_multiple=size_multiple,
                              budget_bytes=stats.memory_budget)
    stats.tile_size = tile
    min_tile = max(MIN_TILE, size_multiple)

    def compute(x: Tensor) -> Tensor:
        return ensemble_forward(model, x, max_batch_pixels=view_batch_pixels) if plan.ensemble else model(x)

    grid = tile_grid(padded_h, padded_w, tile, reach, size_multiple)
    if progress is not None and profile is None:
        profile = profile_forward(model, in_channels=image.shape[0], size_multiple=size_multiple, device=device)
    meter = WorkMeter(progress, tiles=len(grid), views=views, conv_calls=profile.conv_calls if profile else 0,
                      area=padded_h * padded_w)
    pipeline_stats = PipelineStats()
    if batch is None:
        largest_window = max(t.window_rows.length * t.window_cols.length for t in grid)
        batch = 1 if len(grid) == 1 else batch_for_budget(
            largest_window, device=device, budget_bytes=stats.memory_budget or _budget_if_device(device),
            cost_per_pixel=cost_per_pixel, views=views)
    queue = TileQueue(grid, cut=lambda t: _as_float_window(crop(padded, t.window_rows, t.window_cols)),
                      height=padded_h, width=padded_w, reach=reach, multiple=size_multiple, min_tile=min_tile,
                      max_batch=batch, stats=pipeline_stats)
    lane = make_lane(compute, device, plan.precision, plan.channels_last, pipeline_stats,
                     overlap_transfers=plan.overlap_transfers)
    band: Tensor | None = None  # output rows [top, top + band rows) of the padded output, not yet handed out
    top = 0
    counting = counting_convs(model, meter.on_conv) if progress is not None else nullcontext()
    units = run_pipeline(queue, lane, device=device, on_start=lambda unit: meter.start_tile(unit.core_area))
    try:
        with counting:
            meter.begin()
            while True:
                # Inference mode only while the engine works: a band is handed out (yield) with the
                # caller's own grad mode, so what the caller computes between two bands is ordinary.
                with torch.inference_mode():
                    step = next(units, None)
                    if step is None:
                        break
                    band = _paste_unit(step, band, top, scale=scale, padded_h=padded_h, padded_w=padded_w,
                                       feather=feather, stats=stats)
                    del step
                    meter.finish_tile()
                    finished = queue.top_row(default=padded_h) * scale  # units in flight hold their rows back
                    handed: tuple[int, Tensor] | None = None
                    if finished > top:
                        done_rows, band = band[:, :finished - top], band[:, finished - top:].clone()
                        if top < out_h:
                            handed = (top, done_rows[:, :min(finished, out_h) - top, :out_w])
                        del done_rows
                        top = finished
                if handed is not None:
                    yield handed
                    del handed
    finally:
        units.close()  # a caller that stops early: the pipeline's own clean-up runs now, not at collection
        stats.oom_splits += pipeline_stats.oom_splits
        stats.oom_batch_halvings += pipeline_stats.oom_batch_halvings
        stats.fp32_redos += pipeline_stats.fp32_redos
        stats.largest_batch = max(stats.largest_batch, pipeline_stats.largest_batch)
        stats.overlapped_transfers = lane.overlaps


def _paste_unit(step: tuple[Unit, Tensor], band: Tensor | None, top: int, *, scale: int, padded_h: int,
                padded_w: int, feather: int, stats: TileStats) -> Tensor:
    """Add one unit's tile outputs, weighted, onto the band of unfinished output rows (grown as needed)."""
    unit, outputs = step
    for current, output in zip(unit.tiles, outputs, strict=True):
        expected = (current.window_rows.length * scale, current.window_cols.length * scale)
        if tuple(output.shape[-2:]) != expected:
            got_h, got_w = output.shape[-2:]
            raise ModelOutputError(
                f"the model returned {got_h}x{got_w} for a {current.window_rows.length}x"
                f"{current.window_cols.length} input, not x{scale}: the network does not upscale by "
                f"the scale it declares (its checkpoint does not fit its architecture)"
            )
        # Windows not yet pasted start at or below `top` (tiles run row-major; a split tile's parts start no
        # higher than it), so the band only ever grows downwards.
        band = _grown(band, output.shape[0], current.window_rows.stop * scale - top, padded_w * scale)
        stats.peak_band_rows = max(stats.peak_band_rows, band.shape[-2])
        weights = tile_weights(current, padded_h, padded_w, scale, float(feather))
        target = band[:, current.window_rows.start * scale - top:current.window_rows.stop * scale - top,
                      current.window_cols.start * scale:current.window_cols.stop * scale]
        target.addcmul_(output, weights)  # in place: no tile-sized temporary
        del output, weights, target
        stats.tiles_pasted += 1
    assert band is not None
    return band


def _grown(band: Tensor | None, channels: int, rows: int, width: int) -> Tensor:
    """`band` with at least `rows` rows (zeros below what it held): tile outputs are added onto zeros."""
    if band is not None and band.shape[-2] >= rows:
        return band
    grown = torch.zeros((channels, rows, width), dtype=torch.float32)
    if band is not None:
        grown[:, :band.shape[-2]] = band
    return grown


_INTEGER_MAX = {torch.uint8: 255.0, torch.uint16: 65535.0}


def _as_float_window(window: Tensor) -> Tensor:
    """A window of the input as float32 in [0, 1]: uint8/uint16 as value / max (what numpy's
    `astype(float32) / 255` gives, bit for bit), float as float32."""
    maximum = _INTEGER_MAX.get(window.dtype)
    if maximum is None:
        return window.float()
    return window.to(torch.float32) / maximum


def _budget_if_device(device: torch.device) -> int | None:
    """The memory budget a batch is sized for on an accelerator (None on the CPU, which batches nothing)."""
    return None if device.type == "cpu" else memory_budget(device)


def _check_image(image: Tensor) -> None:
    """What `upscale_tensor` accepts as an image (`EnginePlan` checks the rest of its contract): a failure
    is a programming error of the caller (sr_cli.api checks what users give), a ValueError naming no CLI flag."""
    if image.ndim != 3 or image.shape[-1] < 1 or image.shape[-2] < 1:
        raise ValueError(f"upscale_tensor expects a non-empty [C,H,W] tensor, got shape {tuple(image.shape)}")
    if not (image.is_floating_point() or image.dtype in _INTEGER_MAX):
        raise ValueError(f"upscale_tensor expects a float tensor in [0, 1] or uint8/uint16, got {image.dtype}")

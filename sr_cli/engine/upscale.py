"""`upscale_tensor`: tiled, feathered, optionally self-ensembled inference of one [C,H,W] image.

The input and the output canvas stay in host memory (float32); only a tile's window (times the ensemble
batch) travels to the device. A tile is pasted only after its forward pass succeeded, and once.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from sr_cli.engine.blending import blend_plan, tile_weights
from sr_cli.engine.ensemble import ensemble_forward
from sr_cli.engine.heap import reuse_freed_heap
from sr_cli.engine.memory import MIN_TILE, auto_tile_size, is_out_of_memory, memory_budget
from sr_cli.engine.precision import Precision, run_at_precision
from sr_cli.engine.progress import ForwardProfile, WorkMeter, counting_convs, profile_forward
from sr_cli.engine.tiling import Span, Tile, crop, halve, make_tile, pad_to_multiple, tile_grid
from sr_cli.errors import DeviceError, ModelOutputError

Model = Callable[[Tensor], Tensor]
Progress = Callable[[int, int], None]


@dataclass
class TileStats:
    """What happened during one `upscale_tensor` call (for tests, benchmarks and verbose output)."""

    tiles_pasted: int = 0
    oom_splits: int = 0
    fp32_redos: int = 0
    tile_size: int = 0  # the core size the grid started with (0 = whole image)
    memory_budget: int | None = None  # bytes the auto tile was sized for (None: the caller gave the tile)


def upscale_tensor(
    model: Model,
    image: Tensor,
    *,
    scale: int,
    tile: int | None,
    overlap: int,
    size_multiple: int = 1,
    ensemble: bool = False,
    device: torch.device,
    precision: Precision,
    progress: Progress | None = None,
    profile: ForwardProfile | None = None,
    cost_per_pixel: float | None = None,
    channels_last: bool = False,
    stats: TileStats | None = None,
    min_overlap: int | None = None,
    exact_overlap: int | None = None,
) -> Tensor:
    """Run `model` ([N,C,h,w] -> [N,C',h*scale,w*scale], already on `device`) over `image` [C,H,W].

    tile: core side in input pixels (None = auto from `cost_per_pixel` and free memory, 0 = whole image);
    overlap: input pixels of real context at every core boundary (reflection only at the true border);
    min_overlap / exact_overlap: the model's measured and exact context needs, which decide whether the
    cross-fade lies inside the context or on top of it (`blending.blend_plan`);
    size_multiple: the model needs h, w divisible by it (the image is reflect-padded, the output cropped).
    progress: called with (done, total) in units of conv layer x view x tile (engine/progress.py), the
    total fixed before the first forward; profile: the model's `profile_forward` (measured here if None).
    Returns the unclamped [C',H*scale,W*scale] float32 result on the CPU.
    """
    _check_arguments(image, scale=scale, tile=tile, overlap=overlap, size_multiple=size_multiple)
    stats = stats if stats is not None else TileStats()
    height, width = image.shape[-2:]
    padded = pad_to_multiple(image.float().cpu(), size_multiple)
    padded_h, padded_w = padded.shape[-2:]
    views = 8 if ensemble else 1
    plan = blend_plan(overlap, min_overlap=min_overlap, exact_overlap=exact_overlap)
    reach, feather = plan.reach, plan.feather  # how far a window extends past its core; the fade inside it
    if tile is None:
        stats.memory_budget = memory_budget(device)
        tile = auto_tile_size(padded_h, padded_w, cost_per_pixel=cost_per_pixel, overlap=reach, views=views,
                              size_multiple=size_multiple, budget_bytes=stats.memory_budget)
    stats.tile_size = tile
    min_tile = max(MIN_TILE, size_multiple)

    def compute(x: Tensor) -> Tensor:
        return ensemble_forward(model, x) if ensemble else model(x)

    pending: list[Tile] = list(reversed(tile_grid(padded_h, padded_w, tile, reach, size_multiple)))
    if progress is not None and profile is None:
        profile = profile_forward(model, in_channels=image.shape[0], size_multiple=size_multiple, device=device)
    meter = WorkMeter(progress, tiles=len(pending), views=views, conv_calls=profile.conv_calls if profile else 0,
                      area=padded_h * padded_w)
    max_core = (padded_h, padded_w)  # lowered after an out-of-memory error, so later tiles start smaller
    canvas: Tensor | None = None
    counting = counting_convs(model, meter.on_conv) if progress is not None else nullcontext()
    # on the CPU the feature maps live in host memory: keep freed ones for the next layer (engine/heap.py)
    heap_reuse = reuse_freed_heap() if device.type == "cpu" else nullcontext()
    with torch.inference_mode(), counting, heap_reuse:
        meter.begin()
        while pending:
            current = pending.pop()
            if current.rows.length > max_core[0] or current.cols.length > max_core[1]:
                parts = _split(current, max_core, reach, padded_h, padded_w, size_multiple)
                pending.extend(reversed(parts))
                continue
            window = crop(padded, current.window_rows, current.window_cols).unsqueeze(0)
            meter.start_tile(current.rows.length * current.cols.length)
            try:
                output = _forward_tile(compute, window, device, precision, channels_last, stats)
            except Exception as error:  # noqa: BLE001 -- only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(error):
                    raise
                del error
                _release(device)
                halved = (max(current.rows.length // 2, min_tile), max(current.cols.length // 2, min_tile))
                parts = _split(current, halved, reach, padded_h, padded_w, size_multiple, min_tile)
                if len(parts) == 1:
                    raise DeviceError(
                        f"out of {device} memory even for a {current.window_rows.length}x"
                        f"{current.window_cols.length} tile (minimum core {min_tile} px); free memory, lower "
                        "--overlap, drop --ensemble, or use --device cpu"
                    ) from None
                max_core = (min(max_core[0], halved[0]), min(max_core[1], halved[1]))
                stats.oom_splits += 1
                pending.extend(reversed(parts))
                continue
            output = output[0]
            expected = (current.window_rows.length * scale, current.window_cols.length * scale)
            if tuple(output.shape[-2:]) != expected:
                got_h, got_w = output.shape[-2:]
                raise ModelOutputError(
                    f"the model returned {got_h}x{got_w} for a {current.window_rows.length}x"
                    f"{current.window_cols.length} input, not x{scale}: the network does not upscale by the "
                    f"scale it declares (its checkpoint does not fit its architecture)"
                )
            if canvas is None:
                canvas = torch.zeros(output.shape[0], padded_h * scale, padded_w * scale, dtype=torch.float32)
            weights = tile_weights(current, padded_h, padded_w, scale, float(feather))
            target = canvas[:, current.window_rows.start * scale:current.window_rows.stop * scale,
                            current.window_cols.start * scale:current.window_cols.stop * scale]
            target.addcmul_(output, weights)  # in place: no tile-sized temporary
            stats.tiles_pasted += 1
            meter.finish_tile()
    assert canvas is not None
    return canvas[:, :height * scale, :width * scale].contiguous()


def _forward_tile(
    compute: Model, window: Tensor, device: torch.device, precision: Precision, channels_last: bool,
    stats: TileStats,
) -> Tensor:
    """One window on the device -> float32 output on the CPU."""
    x = window.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    result, redone = run_at_precision(compute, x, device, precision)
    stats.fp32_redos += int(redone)
    return result.to("cpu", torch.float32).contiguous()


def _split(
    current: Tile, max_core: tuple[int, int], overlap: int, height: int, width: int, multiple: int,
    min_tile: int = 1,
) -> list[Tile]:
    """Sub-tiles of `current` whose cores are no larger than `max_core` (each axis halved as needed)."""
    def pieces(span: Span, limit: int) -> list[Span]:
        spans = [span]
        while any(s.length > limit for s in spans):
            refined = [half for s in spans for half in (halve(s, min_tile, multiple) if s.length > limit else [s])]
            if len(refined) == len(spans):
                break
            spans = refined
        return spans

    return [make_tile(r, c, overlap, height, width, multiple)
            for r in pieces(current.rows, max_core[0]) for c in pieces(current.cols, max_core[1])]


def _release(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory error so the smaller retry can use them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _check_arguments(image: Tensor, *, scale: int, tile: int | None, overlap: int, size_multiple: int) -> None:
    """The contract of `upscale_tensor`. Its callers (sr_cli.api) validate what users give, in their own
    vocabulary; a failure here is a programming error, so it is a ValueError that names no CLI flag."""
    if image.ndim != 3 or image.shape[-1] < 1 or image.shape[-2] < 1:
        raise ValueError(f"upscale_tensor expects a non-empty [C,H,W] tensor, got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"upscale_tensor expects a float tensor in [0, 1], got {image.dtype}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"the model scale must be a positive integer, got {scale}")
    if tile is not None and tile < 0:
        raise ValueError(f"tile must be None (auto), 0 (whole image) or a positive number of pixels, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if size_multiple < 1:
        raise ValueError(f"size_multiple must be >= 1, got {size_multiple}")

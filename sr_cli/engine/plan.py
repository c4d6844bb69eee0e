"""`EnginePlan`: how a model runs over an image — its scale, where and in what precision, and how the image is
cut into tiles. One value, given to `upscale_tensor` / `upscale_bands` whole; what differs per call
(progress, profile, stats, a host memory budget) stays their keyword arguments."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sr_cli.engine.precision import Precision


@dataclass(frozen=True, kw_only=True)
class EnginePlan:
    """The defaults run the model once over the whole image, as a plain forward pass does (tile 0, no overlap,
    no ensemble); a tiled plan gives the model's context as `overlap`.

    scale: the model's upscale factor ([N,C,h,w] -> [N,C',h*scale,w*scale]);
    device, precision: where the model (already moved there) runs, and in what numeric precision;
    tile: core side in input pixels (None = auto from `cost_per_pixel` and free memory, 0 = whole image);
    overlap: input pixels of real context at every core boundary (reflection only at the true border);
    min_overlap / exact_overlap: the model's measured and exact context needs, which decide whether the
    cross-fade lies inside the context or on top of it (`blending.blend_plan`);
    size_multiple: the model needs h, w divisible by it (the image is reflect-padded, the output cropped);
    ensemble: the x8 geometric self-ensemble (`engine/ensemble.py`);
    channels_last: run windows in NHWC memory layout (convert the model too; faster for some models);
    cost_per_pixel: peak bytes per input pixel the auto tile assumes (None: memory.DEFAULT_COST_PER_PIXEL);
    batch: tiles of equal window shape per forward (None = as many as the memory budget allows on an
    accelerator, 1 on the CPU); overlap_transfers: pinned, stream-overlapped transfers (None = on CUDA),
    see engine/pipeline.py. Neither changes the result: the same tiles are pasted in the same order.

    The checks are the engine's contract. Its callers (sr_cli.api) validate what users give, in their own
    vocabulary; a failure here is a programming error, so it is a ValueError that names no CLI flag.
    """

    scale: int
    device: torch.device
    precision: Precision
    tile: int | None = 0
    overlap: int = 0
    min_overlap: int | None = None
    exact_overlap: int | None = None
    size_multiple: int = 1
    ensemble: bool = False
    channels_last: bool = False
    cost_per_pixel: float | None = None
    batch: int | None = None
    overlap_transfers: bool | None = None

    def __post_init__(self) -> None:
        if int(self.scale) != self.scale or self.scale < 1:
            raise ValueError(f"the model scale must be a positive integer, got {self.scale}")
        if self.tile is not None and self.tile < 0:
            raise ValueError(f"tile must be None (auto), 0 (whole image) or a positive number of pixels, got {self.tile}")
        if self.overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {self.overlap}")
        if self.size_multiple < 1:
            raise ValueError(f"size_multiple must be >= 1, got {self.size_multiple}")
        if self.batch is not None and self.batch < 1:  # 0 tiles per forward is no plan (it was read as 1)
            raise ValueError(f"batch must be None (from the memory budget) or >= 1 tiles per forward, got {self.batch}")

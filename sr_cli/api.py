"""The Python API of sr: load a model by name or file, upscale a numpy array, a PIL image or a tensor.

The `sr upscale` CLI and `sr eval --protocol rgb-lr` are thin layers over this module (docs/api.md).
Body being written (engineer E); the signatures below are the contract F codes against.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

Progress = Callable[[int, int], None]

__all__ = ["UpscaleOptions", "Upscaler", "load_model"]


@dataclass(frozen=True)
class UpscaleOptions:
    """How to run a model; the same options as `sr upscale`."""

    tile: int | None = None  # input pixels per tile side (without overlap); None = auto, 0 = whole image
    overlap: int | None = None  # input pixels of context on each side of a tile; None = the model's min_overlap
    ensemble: bool = False  # geometric self-ensemble (8 dihedral transforms, averaged)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16


class Upscaler:
    """A loaded model at one output scale, ready to upscale images.

    name: the manifest name or the weights file path; family: edsr | mdsr | rrdb | vdsr | srvgg;
    model_scale: the scale the network runs at (VDSR: 1, it runs on a bicubic pre-upscaled Y);
    output_scale: the final factor (== outscale when given, else the requested scale).
    """

    name: str
    family: str
    model_scale: int
    output_scale: float

    def upscale(self, image: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """HxW or HxWxC (C in 1..4), uint8 / uint16 / float32 in [0, 1] -> same dtype and channels,
        size round(H * output_scale) x round(W * output_scale)."""
        raise NotImplementedError

    def upscale_pil(self, image: "PIL.Image.Image", progress: Progress | None = None) -> "PIL.Image.Image":  # noqa: F821
        """Modes L, LA, RGB, RGBA, I;16 (and what Pillow converts to them); returns the same mode."""
        raise NotImplementedError

    def upscale_tensor(self, image: Tensor, progress: Progress | None = None) -> Tensor:
        """[C,H,W] or [N,C,H,W] float in [0, 1] (C = 1, 3 or 4) -> same layout, float32 in [0, 1], on the CPU."""
        raise NotImplementedError


def load_model(
    model: str | Path,
    scale: float | None = None,
    *,
    res_scale: float | None = None,
    alpha: float | None = None,
    outscale: float | None = None,
    options: UpscaleOptions = UpscaleOptions(),
    progress_download: Progress | None = None,
) -> Upscaler:
    """Load `model` (a manifest name/alias or a weights file) for x`scale`, ready to upscale.

    scale: the model scale (EDSR/RRDB/SRVGG: the file's scale; MDSR: 2, 3 or 4; VDSR: any > 1).
    outscale: the final factor; when given, `scale` may be None and the model scale that fits is chosen
    (the smallest served scale >= outscale, else the largest), then the result is resized to exactly
    round(H * outscale) x round(W * outscale).
    alpha: network interpolation between a PSNR model and its GAN pair (0 = PSNR, 1 = GAN).
    Raises UsageError / ScaleMismatchError / DeviceError / the zoo's errors, each with the fix.
    """
    raise NotImplementedError

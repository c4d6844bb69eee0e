"""`sr compare`: several models (and bicubic) on the same region of one image, side by side.

Each model runs on the region plus up to CONTEXT input pixels of the image around it (where the image has
them), and the region's part of its output is kept: a model sees a crop's neighbourhood as it would in a
whole-image run, so the panel's borders show the model, not the zero padding at a crop's edge. Bicubic is
MATLAB's imresize (sr_cli.resize, what the benchmarks' LR files were made with), on the same context.
All panels have one output factor: each model runs at the scale it serves that fits (`load_model`'s
`outscale`), and is resized to the factor where it serves another.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sr_cli.api import UpscaleOptions, Upscaler, load_model
from sr_cli.errors import UsageError
from sr_cli.imageio.sheet import Sheet, contact_sheet
from sr_cli.resize import imresize

BICUBIC = "bicubic"
CONTEXT = 16  # input pixels around the region that each model sees (then cut away)
TARGET_PANEL_SIDE = 384  # auto zoom: the smallest zoom that shows a panel at least this large ...
MAX_AUTO_ZOOM = 8  # ... up to this
MAX_MODELS = 12


@dataclass(frozen=True)
class Region:
    """x, y, width, height of the input region shown, and the context around it that each model sees."""

    x: int
    y: int
    width: int
    height: int
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @staticmethod
    def with_context(x: int, y: int, width: int, height: int, image_height: int, image_width: int,
                     context: int = CONTEXT) -> Region:
        return Region(x, y, width, height, left=min(context, x), top=min(context, y),
                      right=min(context, image_width - x - width), bottom=min(context, image_height - y - height))

    def padded(self, pixels: np.ndarray) -> np.ndarray:
        return pixels[self.y - self.top:self.y + self.height + self.bottom,
                      self.x - self.left:self.x + self.width + self.right]

    def inner(self, upscaled: np.ndarray, factor: float) -> np.ndarray:
        """The region's part of a model output for `padded`: the context's output pixels cut away."""
        top, left = math.floor(self.top * factor + 0.5), math.floor(self.left * factor + 0.5)
        return upscaled[top:top + _scaled(self.height, factor), left:left + _scaled(self.width, factor)]

    def box(self) -> list[int]:
        return [self.x, self.y, self.width, self.height]


@dataclass(frozen=True)
class Panel:
    label: str
    model: str  # "bicubic", a manifest name, or a weights file as given
    pixels: np.ndarray  # the region, upscaled (uint8, the input's channels)
    seconds: float
    weights_file: str | None = None
    weights_sha256: str | None = None


def parse_models(text: str) -> list[str]:
    """--models A,B,...: names or files, in order, each once; bicubic is always shown first."""
    models = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not model for model in models):
        raise UsageError(f"--models {text!r}: give model names or files separated by commas, e.g. "
                         f"realesrgan-x4plus,realesr-animevideov3")
    models = [model for model in models if model.lower() != BICUBIC]  # bicubic is always there
    seen: set[str] = set()
    for model in models:
        if model in seen:
            raise UsageError(f"--models names {model} twice; name each model once")
        seen.add(model)
    if len(models) > MAX_MODELS:
        raise UsageError(f"--models names {len(models)} models; compare at most {MAX_MODELS} on one sheet")
    return models


def check_models_exist(models: Sequence[str]) -> None:
    """Every name known and every file present, before anything is loaded or run."""
    from sr_cli import zoo

    for model in models:
        if zoo.looks_like_path(model):
            if not Path(model).expanduser().is_file():
                raise UsageError(f"--models: {model} is not a model name nor an existing weights file "
                                 f"(`sr weights list` shows the names)")
        elif not zoo.is_known(model):
            from sr_cli.errors import UnknownModelError

            raise UnknownModelError(zoo.unknown_model_message(model, also=(BICUBIC,)))


def default_factor(models: Sequence[str]) -> float:
    """The output factor when --scale is not given: the only scale of the first model that has one."""
    from sr_cli import zoo

    for model in models:
        try:
            return float(zoo.ModelSession().default_scale(model))
        except UsageError:  # serves several scales or any (MDSR, VDSR): the next one decides
            continue
    raise UsageError(f"{', '.join(models)} serve several or any scale; pass --scale (e.g. --scale 4)")


def auto_zoom(height: int, width: int, factor: float) -> int:
    side = max(_scaled(height, factor), _scaled(width, factor))
    return max(1, min(MAX_AUTO_ZOOM, math.ceil(TARGET_PANEL_SIDE / side)))


def bicubic_panel(pixels: np.ndarray, region: Region, factor: float) -> Panel:
    started = time.perf_counter()
    padded = region.padded(pixels).astype(np.float32) / 255.0
    target = (_scaled(padded.shape[0], factor), _scaled(padded.shape[1], factor))
    out = np.rint(np.clip(imresize(padded, output_shape=target), 0.0, 1.0) * 255.0).astype(np.uint8)
    return Panel(BICUBIC, BICUBIC, region.inner(out, factor), time.perf_counter() - started)


def model_panel(model: str, pixels: np.ndarray, region: Region, factor: float, options: UpscaleOptions,
                progress: Callable[[int, int], None] | None = None) -> Panel:
    """`model` run on the region with its context, at the output factor."""
    upscaler = load_upscaler(model, factor, options)
    started = time.perf_counter()
    out = upscaler.upscale(region.padded(pixels), progress)
    seconds = time.perf_counter() - started
    weights = upscaler.weights_file
    from sr_cli import zoo

    label = Path(model).stem if zoo.looks_like_path(model) else upscaler.name  # a file: its stem (design.md)
    return Panel(label, model, region.inner(out, factor), seconds,
                 str(weights) if weights is not None else None, upscaler.weights_sha256)


def load_upscaler(model: str, factor: float, options: UpscaleOptions) -> Upscaler:
    """The model at the output factor: its own scale where it serves the factor, else the closest it
    serves, resized to the factor (the one loader, `api.load_model`)."""
    return load_model(model, outscale=factor, options=options)


def sheet_of(panels: Sequence[Panel], *, zoom: int, columns: int, title: str | None) -> Sheet:
    return contact_sheet([panel.pixels for panel in panels], [panel.label for panel in panels],
                         columns=columns, zoom=zoom, title=title)


def _scaled(length: int, factor: float) -> int:
    """length * factor rounded half up, as the Upscaler sizes its outputs."""
    return max(int(math.floor(length * factor + 0.5)), 1)

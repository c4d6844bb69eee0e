"""The Python API of sr: load a model by name or file, upscale a numpy array, a PIL image or a tensor.

    from sr_cli.api import load_model, UpscaleOptions
    upscaler = load_model("edsr-baseline-x4", 4, options=UpscaleOptions(tile=256))
    big = upscaler.upscale(image)            # HxWxC uint8/uint16/float32 -> same dtype, 4x the size

The `sr upscale` CLI and `sr eval --protocol rgb-lr` are thin layers over this module (docs/api.md).
What happens to each kind of image (grayscale, alpha, 16-bit) and why: `Upscaler.upscale`, `fill_transparent`,
`Upscaler._upscale_alpha` and docs/api.md.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from sr_cli.archs.descriptor import FamilyDescriptor, FamilyName
from sr_cli.archs.families import FAMILIES
from sr_cli.archs.runtime import SRNet
from sr_cli.color import GRAY_FROM_RGB, rgb_to_ycbcr, ycbcr_to_rgb
from sr_cli.engine import (
    EnginePlan,
    TileStats,
    describe_device,
    estimate_cost_per_pixel,
    resolve_device,
    resolve_precision,
    upscale_bands,
    upscale_tensor,
)
from sr_cli.engine.compiled import CompiledForward
from sr_cli.engine.memory import MIN_TILE, STREAMED_HOST_BUDGET_BYTES
from sr_cli.engine.precision import Precision
from sr_cli.engine.progress import ForwardProfile, profile_forward
from sr_cli.errors import InputError, ModelOutputError, UsageError
from sr_cli.imageio.budget import PixelBudget, check_output_factor, check_output_size, pixel_budget
from sr_cli.resize import imresize

if TYPE_CHECKING:
    from PIL import Image

    from sr_cli.zoo import LoadedModel, ModelSession, WeightsSource

Progress = Callable[[int, int], None]

__all__ = ["UpscaleOptions", "Runtime", "RunReport", "Upscaler", "load_model", "CANDIDATE_SCALES", "CHANNELS_LAST_ON_CPU"]

# Model scales tried, in order of preference, when only --outscale is given (see `_scale_order`).
CANDIDATE_SCALES: tuple[int, ...] = (1, 2, 3, 4, 8)
# Families that run faster in channels_last (NHWC) layout on the CPU, measured with interleaved runs
# (bench/engine_throughput.py, docs/benchmarks.md); each descriptor's `channels_last_on_cpu` gives its
# figure (RRDB: x1.31 in CPU time, docs/benchmarks.md). CUDA: each
# descriptor's `channels_last_on_gpu` (`uses_channels_last`).
CHANNELS_LAST_ON_CPU: frozenset[str] = frozenset(d.name for d in FAMILIES if d.channels_last_on_cpu)
_UINT_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_Y_LOW, _Y_SPAN = 16.0 / 255.0, 219.0 / 255.0  # BT.601 studio-swing luma range, as float in [0, 1]
_ROWS_CONVERTED_AT_ONCE = 32  # upscale_rows: a streamed band is clipped and rounded this many rows at a time


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs: the resolved device and numeric precision."""

    device: torch.device
    precision: Precision


@dataclass(frozen=True)
class UpscaleOptions:
    """How to run a model; the same options as `sr upscale`, checked once when they are made."""

    tile: int | None = None  # input pixels per tile side (without overlap); None = auto, 0 = whole image
    overlap: int | None = None  # input pixels of context on each side of a tile; None = the model's min_overlap
    ensemble: bool = False  # geometric self-ensemble (8 dihedral transforms, averaged)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    max_pixels: int | None = None  # largest output (width x height); None = SR_MAX_PIXELS or sr_cli.imageio.budget's default
    # The measurement mode (`sr eval`'s paper protocols): fp32, the whole image, the plain NCHW layout, so a
    # score depends on nothing but the device's arithmetic (no tile plan from free memory, no half precision,
    # no channels_last kernels chosen for speed). A tile or a half precision beside it is a contradiction.
    exact: bool = False
    # torch.compile the network on first use (engine/compiled.py); a compile failure falls back to eager
    # for the rest of the run instead of failing it (`Upscaler.compile_fallback_reason` says why).
    compile: bool = False

    def __post_init__(self) -> None:
        if self.tile is not None and not _is_count(self.tile):
            raise UsageError(f"--tile {self.tile!r}: use a positive number of pixels, 0 for the whole image, or auto")
        if self.tile is not None and 0 < self.tile < MIN_TILE:  # --tile 1 ran a 64x48 image for minutes
            raise UsageError(f"--tile {self.tile}: tiles under {MIN_TILE} px are almost all overlap (each is run with "
                             f"its context around it); use {MIN_TILE} or more, 0 for the whole image, or auto")
        if self.overlap is not None and not _is_count(self.overlap):
            raise UsageError(f"--overlap {self.overlap!r} must be a whole number >= 0")
        if not isinstance(self.ensemble, bool):
            raise UsageError(f"ensemble must be True or False, got {self.ensemble!r}")
        if not isinstance(self.exact, bool):
            raise UsageError(f"exact must be True or False, got {self.exact!r}")
        if not isinstance(self.compile, bool):
            raise UsageError(f"compile must be True or False, got {self.compile!r}")
        if self.exact and self.compile:
            raise UsageError("compile: exact runs use the eager network (fused kernels round differently); drop it")
        if self.exact and self.tile:
            raise UsageError(f"--tile {self.tile}: exact runs use the whole image; drop --tile or use 0")
        if self.exact and self.precision.strip().lower() not in ("auto", "fp32"):
            raise UsageError(f"--precision {self.precision}: exact runs compute in fp32; drop --precision or use fp32")

    @cached_property
    def runtime(self) -> Runtime:
        """The device and precision asked for, resolved once per options object (DeviceError when absent).

        `load_model` asks before any download, and every Upscaler made with these options reuses the answer.
        """
        device = resolve_device(self.device)
        return Runtime(device, resolve_precision("fp32" if self.exact else self.precision, device))

    @property
    def tile_plan(self) -> int | None:
        """The tile the engine is given: 0 (the whole image) for exact runs, else `tile`."""
        return 0 if self.exact else self.tile


@dataclass(frozen=True)
class RunReport:
    """How one image actually ran, as the engine resolved it (not as the options asked): what
    `sr upscale` reports in its closing summary and --json records."""

    device: str  # the torch device, e.g. "cpu", "cuda:0"
    precision: Precision  # the precision run; tiles that overflowed in half precision: fp32_redos
    tile: int  # the tile core side (input pixels) the grid started with; 0 = the whole image at once
    ensemble: bool
    tiles: int  # forward passes pasted, every pass of the image (colour, then alpha) counted
    oom_splits: int  # tiles halved after an out-of-memory error (the tile then shrank below `tile`)
    fp32_redos: int  # half-precision tiles recomputed in fp32 because of NaN/Inf
    memory_budget: int | None  # bytes the auto tile was sized for; None when the tile was given
    cost_per_pixel: float | None  # peak bytes per input pixel the auto tile assumed; None when the tile was given


def uses_channels_last(descriptor: FamilyDescriptor[Any], device: torch.device, *, exact: bool) -> bool:
    """NHWC where the family's descriptor says it pays on that kind of device; exact runs stay NCHW."""
    if exact:
        return False
    if device.type == "cpu":
        return descriptor.channels_last_on_cpu
    return device.type == "cuda" and descriptor.channels_last_on_gpu


def _is_count(value: object) -> bool:
    """A whole number >= 0 (and not a bool, which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Upscaler:
    """A loaded model at one output scale, ready to upscale images.

    name: the manifest name or the weights file path; family: edsr | mdsr | rrdb | vdsr | srvgg;
    model_scale: the scale the network runs at (VDSR: 1, it runs on a bicubic pre-upscaled Y);
    output_scale: the final factor (outscale when given, else the requested scale). Output size is
    round(H * output_scale) x round(W * output_scale), rounded half up.
    """

    name: str
    family: FamilyName
    model_scale: int
    output_scale: float

    def __init__(self, srnet: SRNet, *, name: str, output_scale: float, options: UpscaleOptions = UpscaleOptions()) -> None:
        """Wrap an `SRNet` (from `zoo.load` or built in code). Most callers use `load_model` instead."""
        if not (math.isfinite(output_scale) and output_scale > 0):
            raise UsageError(f"the output scale must be a positive number, got {output_scale}")
        if srnet.input_kind == "y-upscaled" and not output_scale > 1:  # an option problem, not the file's
            raise UsageError(f"{name}: {srnet.descriptor.label} upscales by factors above 1 only, "
                             f"not x{output_scale:g}; ask for a larger factor")
        self.budget: PixelBudget = pixel_budget(options.max_pixels)
        check_output_factor(output_scale, self.budget, "--scale/--outscale")
        self.device: torch.device = options.runtime.device
        self.precision: Precision = options.runtime.precision
        self.options = options
        self.name = name
        # the weights file that ran, its sha256 and where it came from (set by load_model; None for an
        # SRNet built in code)
        self.weights_file: Path | None = None
        self.weights_sha256: str | None = None
        self.weights_source: WeightsSource | None = None
        self.family = srnet.family
        self.model_scale = int(srnet.scale)
        self.output_scale = float(output_scale)
        self.overlap = srnet.min_overlap if options.overlap is None else options.overlap
        # The net is moved (and, where faster, switched to channels_last) in place: the caller's SRNet is it.
        self._channels_last = uses_channels_last(srnet.descriptor, self.device, exact=options.exact)
        # "y-upscaled" nets (VDSR) refine the Y of a bicubic-upscaled image; the others enlarge RGB themselves
        self._refines_upscaled_y = srnet.input_kind == "y-upscaled"
        self._net = srnet.eval().to(self.device)
        if self._channels_last:
            self._net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stubs
        elif options.exact:  # an earlier Upscaler of the same (shared) module may have switched it
            self._net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # as above
        # what the engine calls: the net itself, or the net behind torch.compile (it keeps the net's layers)
        self._forward: Callable[[Tensor], Tensor] = CompiledForward(self._net) if options.compile else self._net
        self._cost_per_pixel: float | None = None
        self._profile: ForwardProfile | None = None  # conv calls and MACs of one forward, measured once

    @property
    def compile_fallback_reason(self) -> str | None:
        """Why torch.compile was given up for eager (None: not asked, not tried yet, or compiled)."""
        return self._forward.fallback_reason if isinstance(self._forward, CompiledForward) else None

    @property
    def device_description(self) -> str:
        """The device it runs on, with the GPU's name: `cuda:0 (NVIDIA H200)`, `cpu`."""
        return describe_device(self.device)

    # --- public entry points ------------------------------------------------------------------------

    def upscale(self, image: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """HxW or HxWxC (C in 1..4), uint8 / uint16 / float32 in [0, 1] -> the same dtype and channels.

        Computed in float32 throughout (16-bit in keeps 16 bits). Grayscale (C = 1, 2) runs as RGB with the
        gray replicated and is folded back with BT.601 luma weights. Alpha (C = 2, 4): the colour under fully
        transparent pixels is replaced first (`fill_transparent`), the alpha is upscaled by the same model
        (`_upscale_alpha`) and re-attached.
        """
        return self.upscale_with_report(image, progress)[0]

    def upscale_with_report(self, image: np.ndarray, progress: Progress | None = None) -> tuple[np.ndarray, RunReport]:
        """`upscale`, plus how it ran: the device, precision and tile the engine actually used."""
        stats = TileStats()
        if isinstance(image, np.ndarray) and image.ndim in (2, 3):
            self.check_output_size(f"a {image.shape[1]}x{image.shape[0]} image", image.shape[0], image.shape[1])
        array = _as_float(image)
        squeeze = array.ndim == 2
        if squeeze:
            array = array[:, :, None]
        channels = array.shape[2]
        color, alpha = (array[:, :, :-1], array[:, :, -1]) if channels in (2, 4) else (array, None)
        rgb = np.repeat(color, 3, axis=2) if color.shape[2] == 1 else color
        if alpha is not None:
            rgb = fill_transparent(rgb, alpha)
        color_progress, alpha_progress = _two_passes(progress) if alpha is not None else (progress, None)
        out_rgb = np.clip(self._upscale_rgb(rgb, color_progress, stats), 0.0, 1.0)
        out = (out_rgb @ GRAY_FROM_RGB)[:, :, None] if color.shape[2] == 1 else out_rgb
        if alpha is not None:
            out = np.concatenate([out, self._upscale_alpha(alpha, alpha_progress, stats)[:, :, None]], axis=2)
        return _to_dtype(out[:, :, 0] if squeeze else out, image.dtype), self._report(stats)

    def _report(self, stats: TileStats) -> RunReport:
        planned = stats.memory_budget is not None
        return RunReport(
            device=str(self.device), precision=self.precision, tile=stats.tile_size, ensemble=self.options.ensemble,
            tiles=stats.tiles_pasted, oom_splits=stats.oom_splits, fp32_redos=stats.fp32_redos,
            memory_budget=stats.memory_budget, cost_per_pixel=self._cost_per_pixel if planned else None,
        )

    def upscale_pil(self, image: Image.Image, progress: Progress | None = None) -> Image.Image:
        """Modes L, LA, RGB, RGBA, I;16 / I;16B / I (16-bit gray) in; the same mode out.

        Other modes are converted first: 1 -> L, P -> RGBA (with transparency) or RGB, CMYK / YCbCr / LAB /
        HSV -> RGB; the result then has the converted mode. Metadata is the caller's business (sr_cli.imageio).
        """
        from PIL import Image as PILImage

        mode = image.mode
        if mode in ("I;16", "I;16L", "I;16B", "I"):
            values = np.asarray(image)
            if values.dtype.kind == "f" or (values.size and (values.min() < 0 or values.max() > 65535)):
                raise InputError(f"a {mode} image with values outside 0..65535 cannot be upscaled; convert it to 16-bit first")
            result = self.upscale(values.astype(np.uint16), progress)
            return PILImage.fromarray(result)  # uint16 HxW -> I;16
        if mode == "1":
            image = image.convert("L")
        elif mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode == "PA":
            image = image.convert("RGBA")
        elif mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGB")
        result = self.upscale(np.asarray(image), progress)
        return PILImage.fromarray(result)  # uint8 HxW / HxWx2 / x3 / x4 -> L / LA / RGB / RGBA

    def upscale_tensor(self, image: Tensor, progress: Progress | None = None) -> Tensor:
        """[C,H,W] or [N,C,H,W] float in [0, 1], C in 1..4 -> the same layout, float32 in [0, 1], on the CPU.

        A batch is processed image by image (progress counts tiles of the whole batch)."""
        if image.ndim not in (3, 4) or not image.is_floating_point():
            raise InputError(f"upscale_tensor expects a float [C,H,W] or [N,C,H,W] tensor, got {image.dtype} {tuple(image.shape)}")
        batch = image.unsqueeze(0) if image.ndim == 3 else image
        results = []
        for index, item in enumerate(batch):
            def forward(done: int, total: int, index: int = index) -> None:
                if progress is not None:
                    progress(index * total + done, len(batch) * total)

            array = item.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
            out = self.upscale(np.ascontiguousarray(array), forward if progress is not None else None)
            results.append(torch.from_numpy(np.ascontiguousarray(out.reshape(out.shape[0], out.shape[1], -1))).permute(2, 0, 1))
        stacked = torch.stack(results)
        return stacked[0] if image.ndim == 3 else stacked

    def network_output(self, x: Tensor, progress: Progress | None = None) -> Tensor:
        """The network alone on the whole of ``x``, float in, float out, for measurements (`sr eval`).

        x: [C,H,W] float in the network's own input space: the RGB image in [0, 1] for RGB models; for
        "y-upscaled" models (VDSR) a Y plane already at the output size. Returns [C', H*model_scale,
        W*model_scale] float32 on the CPU, neither clamped nor rounded. The same engine as `upscale`
        (padding to the size multiple, ensemble, device, precision, tiles) without the image pipeline around
        it (no dtype or colour conversion, gray fold, alpha or --outscale resize). With
        `UpscaleOptions(exact=True)` it is fp32 on the whole image.
        """
        if x.ndim != 3 or not x.is_floating_point() or x.shape[0] != self._net.in_channels:
            raise InputError(f"{self.name}: network_output expects a float [{self._net.in_channels},H,W] tensor, "
                             f"got {x.dtype} {tuple(x.shape)}")
        height, width = x.shape[-2:]
        check_output_size(f"a {width}x{height} input", width * self.model_scale, height * self.model_scale,
                          self.model_scale, self.budget)
        return self._run_engine(x.float(), progress, TileStats())

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the result for an input of height x width."""
        return _scaled(height, self.output_scale), _scaled(width, self.output_scale)

    def check_output_size(self, source: object, height: int, width: int) -> None:
        """OutputError naming `source` when the result for height x width is over the pixel budget
        (`UpscaleOptions.max_pixels`); `upscale` calls it before allocating anything, callers that know
        the file name call it first for a better message."""
        out_height, out_width = self.output_size(height, width)
        check_output_size(source, out_width, out_height, self.output_scale, self.budget)

    # --- streamed output: an image whose result is too large to hold ---------------------------------

    def why_not_streamed(self, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        """None when `upscale_rows` can stream an image of this shape (HxW or HxWxC) and dtype, else why not
        (the reason completes "the result is held in memory: ...")."""
        channels = 1 if len(shape) == 2 else shape[2]
        if np.dtype(dtype) not in _UINT_MAX:
            return "the input is not 8- or 16-bit"
        if channels in (2, 4):
            return "the alpha channel's hidden colour is filled from the whole image first"
        if self._refines_upscaled_y:
            return f"{self.name} runs on the whole bicubic-upscaled image"
        height, width = shape[:2]
        if self.output_size(height, width) != (height * self.model_scale, width * self.model_scale):
            return "--outscale resizes the whole result"
        return None

    def upscale_rows(self, image: np.ndarray, bit_depth: int, progress: Progress | None = None,
                     stats: TileStats | None = None) -> Iterator[np.ndarray]:
        """`upscale`'s result for a uint8/uint16 gray or RGB image as row bands, top to bottom, each converted
        to `bit_depth` (8: uint8, 16: uint16) as `upscale` plus rounding would: the bands stacked are
        bit-identical to the whole result. Only a band of about one tile row plus its context is held in
        float, and the input is converted to float one tile window at a time (`sr_cli.engine.upscale_bands`),
        so memory stays bounded whatever the image's size. ValueError for an image `why_not_streamed` refuses.
        """
        reason = self.why_not_streamed(image.shape, image.dtype)
        if reason is not None:
            raise ValueError(f"this image cannot be upscaled in rows: {reason}")
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
        self.check_output_size(f"a {image.shape[1]}x{image.shape[0]} image", image.shape[0], image.shape[1])
        return self._rows(image, np.dtype(np.uint16 if bit_depth == 16 else np.uint8), progress,
                          stats if stats is not None else TileStats())

    def upscale_rows_with_report(self, image: np.ndarray, bit_depth: int, progress: Progress | None = None,
                                 ) -> tuple[Iterator[np.ndarray], Callable[[], RunReport]]:
        """`upscale_rows`, and a function that says how the engine ran them once every band was taken."""
        stats = TileStats()
        return self.upscale_rows(image, bit_depth, progress, stats), lambda: self._report(stats)

    def _rows(self, image: np.ndarray, dtype: np.dtype, progress: Progress | None,
              stats: TileStats) -> Iterator[np.ndarray]:
        """The steps of `upscale` (gray as RGB, clip, luma fold, rounding), band by band."""
        color = image[:, :, None] if image.ndim == 2 else image
        gray = color.shape[2] == 1
        rgb = np.repeat(color, 3, axis=2) if gray else color  # still 8/16-bit: the engine converts per window
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        del rgb
        plan = self._engine_plan()
        try:
            for _start, band in upscale_bands(
                self._forward, x, plan, progress=progress, stats=stats, host_budget_bytes=STREAMED_HOST_BUDGET_BYTES,
                profile=self.forward_profile() if progress is not None else None,
            ):
                converted = np.empty((band.shape[-2], band.shape[-1], color.shape[2]), dtype=dtype)
                for start in range(0, band.shape[-2], _ROWS_CONVERTED_AT_ONCE):  # float temporaries stay small
                    rows = band[:, start:start + _ROWS_CONVERTED_AT_ONCE].permute(1, 2, 0).numpy()
                    out_rgb = np.clip(rows, 0.0, 1.0)
                    converted[start:start + rows.shape[0]] = _to_dtype(
                        (out_rgb @ GRAY_FROM_RGB)[:, :, None] if gray else out_rgb, dtype)
                del band, rows, out_rgb  # the engine's band buffer is freed before it makes the next one
                yield converted[:, :, 0] if image.ndim == 2 else converted
        except ModelOutputError as error:  # the engine knows no names: say which model it was
            raise ModelOutputError(f"{self.name}: {error}") from None

    # --- what a job costs (for the estimate before a long run) ----------------------------------------

    @property
    def runs_at_output_size(self) -> bool:
        """True when the network runs on the upscaled image (VDSR): its work grows with the output size."""
        return self._refines_upscaled_y

    def forward_profile(self) -> ForwardProfile:
        """Conv calls and MACs per network-input pixel of one forward (measured once, on a tiny probe)."""
        if self._profile is None:
            self._profile = profile_forward(self._net, in_channels=self._net.in_channels,
                                            size_multiple=self._net.size_multiple, device=self.device)
        return self._profile

    def work_macs(self, height: int, width: int, *, has_alpha: bool = False) -> float:
        """Multiply-accumulates to upscale one height x width image (ensemble views and an alpha pass
        included; tile overlap not: it adds a few percent where the image is tiled)."""
        net_h, net_w = self.output_size(height, width) if self._refines_upscaled_y else (height, width)
        views = 8 if self.options.ensemble else 1
        return self.forward_profile().macs_per_pixel * net_h * net_w * views * (2 if has_alpha else 1)

    # --- the pipeline -------------------------------------------------------------------------------

    def _upscale_rgb(self, rgb: np.ndarray, progress: Progress | None, stats: TileStats) -> np.ndarray:
        """HxWx3 float32 in [0, 1] -> (round(H*s), round(W*s), 3) float32, not clipped."""
        target = self.output_size(*rgb.shape[:2])
        if self._refines_upscaled_y:
            # VDSR (Kim et al. 2016): MATLAB-bicubic YCbCr to the target size, the net refines Y only.
            ycbcr = imresize(rgb_to_ycbcr(rgb), output_shape=target)
            ycbcr[:, :, 0] = self._refine_y(ycbcr[:, :, 0], progress, stats)
            return ycbcr_to_rgb(ycbcr)
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        out = self._run_engine(x, progress, stats).permute(1, 2, 0).numpy()
        if out.shape[:2] != target:
            # --outscale: MATLAB bicubic (antialiased when shrinking) from sr_cli.resize, float, no rounding.
            out = imresize(np.ascontiguousarray(out), output_shape=target)
        return out

    def _refine_y(self, y: np.ndarray, progress: Progress | None, stats: TileStats) -> np.ndarray:
        """VDSR on an already upscaled HxW Y plane (net scale 1)."""
        plane = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None]
        return self._run_engine(plane, progress, stats)[0].numpy()

    def _upscale_alpha(self, alpha: np.ndarray, progress: Progress | None, stats: TileStats) -> np.ndarray:
        """Alpha through the same model (RGB models: replicated into 3 channels, the mean taken; VDSR: as
        its Y plane), then clipped to [0, 1].

        Measured with the real VDSR weights on hard-edged alphas (a disk, thin bars, a diagonal; binary at
        high resolution, MATLAB-bicubic downscaled x2/x4, upscaled back; bench/alpha_edges.py): the model
        beats bicubic by 3 to 11 dB PSNR, because it restores the step that bicubic leaves blurred. Its
        overshoot (up to +0.25) is removed by the clip. Costs a second model pass for RGBA/LA images.
        """
        if self._refines_upscaled_y:
            # VDSR was trained on Y in [16/255, 235/255]: map alpha onto that range and back.
            y = imresize(_Y_LOW + _Y_SPAN * alpha, output_shape=self.output_size(*alpha.shape))
            return np.clip((self._refine_y(y, progress, stats) - _Y_LOW) / _Y_SPAN, 0.0, 1.0)
        rgb = np.repeat(alpha[:, :, None], 3, axis=2)
        return np.clip(self._upscale_rgb(rgb, progress, stats).mean(axis=2), 0.0, 1.0)

    def _estimate_cost(self) -> None:
        """Measure the cost of a pixel once, when the auto tile needs it."""
        if self.options.tile_plan is None and self._cost_per_pixel is None:
            self._cost_per_pixel = estimate_cost_per_pixel(
                self._net, in_channels=self._net.in_channels, size_multiple=self._net.size_multiple, device=self.device)

    def _engine_plan(self) -> EnginePlan:
        """How the engine runs the net: the same plan for every pass (colour, alpha, a streamed run's bands)."""
        self._estimate_cost()
        net, options = self._net, self.options
        return EnginePlan(
            scale=net.scale, device=self.device, precision=self.precision, tile=options.tile_plan,
            overlap=self.overlap, min_overlap=net.min_overlap, exact_overlap=net.exact_overlap,
            size_multiple=net.size_multiple, ensemble=options.ensemble, channels_last=self._channels_last,
            cost_per_pixel=self._cost_per_pixel,
        )

    def _run_engine(self, x: Tensor, progress: Progress | None, stats: TileStats) -> Tensor:
        """One engine pass; `stats` (one per image, shared by its passes) records the tile plan it ran."""
        plan = self._engine_plan()
        try:
            return upscale_tensor(self._forward, x, plan, progress=progress, stats=stats,
                                  profile=self.forward_profile() if progress is not None else None)
        except ModelOutputError as error:  # the engine knows no names: say which model it was
            raise ModelOutputError(f"{self.name}: {error}") from None


def load_model(
    model: str | Path,
    scale: float | None = None,
    *,
    res_scale: float | None = None,
    alpha: float | None = None,
    denoise: float | None = None,
    outscale: float | None = None,
    options: UpscaleOptions = UpscaleOptions(),
    progress_download: Progress | None = None,
    session: ModelSession | None = None,
) -> Upscaler:
    """Load `model` (a manifest name/alias or a weights file) for x`scale`, ready to upscale.

    scale: the model scale (EDSR/RRDB/SRVGG: the file's scale; MDSR: 2, 3 or 4; VDSR: any > 1). None (and no
    outscale): the only scale the model serves; a model serving several or any needs it (UsageError).
    outscale: the final factor; when given, `scale` may be None and the model scale that fits is chosen
    (the smallest served scale >= outscale, else the largest), then the result is resized to exactly
    round(H * outscale) x round(W * outscale) with MATLAB bicubic (antialiased when shrinking).
    alpha: network interpolation between a PSNR model and its GAN pair (0 = PSNR, 1 = GAN).
    denoise: Real-ESRGAN's denoise strength S (`-dn`) for a model with a denoise partner (realesr-general-x4v3):
    S * the model + (1 - S) * its partner (realesr-general-wdn-x4v3, which keeps noise); 1 = the model alone.
    session: the zoo.ModelSession a caller already asked about this model (e.g. its default scale), so that
    the file is read and hashed once in all.
    Raises UsageError / ScaleMismatchError / DeviceError / the zoo's errors, each with the fix.
    """
    _ = options.runtime  # resolve device and precision now: refuse before any download
    for label, value in (("--scale", scale), ("--outscale", outscale), ("--res-scale", res_scale)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise UsageError(f"{label} {value!r} must be a positive number")
    from sr_cli import zoo  # here: the zoo pulls in huggingface_hub, which `import sr_cli.api` should not pay for

    if session is None:
        session = zoo.ModelSession()  # one read of a file, whatever the scale questions below
    if scale is None and outscale is None:
        # the only scale it serves; several (MDSR) or any (VDSR): UsageError
        scale = session.default_scale(model, res_scale=res_scale)
    if alpha is not None and denoise is not None:
        raise UsageError("--alpha and --denoise exclude each other: each blends the model with a different partner")
    if alpha is not None:
        _check_has_pair(model, scale)  # before any download
    if denoise is not None:
        _check_has_denoise_partner(model, scale, denoise)
    loaded = _load_for(session, model, scale, outscale, res_scale, progress_download)
    srnet = loaded.srnet
    if alpha is not None:
        srnet = _interpolated(loaded, alpha, res_scale, progress_download)
    if denoise is not None:
        srnet = _denoised(session, loaded, denoise, res_scale, progress_download)
    if srnet.input_kind == "y-upscaled":  # net scale 1: the requested factor is the output's
        output_scale = float(outscale if outscale is not None else scale)  # type: ignore[arg-type]
        if outscale is not None and not outscale > 1:
            raise UsageError(f"--outscale {outscale:g}: {loaded.name} is a VDSR model, which upscales by factors above 1 "
                             f"only; give --outscale above 1 (or use another model to shrink)")
    else:
        output_scale = float(outscale if outscale is not None else srnet.scale)
    upscaler = Upscaler(srnet, name=loaded.name, output_scale=output_scale, options=options)
    if loaded.checkpoint is not None:
        upscaler.weights_file, upscaler.weights_sha256 = loaded.checkpoint.path, loaded.checkpoint.sha256
        upscaler.weights_source = loaded.source
    return upscaler


# --- loading helpers --------------------------------------------------------------------------------


def _scale_order(outscale: float) -> list[int]:
    """Model scales to try for --outscale: the smallest >= outscale first (upscale a little, then shrink,
    keeps the most detail), then the next larger ones, then the largest below (upscale the rest bicubically)."""
    above = [s for s in CANDIDATE_SCALES if s >= outscale]
    below = sorted((s for s in CANDIDATE_SCALES if s < outscale), reverse=True)
    return above + below


def _load_for(session: ModelSession, model: str | Path, scale: float | None, outscale: float | None,
              res_scale: float | None, progress_download: Progress | None) -> LoadedModel:
    candidates: list[float]
    if scale is not None:
        candidates = [scale]
    else:
        assert outscale is not None
        candidates = [outscale, *_scale_order(outscale)]
    return session.load_first_served(model, candidates, res_scale=res_scale, progress=progress_download)


def _check_has_pair(model: str | Path, scale: float | None) -> None:
    """--alpha needs a manifest model with a PSNR/GAN partner; refuse the others without downloading anything."""
    from sr_cli import zoo

    if zoo.looks_like_path(model):
        raise UsageError(f"--alpha needs a model with a PSNR/GAN pair from the manifest; for the file {model}, "
                         f"make the blend with `sr blend --psnr FILE --gan FILE -o blend.safetensors` first")
    entry = zoo.resolve(str(model), scale)
    if zoo.interpolation_partner_of(entry) is None:
        raise UsageError(f"--alpha needs a model with a PSNR/GAN pair (esrgan, esrgan-psnr, realesrgan-x4plus, "
                         f"realesrnet-x4plus); {entry.name} has none")


def _check_has_denoise_partner(model: str | Path, scale: float | None, strength: float) -> None:
    """--denoise needs a manifest model with a denoise partner and S in [0, 1]; refuse before any download."""
    from sr_cli import zoo

    if not (isinstance(strength, (int, float)) and 0.0 <= strength <= 1.0):  # also refuses NaN
        raise UsageError(f"--denoise {strength!r} is outside [0, 1]; 1 = strong denoise (the model alone), "
                         f"0 = keep the noise (its weak-denoise partner alone)")
    with_partner = [e.name for e in zoo.load_manifest().entries if zoo.denoise_partner_of(e) is not None]
    if zoo.looks_like_path(model):
        raise UsageError(f"--denoise needs a model with a denoise partner in the manifest ({', '.join(with_partner)}); "
                         f"{model} is a file")
    entry = zoo.resolve(str(model), scale)
    if zoo.denoise_partner_of(entry) is None:
        raise UsageError(f"--denoise needs a model with a denoise partner ({', '.join(with_partner)}); "
                         f"{entry.name} has none")


def _denoised(session: ModelSession, loaded: LoadedModel, strength: float, res_scale: float | None,
              progress_download: Progress | None) -> SRNet:
    """Real-ESRGAN's dni: strength * the model + (1 - strength) * its denoise partner, through the one
    interpolation (weights.interpolate) and the one loader path (the session). S = 1 and S = 0 are exact
    copies of the model and of the partner."""
    from sr_cli import zoo
    from sr_cli.weights.interpolate import interpolate_state_dicts

    partner_entry = zoo.denoise_partner_of(loaded.entry) if loaded.entry is not None else None
    assert partner_entry is not None, "checked by _check_has_denoise_partner before loading"
    partner = session.load(partner_entry.name, loaded.srnet.scale, res_scale=res_scale, progress=progress_download)
    weights = interpolate_state_dicts(partner.srnet.module.state_dict(), loaded.srnet.module.state_dict(), strength)
    srnet = copy.deepcopy(loaded.srnet)
    srnet.module.load_state_dict(weights, strict=True)
    return srnet


def _interpolated(loaded, alpha: float, res_scale: float | None, progress_download: Progress | None) -> SRNet:  # noqa: ANN001
    """The loaded model's weights blended with its PSNR/GAN partner: (1 - alpha) PSNR + alpha GAN."""
    from sr_cli import zoo
    from sr_cli.weights.interpolate import check_alpha, interpolate_state_dicts

    check_alpha(alpha)
    partner_entry = zoo.interpolation_partner_of(loaded.entry) if loaded.entry is not None else None
    if partner_entry is None:
        raise UsageError(f"--alpha needs a model with a PSNR/GAN pair (e.g. esrgan); {loaded.name} has none")
    partner = zoo.load(partner_entry.name, loaded.srnet.scale, res_scale=res_scale, progress=progress_download)
    psnr, gan = (loaded, partner) if loaded.entry.variant == "psnr" else (partner, loaded)
    blended = interpolate_state_dicts(psnr.srnet.module.state_dict(), gan.srnet.module.state_dict(), alpha)
    srnet = copy.deepcopy(loaded.srnet)
    srnet.module.load_state_dict(blended, strict=True)
    return srnet


# --- pixels -----------------------------------------------------------------------------------------


def _two_passes(progress: Progress | None) -> tuple[Progress | None, Progress | None]:
    """Progress for colour then alpha as one bar: the alpha pass runs the same tile grid again."""
    if progress is None:
        return None, None
    first_total = [0]

    def colour(done: int, total: int) -> None:
        first_total[0] = total
        progress(done, 2 * total)

    def alpha(done: int, total: int) -> None:
        progress(first_total[0] + done, first_total[0] + total)

    return colour, alpha


def _scaled(length: int, factor: float) -> int:
    """length * factor rounded half up (not Python's round-half-even: 7 * 3.5 gives 25, not 24), at least 1."""
    return max(int(math.floor(length * factor + 0.5)), 1)


def _as_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float32 in [0, 1] -> float32 in [0, 1], with the checks an API user deserves."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"expected a numpy array, got {type(image).__name__}; use upscale_pil for PIL images")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise InputError(f"expected an HxW or HxWxC image with C in 1..4, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"empty image of shape {image.shape}")
    if image.dtype in _UINT_MAX:
        return image.astype(np.float32) / np.float32(_UINT_MAX[image.dtype])
    if image.dtype == np.float32:
        if not np.isfinite(image).all():
            raise InputError("the float32 image contains NaN or Inf; pass finite values in [0, 1]")
        if image.size and (image.min() < 0.0 or image.max() > 1.0):
            raise InputError(f"float32 images must lie in [0, 1]; this one spans [{image.min():g}, {image.max():g}]")
        return image
    raise InputError(f"unsupported dtype {image.dtype}; pass uint8, uint16 or float32 in [0, 1]")


def _to_dtype(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    image = np.clip(image, 0.0, 1.0)
    if dtype in _UINT_MAX:
        return np.rint(image * _UINT_MAX[np.dtype(dtype)]).astype(dtype)
    return np.ascontiguousarray(image, dtype=np.float32)


def fill_transparent(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGB where alpha == 0 replaced by colour spread from the visible pixels (push-pull fill).

    The colour under fully transparent pixels is arbitrary (often black or white) and invisible, but a
    network looks several pixels around each output pixel: left in place, it bleeds into the visible
    edge as a dark or light halo. Premultiplying would hide it too, but then every partly transparent
    edge pixel is darkened before a non-linear model sees it and the division afterwards amplifies the
    model's error exactly where alpha is small. Filling keeps visible colours untouched and gives the
    model a smooth continuation of them: a pyramid of alpha-weighted averages (pull), read back from
    coarse to fine wherever a level has no visible pixel (push).
    """
    import cv2

    visible = (alpha > 0).astype(np.float32)
    if visible.all() or not visible.any():
        return rgb
    levels: list[tuple[np.ndarray, np.ndarray]] = []
    color: np.ndarray = rgb * visible[:, :, None]
    weight: np.ndarray = visible
    while True:
        levels.append((color, weight))
        height, width = weight.shape
        if height == 1 and width == 1:
            break
        size = (max(width // 2, 1), max(height // 2, 1))
        color = cv2.resize(color, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], 3)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    filled = levels[-1][0] / np.maximum(levels[-1][1], 1e-12)[:, :, None]
    for color, weight in reversed(levels[:-1]):
        height, width = weight.shape
        coarse = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, 3)
        known = weight[:, :, None] > 0
        filled = np.where(known, color / np.maximum(weight, 1e-12)[:, :, None], coarse)
    result = np.where(visible[:, :, None] > 0, rgb, filled).astype(np.float32)
    return result

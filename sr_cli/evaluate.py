"""`sr eval`: PSNR/SSIM of a model on a benchmark set, measured the way the published tables were.

Protocols (docs/eval.md says why each choice was made):

``paper`` (default): each model as its paper measured it.
  - RGB models (EDSR, MDSR, ESRGAN, ...): the network runs on the shipped, MATLAB-made RGB LR file; its
    output is clamped and rounded to 8 bits; Y = MATLAB ``rgb2ycbcr`` on uint8 (rounded) for output and HR.
  - ``bicubic``: the SRCNN / VDSR MATLAB recipe of the published Bicubic rows: Y = rgb2ycbcr(uint8 HR)
    (rounded), im2double, imresize 1/s then s (double), output rounded to 8 bits, scored against that Y.
  - ``vdsr``: the recipe of the published numbers of these weights (pytorch-vdsr eval.py on the MATLAB-made
    Set5_mat): Y = rgb2ycbcr(double HR) (not rounded), imresize 1/s then s in double, VDSR on that Y, output
    clamped to [0, 255] but NOT rounded, scored against the double HR Y.
``rgb-lr``: every model, Y models included, from the shipped RGB LR through the `sr upscale` path
  (``sr_cli.api``), 8-bit output, scored like ``paper`` RGB models. What users get.
``edsr-pytorch``: EDSR-PyTorch's ``calc_psnr``: 8-bit output, Y = (65.738 R + 129.057 G + 25.064 B) / 256
  (+16) not rounded; DIV2K: RGB with a border of scale + 6.
``basicsr``: BasicSR's ``calculate_psnr/ssim(test_y_channel=True)``: 8-bit output, Y = 16 + (65.481 R +
  128.553 G + 24.966 B) / 255 not rounded.

In every protocol the border is ``scale`` pixels (``--crop N`` overrides it); ``--rgb`` scores the three
RGB channels (SSIM: mean over channels) with a border of scale + 6, as the EDSR authors do on DIV2K.
Grayscale images (Set14 ``bridge``) are scored on their single channel: RGB models get the gray image
replicated to RGB and their output is folded back with BT.601 luma weights (as ``sr upscale`` does).

Every network runs through `sr_cli.api.Upscaler`, the one place that pads, ensembles and picks device and
precision: the ``paper``/``edsr-pytorch``/``basicsr`` recipes take its float output
(`Upscaler.network_output` with ``UpscaleOptions(exact=True)``: fp32, the whole image, NCHW) and round or
not as their paper did; ``rgb-lr`` takes `Upscaler.upscale`, as ``sr upscale`` does, on the whole image.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sr_cli.archs.families import descriptor_for
from sr_cli.archs.runtime import SRNet
from sr_cli.color import GRAY_FROM_RGB, rgb_to_y
from sr_cli.data.benchmarks import Dataset, ImagePair, dataset_key, load_pair
from sr_cli.data.published import published_for
from sr_cli.errors import InputError, OutputError, UnknownModelError, UsageError
from sr_cli.imageio.budget import PixelBudget
from sr_cli.metrics import psnr, ssim, y_channel
from sr_cli.resize import imresize

if TYPE_CHECKING:  # sr_cli.api (same layer) loads only when a model runs through it
    from sr_cli.api import UpscaleOptions, Upscaler
    from sr_cli.weights.manifest import Metric
    from sr_cli.zoo import ModelSession

__all__ = [
    "PROTOCOLS",
    "BICUBIC",
    "EvalOptions",
    "ImageScore",
    "EvalResult",
    "EvalJob",
    "plan_jobs",
    "image_count",
    "evaluate",
    "evaluate_jobs",
    "model_label",
]

Progress = Callable[[float, int], None]  # (images done, total): fractional within the current image
NetworkProgress = Callable[[int, int], None]  # the engine's (units done, units in all) of one image
PROTOCOLS: tuple[str, ...] = ("paper", "rgb-lr", "edsr-pytorch", "basicsr")
BICUBIC = "bicubic"
EVAL_TILE = 0  # rgb-lr runs the Upscaler on the whole image, as the other protocols run the network
_DIV2K_EXTRA_BORDER = 6  # EDSR-PyTorch: shave = scale + 6 outside the benchmark sets
_EDSR_PYTORCH_Y = np.array([65.738, 129.057, 25.064]) / 256.0


@dataclass(frozen=True)
class EvalOptions:
    protocol: str = "paper"
    ensemble: bool = False
    crop: int | None = None  # border in pixels; None: scale (scale + 6 with rgb)
    rgb: bool = False  # score RGB instead of Y
    save_dir: Path | None = None  # write the SR outputs here (PNG, atomic)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps (sr_cli.engine.device.resolve_device)
    res_scale: float | None = None  # EDSR/MDSR files whose residual scaling the shapes cannot tell
    budget: PixelBudget | None = None  # largest image read or made; None: SR_MAX_PIXELS or the defaults

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol {self.protocol}: unknown; choose one of {', '.join(PROTOCOLS)}")
        if self.crop is not None and self.crop < 0:
            raise UsageError(f"--crop {self.crop}: must be 0 or more pixels")


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class EvalResult:
    dataset: str  # the dataset key ("set5") or, for a folder, its path
    dataset_label: str  # shown in tables: "Set5"
    model: str  # as given (name or path)
    label: str  # shown in tables and matched with published rows: "Bicubic", "VDSR+", "EDSR"
    scale: int
    protocol: str
    ensemble: bool
    psnr: float
    ssim: float
    n_images: int
    per_image: tuple[ImageScore, ...] = field(repr=False)
    published_psnr: float | None
    published_ssim: float | None
    published_source: str | None
    device: str | None = None  # where the network ran; None for bicubic
    weights_file: str | None = None  # the file that ran and its sha256 (None for bicubic)
    weights_sha256: str | None = None
    seconds: float = 0.0  # wall time of the evaluation, loading included

    def to_record(self) -> dict[str, object]:
        """The result as one flat, JSON-safe record (inf PSNR becomes the string "inf"): `--json`, `--csv`."""
        return {
            "dataset": self.dataset,
            "model": self.label,
            "model_arg": self.model,
            "scale": self.scale,
            "protocol": self.protocol,
            "ensemble": self.ensemble,
            "image": None,  # the whole set (per-image records name theirs)
            "psnr": _json_float(self.psnr),
            "ssim": self.ssim,
            "n_images": self.n_images,
            "published_psnr": self.published_psnr,
            "published_ssim": self.published_ssim,
            "published_source": self.published_source,
            "device": self.device,
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "seconds": round(self.seconds, 3),
        }

    def image_records(self) -> list[dict[str, object]]:
        """One flat record per image (`--per-image --json`), keyed like `to_record` where they mean the same."""
        common = {"dataset": self.dataset, "model": self.label, "model_arg": self.model, "scale": self.scale,
                  "protocol": self.protocol, "ensemble": self.ensemble}
        return [{**common, "image": score.name, "psnr": _json_float(score.psnr), "ssim": score.ssim}
                for score in self.per_image]


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


# --- models ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Model:
    """What `evaluate` needs of a model: its kind and its published figures (it runs through `_upscaler`)."""

    arg: str
    family: str  # "bicubic" | an SRNet family
    srnet: SRNet | None  # None for bicubic
    entry_name: str | None  # manifest name when loaded by name
    manifest_metrics: tuple[Metric, ...] = ()  # published figures the manifest entry carries
    weights_file: Path | None = None  # the file read (None for bicubic)
    weights_sha256: str | None = None


def _load_model(model: str, scale: int, options: EvalOptions, session: ModelSession | None) -> _Model:
    if model.lower() == BICUBIC:
        return _Model(arg=model, family=BICUBIC, srnet=None, entry_name=None)
    from sr_cli import zoo

    if not zoo.looks_like_path(model) and not zoo.is_known(model):  # the message must offer bicubic too
        raise UnknownModelError(zoo.unknown_model_message(model, also=(BICUBIC,)))
    _ = _upscale_options(options, exact=True).runtime  # an absent --device is refused before anything is read
    session = session if session is not None else zoo.ModelSession()
    loaded = session.load(model, scale, res_scale=options.res_scale)  # a manifest name or a weights file
    entry_name = loaded.entry.name if loaded.entry else None
    metrics = loaded.entry.published_metrics if loaded.entry else ()
    return _Model(arg=model, family=loaded.srnet.family, srnet=loaded.srnet, entry_name=entry_name,
                  manifest_metrics=tuple(metrics), weights_file=loaded.checkpoint.path,
                  weights_sha256=loaded.checkpoint.sha256)


def _upscale_options(options: EvalOptions, *, exact: bool) -> UpscaleOptions:
    from sr_cli.api import UpscaleOptions

    # tile=0, the whole image: an automatic tile follows the free memory, so the score would depend on the
    # machine (tiles agree with the whole image only within 1/255, which moves a PSNR in the 2nd decimal).
    return UpscaleOptions(tile=EVAL_TILE, exact=exact, ensemble=options.ensemble, device=options.device,
                          max_pixels=options.budget.output if options.budget else None)


def _upscaler(model: _Model, scale: int, options: EvalOptions, *, exact: bool) -> Upscaler:
    """The object `sr upscale` runs (what `sr_cli.api.load_model` returns for this model and scale).

    exact: the paper protocols score the network's float output (`Upscaler.network_output`) in fp32 on the
    whole image; rgb-lr (exact=False) runs `Upscaler.upscale` as `sr upscale` would, on the whole image."""
    from sr_cli.api import Upscaler

    assert model.srnet is not None
    return Upscaler(model.srnet, name=model.arg, output_scale=float(scale),
                    options=_upscale_options(options, exact=exact))


# The manifest entry (and its file name) of twtygqyy/pytorch-vdsr's weights, whose own published figures exist.
_SHIPPED_VDSR_ENTRY = "vdsr"
_SHIPPED_VDSR_FILE = "model_epoch_50.pth"


def model_label(model: str, family: str, *, ensemble: bool) -> str:
    """Table label: Bicubic, or the family's label (VDSR / EDSR / MDSR) for the papers' models (its
    descriptor's `paper_model_names`), else the model's name; "+" when self-ensembled."""
    name = Path(model).stem if Path(model).suffix else model
    if family == BICUBIC:
        base = "Bicubic"
    else:
        descriptor = descriptor_for(family)
        papers = descriptor.paper_model_names
        base = descriptor.label if papers is None or name.lower() in papers else name
    return base + ("+" if ensemble else "")


def _published(label: str, model: _Model, dataset: Dataset, scale: int, options: EvalOptions) -> tuple[
    float | None, float | None, str | None
]:
    candidates = [label]
    shipped_vdsr = model.entry_name == _SHIPPED_VDSR_ENTRY or model.arg.lower() == _SHIPPED_VDSR_ENTRY \
        or Path(model.arg).name == _SHIPPED_VDSR_FILE
    if label == "VDSR" and shipped_vdsr:  # the label is the family's only for VDSR models without ensemble
        candidates.insert(0, "VDSR (pytorch-vdsr model_epoch_50)")  # the numbers published for these weights
    for method in candidates:
        row = published_for(method, dataset.key, scale)
        if row is not None:
            return row.psnr, row.ssim, row.source.key
    if not options.ensemble:  # the manifest entry's own figures (e.g. ESRGAN's RRDB PSNR model)
        for metric in model.manifest_metrics:
            if metric.scale == scale and dataset_key(metric.dataset) == dataset.key:
                return metric.psnr, metric.ssim, metric.source
    return None, None, None


# --- running -----------------------------------------------------------------------------------------


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWxC -> float32 [C,H,W] in [0,1] (divided on the CPU: a GPU divides by a multiplication)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(dtype=torch.float32).div_(255.0)


def _to_uint8(out: torch.Tensor) -> np.ndarray:
    """float [C,H,W] in [0,1] -> uint8 HxWxC: clamp, scale, round half up (MATLAB uint8())."""
    levels = torch.floor(out.clamp(0.0, 1.0) * 255.0 + 0.5)
    return levels.permute(1, 2, 0).to("cpu", torch.uint8).numpy()


def _run_rgb_model(upscaler: Upscaler, lr: np.ndarray, progress: NetworkProgress | None) -> np.ndarray:
    """The network on the whole LR image (exact: fp32, no tiling), 8-bit output; gray in -> gray out."""
    gray = lr.ndim == 2
    rgb = np.repeat(lr[..., None], 3, axis=2) if gray else lr
    out = upscaler.network_output(_to_tensor(rgb), progress)
    if gray:
        folded = (out.permute(1, 2, 0).numpy() @ GRAY_FROM_RGB)[None]
        return _to_uint8(torch.from_numpy(folded))[..., 0]
    return _to_uint8(out)


def _run_via_api(upscaler: Upscaler | None, lr: np.ndarray, scale: int, progress: NetworkProgress | None) -> np.ndarray:
    if upscaler is None:  # bicubic: `sr upscale` has no bicubic model; MATLAB imresize of the 8-bit image
        return imresize(lr, float(scale))
    return upscaler.upscale(lr, progress)


def _y_recipe_input(hr: np.ndarray, rounded_y: bool) -> np.ndarray:
    """HR luma on 0..255 (float64): MATLAB rgb2ycbcr on uint8 (rounded) or on double (not rounded)."""
    if hr.ndim == 2:
        return hr.astype(np.float64)
    if rounded_y:
        return y_channel(hr, rounded=True)
    return rgb_to_y(hr.astype(np.float64) / 255.0) * 255.0


def _paper_y_model(upscaler: Upscaler | None, pair: ImagePair, scale: int,
                   progress: NetworkProgress | None) -> tuple[np.ndarray, np.ndarray]:
    """(reference Y, SR Y) on 0..255 for bicubic (no upscaler) / VDSR, per the MATLAB recipes in the module
    docstring; VDSR's float output is kept unrounded (its published figures were measured so)."""
    is_bicubic = upscaler is None
    reference = _y_recipe_input(pair.hr, rounded_y=is_bicubic)
    upscaled = imresize(imresize(reference / 255.0, 1.0 / scale), float(scale))
    if upscaler is None:
        return reference, np.clip(np.floor(upscaled * 255.0 + 0.5), 0.0, 255.0)
    x = torch.from_numpy(upscaled).to(dtype=torch.float32)[None]
    out = upscaler.network_output(x, progress)[0].double().numpy()
    return reference, np.clip(out * 255.0, 0.0, 255.0)


def _within_image(progress: Progress | None, index: int, count: int) -> NetworkProgress | None:
    """The engine's units of image `index` as a fraction of that image, so a slow model's bar (and its
    ETA) moves during its first image instead of after it. Never reaches index + 1: that is reported
    once the image is scored."""
    if progress is None:
        return None

    def report(done: int, total: int) -> None:
        if total > 0:
            progress(index + min(done / total, 0.999), count)

    return report


def _score_8bit(sr: np.ndarray, hr: np.ndarray, scale: int, options: EvalOptions, dataset: Dataset, name: str, path: str) -> ImageScore:
    if sr.shape != hr.shape:
        raise InputError(
            f"{path}: the SR output is {sr.shape[1]}x{sr.shape[0]} but the HR is {hr.shape[1]}x{hr.shape[0]}; "
            f"the model does not produce exactly x{scale}"
        )
    rgb = options.rgb or (options.protocol == "edsr-pytorch" and dataset.key == "div2k-val")
    border = options.crop if options.crop is not None else scale + (_DIV2K_EXTRA_BORDER if rgb else 0)
    if rgb or sr.ndim == 2:
        a, b = sr.astype(np.float64), hr.astype(np.float64)
    elif options.protocol == "edsr-pytorch":
        a = 16.0 + sr.astype(np.float64) @ _EDSR_PYTORCH_Y
        b = 16.0 + hr.astype(np.float64) @ _EDSR_PYTORCH_Y
    else:
        rounded = options.protocol in ("paper", "rgb-lr")
        a, b = y_channel(sr, rounded=rounded), y_channel(hr, rounded=rounded)
    return ImageScore(name=name, psnr=psnr(a, b, border=border, name=path), ssim=ssim(a, b, border=border, name=path))


def _score_y(reference: np.ndarray, sr_y: np.ndarray, scale: int, options: EvalOptions, name: str, path: str) -> ImageScore:
    border = options.crop if options.crop is not None else scale
    return ImageScore(
        name=name, psnr=psnr(sr_y, reference, border=border, name=path), ssim=ssim(sr_y, reference, border=border, name=path)
    )


def _save(options: EvalOptions, dataset: Dataset, label: str, scale: int, name: str, pixels: np.ndarray, sources: tuple[Path, ...]) -> None:
    from sr_cli.imageio import write_image

    assert options.save_dir is not None
    folder = options.save_dir / dataset.label / f"x{scale}" / label.replace("/", "_")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{folder}: cannot create the folder ({error.strerror}); choose another --save-dir") from error
    target = folder / f"{name}.png"
    if any(target.resolve() == source.resolve() for source in sources):
        raise OutputError(f"{target}: is one of the input images; choose a --save-dir outside the dataset")
    write_image(target, pixels, format="png", overwrite=True)  # --save-dir is rewritten by every run


def evaluate(
    dataset: Dataset,
    model: str,
    scale: int,
    options: EvalOptions = EvalOptions(),
    progress: Progress | None = None,
    *,
    session: ModelSession | None = None,
) -> EvalResult:
    """PSNR/SSIM of ``model`` (a manifest name, a weights file, or ``bicubic``) on ``dataset`` at x``scale``.

    ``session``: pass one `zoo.ModelSession` to every call of a run, so each weights file is read once
    (not once per dataset x scale)."""
    if scale < 2 or int(scale) != scale:
        raise UsageError(f"--scale {scale}: benchmark evaluation needs an integer scale of 2 or more")
    started = time.perf_counter()
    loaded = _load_model(model, scale, options, session)
    y_model = loaded.family == BICUBIC or (loaded.srnet is not None and loaded.srnet.input_kind == "y-upscaled")
    if options.ensemble and loaded.family == BICUBIC:
        raise UsageError("--ensemble has no meaning for bicubic; drop it or choose a network")
    paper_y_path = options.protocol == "paper" and y_model and not options.rgb
    via_api = options.protocol == "rgb-lr" or (y_model and not paper_y_path)
    upscaler = _upscaler(loaded, scale, options, exact=not via_api) if loaded.srnet is not None else None
    label = model_label(model, loaded.family, ensemble=options.ensemble)
    images = dataset.images(scale)
    scores: list[ImageScore] = []
    for index, image in enumerate(images):
        pair = load_pair(image, scale, options.budget)
        sources = tuple(p for p in (image.hr_path, image.lr_path) if p is not None)
        within = _within_image(progress, index, len(images))
        if paper_y_path:
            reference, sr_y = _paper_y_model(upscaler, pair, scale, within)
            scores.append(_score_y(reference, sr_y, scale, options, image.name, str(image.hr_path)))
            saved = np.clip(np.floor(sr_y + 0.5), 0, 255).astype(np.uint8)
        else:
            if via_api:
                sr = _run_via_api(upscaler, pair.lr, scale, within)
            else:
                assert upscaler is not None  # bicubic always goes through the api path or the paper Y path
                sr = _run_rgb_model(upscaler, pair.lr, within)
            scores.append(_score_8bit(sr, pair.hr, scale, options, dataset, image.name, str(image.hr_path)))
            saved = sr
        if options.save_dir is not None:
            _save(options, dataset, label, scale, image.name, saved, sources)
        if progress is not None:
            progress(index + 1, len(images))
    published_psnr, published_ssim, source = _published(label, loaded, dataset, scale, options)
    return EvalResult(
        dataset=dataset.key,
        dataset_label=dataset.label,
        model=model,
        label=label,
        scale=scale,
        protocol=options.protocol,
        ensemble=options.ensemble,
        psnr=float(np.mean([s.psnr for s in scores])),
        ssim=float(np.mean([s.ssim for s in scores])),
        n_images=len(scores),
        per_image=tuple(scores),
        published_psnr=published_psnr,
        published_ssim=published_ssim,
        published_source=source,
        device=str(upscaler.device) if upscaler is not None else None,
        weights_file=str(loaded.weights_file) if loaded.weights_file is not None else None,
        weights_sha256=loaded.weights_sha256,
        seconds=time.perf_counter() - started,
    )


# --- a run: several datasets x scales x models ----------------------------------------------------------


@dataclass(frozen=True)
class EvalJob:
    """One row of a run: ``model`` on ``dataset`` at x``scale``."""

    dataset: Dataset
    model: str
    scale: int


def plan_jobs(datasets: Sequence[Dataset], models: Sequence[str], scales: Sequence[int]) -> list[EvalJob]:
    """The rows of a run in the order they are measured and shown: per dataset, per scale, per model."""
    return [EvalJob(dataset, model, scale) for dataset in datasets for scale in scales for model in models]


def image_count(jobs: Sequence[EvalJob]) -> int:
    """How many images the run scores in all (the total of its progress), known before any model loads."""
    return sum(len(job.dataset.images(job.scale)) for job in jobs)


def evaluate_jobs(
    jobs: Sequence[EvalJob],
    options: EvalOptions = EvalOptions(),
    progress: Progress | None = None,
    *,
    on_start: Callable[[EvalJob], None] | None = None,
    session: ModelSession | None = None,
) -> Iterator[EvalResult]:
    """`evaluate` each job in turn, yielding each result as soon as it is measured.

    progress(done, total) counts images over the whole run (total = `image_count(jobs)` from the first
    call), so a bar can show the run's rate and ETA; on_start(job) is called before each job loads its
    model. ``session``: one `zoo.ModelSession` for the run (made here when None), so each weights file is
    read once."""
    if session is None:
        from sr_cli.zoo import ModelSession

        session = ModelSession()
    total = image_count(jobs)
    done = 0
    for job in jobs:
        if on_start is not None:
            on_start(job)
        if progress is not None:
            progress(done, total)

        def on_image(index: float, _count: int, base: int = done) -> None:
            if progress is not None:
                progress(base + index, total)

        result = evaluate(job.dataset, job.model, job.scale, options, on_image, session=session)
        done += result.n_images
        yield result

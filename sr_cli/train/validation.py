"""Validation during training: PSNR/SSIM on the Y channel, border = scale, as the SR papers report.

LR inputs come from the HR images with the same MATLAB-compatible downscaler as the benchmark files
(`resize.downscale_like_benchmark`), cached like the training data. RGB models: the output is
clamped and rounded to 8 bits, then Y is taken unrounded (EDSR-PyTorch / BasicSR convention). VDSR:
Y in, Y out, compared on 0..255 without rounding.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from sr_cli.data.training import InputKind, Progress, TrainingSet, prepare_training_set
from sr_cli.errors import UsageError
from sr_cli.metrics import psnr, ssim, y_channel
from sr_cli.resize import imresize


@dataclass(frozen=True)
class ValResult:
    psnr: float  # mean over scales of the mean over images
    ssim: float
    per_scale: dict[int, tuple[float, float]]  # scale -> (PSNR, SSIM)


def resolve_val_folder(val: str, scales: tuple[int, ...], data_dir: Path | None = None,
                       progress: Progress | None = None) -> Path:
    """The HR folder of --val: a benchmark name (found under `data_dir`, in the cache, or downloaded, by
    sr eval's lookup: sr_cli.data.benchmarks), a folder in the EDSR layout (HR/ inside), or a folder of
    HR images. LR is always made from HR here."""
    from sr_cli.data.benchmarks import KNOWN_DATASETS, dataset_key, resolve_dataset

    if dataset_key(val) is None and not Path(val).is_dir():
        what = "not a folder" if Path(val).exists() else "neither a known set nor an existing folder"
        raise UsageError(f"--val {val}: {what}; give {', '.join(KNOWN_DATASETS)}, a folder of HR images, or none")
    return resolve_dataset(val, scales=scales, data_dir=data_dir, progress=progress).hr_dir


def prepare_validation(folder: Path, scales: tuple[int, ...], kind: InputKind, cache_dir: Path,
                       progress: Progress | None = None) -> TrainingSet:
    return prepare_training_set(folder, scales, kind=kind, patch=1, cache_dir=cache_dir, progress=progress)


# What is compared with the HR, from an image's input and scale: uint8 RGB (rgb models) or float Y on 0..255.
_Upscale = Callable[[np.ndarray, int], np.ndarray]


@torch.no_grad()
def validate(run_net: Callable[[Tensor, int], Tensor], data: TrainingSet, device: torch.device) -> ValResult:
    """The model's PSNR/SSIM on the validation set."""

    def upscale(source: np.ndarray, s: int) -> np.ndarray:
        if data.kind == "rgb":
            x = torch.from_numpy(source.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
            out = run_net(x, s).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
            return np.floor(out * 255.0 + 0.5).astype(np.uint8)
        x = torch.from_numpy(source.astype(np.float32))[None, None].to(device)
        return run_net(x, s).float().clamp(0, 1)[0, 0].cpu().numpy().astype(np.float64) * 255.0

    return _measure(data, upscale)


def bicubic_baseline(data: TrainingSet) -> ValResult:
    """Bicubic's PSNR/SSIM on the same images, inputs and protocol as `validate` (computed once per set), so
    a model's figure can be read against it: MATLAB-exact bicubic of the 8-bit LR (rgb), or VDSR's own
    input, which is the bicubic-upscaled Y already."""

    def upscale(source: np.ndarray, s: int) -> np.ndarray:
        if data.kind == "rgb":
            return imresize(source, float(s))
        return np.clip(source.astype(np.float64), 0.0, 1.0) * 255.0

    return _measure(data, upscale)


def _measure(data: TrainingSet, upscale: _Upscale) -> ValResult:
    """Y PSNR/SSIM, border = scale, mean over images, then over scales."""
    per_scale: dict[int, tuple[float, float]] = {}
    for s in data.scales:
        psnrs, ssims = [], []
        for image in data.images:
            source = np.load(image.inputs[s], allow_pickle=False)
            target = np.load(image.targets[s], allow_pickle=False)
            sr = upscale(source, s)
            if data.kind == "rgb":
                hr = target[: sr.shape[0], : sr.shape[1]]
                a, b = y_channel(sr, rounded=False), y_channel(np.ascontiguousarray(hr), rounded=False)
            else:
                a, b = sr, target.astype(np.float64) * 255.0
            psnrs.append(psnr(a, b, border=s, name=image.name))
            ssims.append(ssim(a, b, border=s, name=image.name))
        per_scale[s] = (float(np.mean(psnrs)), float(np.mean(ssims)))
    return ValResult(psnr=float(np.mean([v[0] for v in per_scale.values()])),
                     ssim=float(np.mean([v[1] for v in per_scale.values()])), per_scale=per_scale)

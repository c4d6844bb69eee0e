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
from sr_cli.metrics import psnr, ssim, y_channel


@dataclass(frozen=True)
class ValResult:
    psnr: float  # mean over scales of the mean over images
    ssim: float
    per_scale: dict[int, tuple[float, float]]  # scale -> (PSNR, SSIM)


def resolve_val_folder(val: str, scales: tuple[int, ...], progress: Progress | None = None) -> Path:
    """The HR folder of --val: a benchmark name (found or downloaded by sr_cli.data.benchmarks), a folder
    in the EDSR layout (HR/ inside), or a folder of HR images. LR is always made from HR here."""
    from sr_cli.data.benchmarks import resolve_dataset

    return resolve_dataset(val, scales=scales, progress=progress).hr_dir


def prepare_validation(folder: Path, scales: tuple[int, ...], kind: InputKind, cache_dir: Path,
                       progress: Progress | None = None) -> TrainingSet:
    return prepare_training_set(folder, scales, kind=kind, patch=1, cache_dir=cache_dir, progress=progress)


@torch.no_grad()
def validate(run_net: Callable[[Tensor, int], Tensor], data: TrainingSet, device: torch.device) -> ValResult:
    per_scale: dict[int, tuple[float, float]] = {}
    for s in data.scales:
        psnrs, ssims = [], []
        for image in data.images:
            source = np.load(image.inputs[s], allow_pickle=False)
            target = np.load(image.targets[s], allow_pickle=False)
            if data.kind == "rgb":
                x = torch.from_numpy(source.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(device)
                out = run_net(x, s).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
                sr = np.floor(out * 255.0 + 0.5).astype(np.uint8)
                hr = target[: sr.shape[0], : sr.shape[1]]
                a, b = y_channel(sr, rounded=False), y_channel(np.ascontiguousarray(hr), rounded=False)
            else:
                x = torch.from_numpy(source.astype(np.float32))[None, None].to(device)
                a = run_net(x, s).float().clamp(0, 1)[0, 0].cpu().numpy().astype(np.float64) * 255.0
                b = target.astype(np.float64) * 255.0
            psnrs.append(psnr(a, b, border=s, name=image.name))
            ssims.append(ssim(a, b, border=s, name=image.name))
        per_scale[s] = (float(np.mean(psnrs)), float(np.mean(ssims)))
    return ValResult(psnr=float(np.mean([v[0] for v in per_scale.values()])),
                     ssim=float(np.mean([v[1] for v in per_scale.values()])), per_scale=per_scale)

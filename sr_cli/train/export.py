"""The exported model: `runs/NAME/model.safetensors`, loadable by `sr upscale --weights` / `sr eval --model`.

Metadata (weights/safetensors_io.py convention): sr.layout, sr.family, sr.hyperparameters, plus
sr.recipe, sr.step, sr.val_psnr / sr.val_ssim (when validated) and sr.ema (whether EMA weights).
"""
from __future__ import annotations

from pathlib import Path

from torch import Tensor

from sr_cli.archs.runtime import AnyParams
from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata

EXPORT_NAME = "model.safetensors"


def export_model(run_dir: Path, family: str, params: AnyParams, state_dict: dict[str, Tensor], *, recipe: str,
                 step: int, val_psnr: float | None, val_ssim: float | None, ema: bool) -> Path:
    extra = {"recipe": recipe, "step": str(step), "ema": str(ema).lower(), "trained_by": "sr train"}
    if val_psnr is not None:
        extra["val_psnr"] = f"{val_psnr:.4f}"
    if val_ssim is not None:
        extra["val_ssim"] = f"{val_ssim:.6f}"
    path = run_dir / EXPORT_NAME
    # overwrite: the run's own export, replaced by each later export of the same run (--resume included)
    save_safetensors(path, state_dict, sr_metadata(family, params, **extra), overwrite=True)
    return path

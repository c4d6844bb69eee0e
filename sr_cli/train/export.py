"""The exported model: `runs/NAME/NAME.safetensors`, loadable by `sr upscale --weights` / `sr eval --model`.

Named after the run folder, because a weights file's name is its model's name everywhere sr shows one
(docs/design.md "Names of weights files"): `sr upscale` writes `photo_x2_NAME.png`, `sr eval` rows read
`NAME`, `sr blend` defaults to `NAME-alpha0.8.safetensors`. A file called `model.safetensors` in every run
made all of those say "model".

Metadata (weights/safetensors_io.py convention): sr.layout, sr.family, sr.hyperparameters, plus
sr.recipe, sr.run (the run folder's name), sr.step, sr.val_psnr / sr.val_ssim (when validated), sr.ema.
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from sr_cli.archs.runtime import AnyParams
from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata

LEGACY_EXPORT_NAME = "model.safetensors"  # what runs of sr before the run-named exports wrote


def run_name(run_dir: Path) -> str:
    """The run folder's own name (`runs/edsr-x2` -> `edsr-x2`; `.` -> the current folder's name)."""
    return run_dir.absolute().resolve().name or "model"


def export_path(run_dir: Path) -> Path:
    return run_dir / f"{run_name(run_dir)}.safetensors"


def adopt_earlier_export(run_dir: Path, recorded_name: str | None) -> str | None:
    """On --resume: the export of the earlier sessions, renamed to today's `export_path` when its name was
    another one (a run of an older sr wrote model.safetensors; a renamed run folder had another NAME), so a
    run keeps one export. Returns a line saying so, or None when there was nothing to rename."""
    target = export_path(run_dir)
    earlier = run_dir / (recorded_name or LEGACY_EXPORT_NAME)
    if earlier == target or target.exists() or not earlier.is_file():
        return None
    os.replace(earlier, target)
    return f"renamed the run's export {earlier} to {target.name} (exports are named after the run folder)"


def export_model(run_dir: Path, family: str, params: AnyParams, state_dict: dict[str, Tensor], *, recipe: str,
                 step: int, val_psnr: float | None, val_ssim: float | None, ema: bool) -> Path:
    extra = {"recipe": recipe, "run": run_name(run_dir), "step": str(step), "ema": str(ema).lower(),
             "trained_by": "sr train"}
    if val_psnr is not None:
        extra["val_psnr"] = f"{val_psnr:.4f}"
    if val_ssim is not None:
        extra["val_ssim"] = f"{val_ssim:.6f}"
    path = export_path(run_dir)
    # overwrite: the run's own export, replaced by each later export of the same run (--resume included)
    save_safetensors(path, state_dict, sr_metadata(family, params, **extra), overwrite=True)
    return path

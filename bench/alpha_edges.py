"""How to upscale an alpha channel: the model or bicubic? Measured on hard-edged alphas.

    python3 bench/alpha_edges.py

Each alpha is binary at high resolution (a disk, thin vertical bars, a diagonal half-plane), MATLAB-bicubic
downscaled by s (what a sprite or a logo rendered at a smaller size looks like), then upscaled back by s:
(a) MATLAB bicubic, clipped; (b) the real VDSR through `sr_cli.api` (RGBA input, grey colour), which runs
the model on the alpha plane. PSNR against the binary original (higher is better) and the range before
clipping (overshoot) are printed. Needs ../shared/weights/model_epoch_50.pth (or SR_SHARED_DIR).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from sr_cli.api import UpscaleOptions, load_model
from sr_cli.resize import imresize

WEIGHTS = Path(os.environ.get("SR_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "weights" / "model_epoch_50.pth"


def shapes(side: int = 128) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:side, 0:side]
    return {
        "disk": ((yy - 60) ** 2 + (xx - 70) ** 2 < 40**2).astype(np.float32),
        "bars (6 px period)": (((xx // 6) % 3 == 0) & (yy > 20) & (yy < 100)).astype(np.float32),
        "diagonal": (xx > yy * 0.7 + 20).astype(np.float32),
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def main() -> int:
    if not WEIGHTS.is_file():
        print(f"{WEIGHTS} is absent; set SR_SHARED_DIR", file=sys.stderr)
        return 1
    print(f"{'scale':5s} {'alpha':20s} {'bicubic dB':>10s} {'model dB':>9s}")
    for scale in (2, 4):
        upscaler = load_model(WEIGHTS, scale, options=UpscaleOptions(tile=0, device="cpu"))
        for name, hr in shapes().items():
            lr = np.clip(imresize(hr, 1 / scale), 0, 1)
            bicubic = np.clip(imresize(lr, output_shape=hr.shape), 0, 1)
            rgba = np.dstack([np.full(lr.shape + (3,), 0.5, np.float32), lr])
            model = upscaler.upscale(rgba)[..., 3]
            print(f"x{scale:<4d} {name:20s} {psnr(bicubic, hr):10.2f} {psnr(model, hr):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Acceptance: a small EDSR x2 trained on B100 HR for a few hundred CPU steps beats bicubic on Set5.

Measured (seed 0, this configuration): Set5 x2 Y-PSNR 34.947 dB vs bicubic 33.673 dB, +1.27 dB (see
docs/train.md); 234 s at load average 5 on 2 cores, decoding + downscaling B100 included.
The run uses lr 1e-3 and 24x24 LR patches instead of the recipe's 1e-4 and 48x48 so
that it fits in the test budget; everything else is the EDSR recipe.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.archs.runtime import SRNet
from sr_cli.metrics import psnr, y_channel
from sr_cli.resize import downscale_like_benchmark, imresize
from sr_cli.train.loop import train
from sr_cli.train.options import resolve_options
from sr_cli.weights.safetensors_io import read_safetensors


def _set5_psnr(hr_dir: Path, upscale: Callable[[np.ndarray], np.ndarray]) -> float:
    from PIL import Image

    values = []
    for path in sorted(hr_dir.glob("*.png")):
        hr = np.asarray(Image.open(path).convert("RGB"))
        lr = downscale_like_benchmark(hr, 2)
        sr = upscale(lr)
        hr = hr[: sr.shape[0], : sr.shape[1]]
        values.append(psnr(y_channel(sr, rounded=False), y_channel(hr, rounded=False), border=2))
    return float(np.mean(values))


@pytest.mark.slow
def test_small_edsr_beats_bicubic_on_set5(datasets_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    options = resolve_options(dict(model="edsr-baseline", scale=2, data=str(datasets_dir / "b100" / "HR"),
                                   val=str(datasets_dir / "set5" / "HR"), out=str(out), steps=300, batch=16, patch=24,
                                   lr=1e-3, blocks=4, features=32, val_every=300, save_every=300, log_every=50,
                                   device="cpu"))
    result = train(options)
    assert result.exported is not None
    tensors, metadata = read_safetensors(result.exported)
    model = EDSR(EDSRParams(n_resblocks=4, n_feats=32, scale=2))
    model.load_state_dict(tensors, strict=True)
    net = SRNet(model).eval()

    @torch.no_grad()
    def run_model(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1)[None]
        y = net(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        return np.floor(y * 255 + 0.5).astype(np.uint8)

    hr_dir = datasets_dir / "set5" / "HR"
    model_psnr = _set5_psnr(hr_dir, run_model)
    bicubic_psnr = _set5_psnr(hr_dir, lambda lr: imresize(lr, 2.0))
    assert abs(model_psnr - float(metadata["sr.val_psnr"])) < 1e-3  # the run's own validation agrees
    assert model_psnr - bicubic_psnr >= 1.0, (model_psnr, bicubic_psnr)

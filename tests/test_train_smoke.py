"""Acceptance: a small EDSR x2 trained on B100 HR for a few hundred CPU steps beats bicubic on Set5.

The run uses lr 1e-3 and 24x24 LR patches instead of the recipe's 1e-4 and 48x48 so that it fits in the
test budget, and validates/exports an EMA (0.98) of the weights; everything else is the EDSR recipe.
Why the EMA: at lr 1e-3 without it the trajectory is chaotic, so the kernels of another CPU (or another
thread count) move the result by 0.4 dB and more: measured here (no EMA, Set5 x2 Y-PSNR after 300 / 600 steps),
seed 0 34.77 / 34.97 dB with 1 thread and 34.95 / 33.84 with 2; seed 1 34.61 / 35.07 and 34.54 / 34.07, one
run dipping to 33.39 (below bicubic) at step 550. Another CPU gave +0.88 dB at 300 steps (issue 9).

Measured with this configuration (400 steps, EMA 0.98, 1 thread, a 2-core AMD EPYC under heavy load; bicubic
33.673 dB): seeds 0 / 1 / 2 / 3 give 35.020 / 34.981 / 35.085 / 34.986 dB, i.e. +1.31 to +1.41 dB, a spread
of 0.10 dB (at 300 steps 34.89 to 34.99). A seed changes the initialisation and every batch, a larger
perturbation than another CPU's rounding. MARGIN_DB = 0.8 leaves 0.5 dB of room below the worst seed: five
times the spread measured, and more than the 0.4 dB by which CPUs moved the chaotic runs above.
It cannot pass for a model that does not learn: the untrained network scores 13.1 dB (seed 0; 12.1 seed 1),
20 dB below bicubic, and the EMA model after only 100 of the 400 steps is still below bicubic (27.8 to
30.3 dB over the four seeds). Cost: 300 steps with six validations, B100 decoded and downscaled into an
empty cache, took 16 s on the 2 cores when idle (load 0.6), so this run should take about 20 s there.
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
from sr_cli.train.options import TrainOverrides, resolve_options
from sr_cli.weights.safetensors_io import read_safetensors

STEPS = 400
MARGIN_DB = 0.8  # over bicubic; argued from the measured runs in the module docstring


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
    options = resolve_options(TrainOverrides(model="edsr-baseline", scale=2, data=str(datasets_dir / "b100" / "HR"),
                                             val=str(datasets_dir / "set5" / "HR"), out=out, steps=STEPS, batch=16,
                                             patch=24, lr=1e-3, ema=0.98, blocks=4, features=32, val_every=STEPS,
                                             save_every=STEPS, log_every=50, device="cpu"))
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
    assert model_psnr - bicubic_psnr >= MARGIN_DB, (model_psnr, bicubic_psnr)

"""Regenerate docs/images/blend_sweep.png with a DEMONSTRATION pair (the ESRGAN files cannot be downloaded here).

    python3 bench/make_blend_sweep.py [--shared ../shared] [--out docs/images/blend_sweep.png] [--steps 150]

Network interpolation needs two models of ONE training run: a PSNR-oriented model and one fine-tuned from it
(ESRGAN's RRDB_PSNR_x4 / RRDB_ESRGAN_x4). Without network access the only real weights here are VDSR
(`model_epoch_50.pth`), so this script makes a stand-in pair:

- PSNR end: the real VDSR, unchanged.
- "Sharp" end: that VDSR fine-tuned for 150 short CPU steps towards an OVER-SHARPENED target
  (HR luma + an unsharp mask), so that the two ends differ visibly (halos, crisper edges), the way a GAN
  model differs from its PSNR model. It is a demonstration of the mechanism, not a better model.

The fine-tune is kept to about two minutes of CPU (2 cores shared with others): 41x41 Y patches of B100
(`sr_cli.color.rgb_to_y`, x3 bicubic degradation with `sr_cli.resize.imresize`), only the last four
residual convs and the output conv are trained, on features of the frozen layers below computed once.
It is written to a temporary folder as .safetensors with sr's metadata (never committed), and the sheet is
made by the real command:

    sr blend --psnr ../shared/weights/model_epoch_50.pth --gan <tmp>/vdsr_sharp_demo.safetensors \
        --sweep 0,0.2,0.4,0.6,0.8,1 --image ../shared/datasets/set14/LR_bicubic/X3/monarch.png --crop 150,48,56,48 --scale 3 \
        -o docs/images/blend_sweep.png --overwrite

The PNG is then re-encoded losslessly (same pixels, checked) with Pillow's optimiser to stay small.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from sr_cli.archs.vdsr import VDSR
from sr_cli.color import rgb_to_y
from sr_cli.resize import imresize, modcrop
from sr_cli.weights.loading import load_checkpoint
from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata

SCALE = 3
PATCH = 41  # VDSR's training patch size
PATCHES_PER_IMAGE = 2
IMAGES = 32  # the first 32 B100 images (sorted names): 64 patches
TRAINED_RESIDUAL_LAYERS = 4  # + the output conv; the 14 residual convs below stay frozen
UNSHARP_SIGMA = 1.0  # in HR pixels
UNSHARP_AMOUNT = 1.5  # target = Y + amount * (Y - blur(Y)): a strong, clearly visible over-sharpening
LEARNING_RATE = 1e-3
BATCH = 16
ALPHAS = "0,0.2,0.4,0.6,0.8,1"
SWEEP_IMAGE = Path("datasets/set14/LR_bicubic/X3/monarch.png")
CROP = "150,48,56,48"  # x,y,w,h in LR pixels: the wing's veins and white spots, a blurred background
MAX_PNG_BYTES = 300_000


def unsharp(y: np.ndarray) -> np.ndarray:
    """Y + amount * (Y - gaussian(Y)): the over-sharpened target, clipped to [0, 1]."""
    blurred = cv2.GaussianBlur(y, (0, 0), UNSHARP_SIGMA, borderType=cv2.BORDER_REFLECT)
    return np.clip(y + UNSHARP_AMOUNT * (y - blurred), 0.0, 1.0)


def patches(hr_folder: Path, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """(bicubic-upscaled LR Y, over-sharpened HR Y) pairs, each [N, 1, PATCH, PATCH] float32 in [0, 1].

    The LR is made like the benchmark files: MATLAB bicubic x1/3 of the modcropped HR, then bicubic x3
    back to the HR size (VDSR's input). Patches are taken where the HR has structure (highest local
    variance of a few random candidates), since flat sky teaches nothing about sharpening.
    """
    inputs, targets = [], []
    for path in sorted(hr_folder.glob("*.png"))[:IMAGES]:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        y = modcrop(rgb_to_y(rgb), SCALE)
        upscaled = imresize(imresize(y, 1.0 / SCALE), output_shape=y.shape)
        target = unsharp(y)
        candidates = [(int(rng.integers(0, y.shape[0] - PATCH)), int(rng.integers(0, y.shape[1] - PATCH)))
                      for _ in range(8)]
        candidates.sort(key=lambda tl: -float(y[tl[0]:tl[0] + PATCH, tl[1]:tl[1] + PATCH].var()))
        for top, left in candidates[:PATCHES_PER_IMAGE]:
            inputs.append(upscaled[top:top + PATCH, left:left + PATCH])
            targets.append(target[top:top + PATCH, left:left + PATCH])
    return torch.from_numpy(np.stack(inputs)[:, None]), torch.from_numpy(np.stack(targets)[:, None])


def fine_tune(vdsr: VDSR, inputs: Tensor, targets: Tensor, steps: int, log: bool = True) -> tuple[float, float]:
    """Train the top of `vdsr` in place towards `targets`; returns the L1 loss before and after."""
    frozen_depth = len(vdsr.residual_layer) - TRAINED_RESIDUAL_LAYERS
    with torch.no_grad():  # the frozen bottom, once: VDSR has no normalisation, so features do not drift
        features = vdsr.residual_layer[:frozen_depth](vdsr.relu(vdsr.input(inputs)))
    top = nn.Sequential(*list(vdsr.residual_layer)[frozen_depth:], vdsr.output)
    for parameter in vdsr.parameters():
        parameter.requires_grad_(False)
    trainable = list(top.parameters())
    for parameter in trainable:
        parameter.requires_grad_(True)
    optimiser = torch.optim.Adam(trainable, lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(0)

    def loss_on(index: Tensor) -> Tensor:
        return (top(features[index]) + inputs[index] - targets[index]).abs().mean()

    with torch.no_grad():
        before = float(loss_on(torch.arange(len(inputs))))
    for step in range(steps):
        batch = torch.randperm(len(inputs), generator=generator)[:BATCH]
        loss = loss_on(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if log and (step + 1) % 10 == 0:
            print(f"  step {step + 1}/{steps}: L1 {float(loss.detach()):.4f}", file=sys.stderr)
    for parameter in vdsr.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        after = float(loss_on(torch.arange(len(inputs))))
    return before, after


def run_blend(psnr: Path, gan: Path, image: Path, out: Path) -> None:
    sr = Path(sys.executable).with_name("sr")
    command = [str(sr)] if sr.exists() else [sys.executable, "-m", "sr_cli"]
    arguments = ["blend", "--psnr", str(psnr), "--gan", str(gan), "--sweep", ALPHAS, "--image", str(image),
                 "--crop", CROP, "--scale", str(SCALE), "-o", str(out), "--overwrite"]
    print("$ sr " + " ".join(arguments), file=sys.stderr)
    subprocess.run([*command, *arguments], check=True)


def shrink_losslessly(path: Path) -> None:
    """Re-encode with Pillow's optimiser; the pixels must come back identical."""
    original = np.asarray(Image.open(path).convert("RGB"))
    tmp = path.with_name(path.name + ".opt.png")
    Image.fromarray(original).save(tmp, optimize=True, compress_level=9)
    if not np.array_equal(np.asarray(Image.open(tmp).convert("RGB")), original):
        tmp.unlink()
        raise SystemExit("optimised PNG differs from sr's output; kept the original")
    if tmp.stat().st_size < path.stat().st_size:
        tmp.replace(path)
    else:
        tmp.unlink()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images" / "blend_sweep.png")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for the fine-tune")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    weights = args.shared / "weights" / "model_epoch_50.pth"
    image = args.shared / SWEEP_IMAGE

    started, cpu_started = time.perf_counter(), cpu_seconds()
    checkpoint = load_checkpoint(weights)
    vdsr = checkpoint.module
    assert isinstance(vdsr, VDSR), type(vdsr)
    inputs, targets = patches(args.shared / "datasets" / "b100" / "HR", np.random.default_rng(0))
    print(f"{len(inputs)} patches of {PATCH}x{PATCH}; fine-tuning {args.steps} steps", file=sys.stderr)
    before, after = fine_tune(vdsr, inputs, targets, args.steps)
    changed = max(float((a - b).abs().max()) for a, b in
                  zip(vdsr.state_dict().values(), load_checkpoint(weights).module.state_dict().values(), strict=True))
    print(f"fine-tune: L1 to the over-sharpened target {before:.4f} -> {after:.4f}, largest weight change "
          f"{changed:.4f}, {time.perf_counter() - started:.0f} s wall, {cpu_seconds() - cpu_started:.0f} s CPU",
          file=sys.stderr)

    with tempfile.TemporaryDirectory() as folder:
        sharp = Path(folder) / "vdsr_sharp_demo.safetensors"
        save_safetensors(sharp, vdsr.state_dict(), sr_metadata(
            "vdsr", checkpoint.detected.params,
            note=f"DEMONSTRATION ONLY: {weights.name} fine-tuned {args.steps} steps towards HR + unsharp mask "
                 f"(sigma {UNSHARP_SIGMA}, amount {UNSHARP_AMOUNT}) by bench/make_blend_sweep.py"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        run_blend(weights, sharp, image, args.out)
    shrink_losslessly(args.out)
    size = args.out.stat().st_size
    sheet = Image.open(args.out)
    print(f"{args.out}: {sheet.width}x{sheet.height}, {size} bytes")
    if size > MAX_PNG_BYTES:
        raise SystemExit(f"{args.out} is {size} bytes, over {MAX_PNG_BYTES}: choose a smaller --crop")


if __name__ == "__main__":
    main()

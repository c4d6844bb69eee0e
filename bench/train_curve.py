"""Train a small EDSR x2 on B100 HR (CPU) and draw its loss / Set5-PSNR curve for docs/train.md.

    python bench/train_curve.py --shared ../shared --out /tmp/train-curve --steps 400

Same configuration as tests/test_train_smoke.py (4 blocks, 32 features, batch 16, 24x24 LR patches,
lr 1e-3, EMA 0.98 of the weights, seed 0), with validation (of the EMA weights) every --val-every steps. Writes docs/images/train_curve.png (drawn
with Pillow: no plotting dependency) and docs/images/train_curve.json (the numbers behind it, plus the
bicubic Set5 PSNR and the wall time).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sr_cli.metrics import psnr, y_channel
from sr_cli.resize import downscale_like_benchmark, imresize
from sr_cli.train.loop import train
from sr_cli.train.options import TrainOverrides, resolve_options

REPO = Path(__file__).resolve().parents[1]


def bicubic_psnr(hr_dir: Path, scale: int) -> float:
    values = []
    for path in sorted(hr_dir.glob("*.png")):
        hr = np.asarray(Image.open(path).convert("RGB"))
        lr = downscale_like_benchmark(hr, scale)
        up = imresize(lr, float(scale))
        values.append(psnr(y_channel(up, rounded=False), y_channel(hr[: up.shape[0], : up.shape[1]], rounded=False),
                           border=scale))
    return float(np.mean(values))


def _panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], xs: list[float], ys: list[float],
           title: str, hline: tuple[float, str] | None, x_max: float) -> None:
    left, top, right, bottom = box
    draw.rectangle(box, outline="black")
    lows = ys + ([hline[0]] if hline else [])
    y_min, y_max = min(lows), max(lows)
    pad = (y_max - y_min) * 0.08 or 1.0
    y_min, y_max = y_min - pad, y_max + pad

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (right - left) * x / x_max, bottom - (bottom - top) * (y - y_min) / (y_max - y_min))

    draw.text((left + 6, top - 16), title, fill="black")
    for fraction in (0.0, 0.5, 1.0):
        value = y_min + fraction * (y_max - y_min)
        _, y = at(0, value)
        draw.text((right + 4, y - 6), f"{value:.3g}", fill="gray")
    for step in np.linspace(0, x_max, 4):
        x, _ = at(step, y_min)
        draw.text((x - 8, bottom + 4), f"{int(step)}", fill="gray")
    if hline:
        _, y = at(0, hline[0])
        draw.line([(left, y), (right, y)], fill=(200, 80, 80), width=1)
        draw.text((left + 6, y - 14), hline[1], fill=(200, 80, 80))
    points = [at(x, y) for x, y in zip(xs, ys, strict=True)]
    if len(points) > 1:
        draw.line(points, fill=(40, 90, 200), width=2)
    for point in points if len(points) < 20 else []:
        draw.ellipse([point[0] - 3, point[1] - 3, point[0] + 3, point[1] + 3], fill=(40, 90, 200))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=Path("/tmp/sr-train-curve"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--plot-only", action="store_true", help="redraw from --out/metrics.jsonl, no training")
    args = parser.parse_args()
    datasets = args.shared / "datasets"
    images = REPO / "docs" / "images"
    if args.plot_only:
        wall = float(json.loads((images / "train_curve.json").read_text())["wall_seconds"])
    else:
        wall = _train(args, datasets)
    _plot(args, datasets, images, wall)


def _train(args: argparse.Namespace, datasets: Path) -> float:
    shutil.rmtree(args.out, ignore_errors=True)
    options = resolve_options(TrainOverrides(model="edsr-baseline", scale=2, data=str(datasets / "b100" / "HR"),
                                   val=str(datasets / "set5" / "HR"), out=args.out, steps=args.steps, batch=16,
                                   patch=24, lr=1e-3, ema=0.98, blocks=4, features=32, val_every=args.val_every,
                                   save_every=args.steps, log_every=10, device="cpu"))
    started = time.monotonic()
    train(options)
    return time.monotonic() - started


def _plot(args: argparse.Namespace, datasets: Path, images: Path, wall: float) -> None:
    records = [json.loads(line) for line in (args.out / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss_l1"]) for r in records if "loss_l1" in r]
    vals = [(r["step"], r["val_psnr"]) for r in records if "val_psnr" in r]
    best_step, best_psnr = max(vals, key=lambda v: v[1])
    bicubic = bicubic_psnr(datasets / "set5" / "HR", 2)
    image = Image.new("RGB", (900, 360), "white")
    draw = ImageDraw.Draw(image)
    _panel(draw, (50, 40, 400, 300), [s for s, _ in losses], [v for _, v in losses], "training L1 loss (0..1 range)",
           None, args.steps)
    _panel(draw, (500, 40, 850, 300), [s for s, _ in vals], [v for _, v in vals],
           "Set5 x2 Y-PSNR (dB)", (bicubic, f"bicubic {bicubic:.2f} dB"), args.steps)
    draw.text((50, 330), f"EDSR 4x32 x2 on B100 HR, CPU, {args.steps} steps of 16 x 24x24 patches, lr 1e-3, EMA 0.98: "
                         f"best {best_psnr:.2f} dB at step {best_step} ({wall / 60:.1f} min, 2 shared CPU cores)", fill="black")
    images.mkdir(parents=True, exist_ok=True)
    image.save(images / "train_curve.png")
    (images / "train_curve.json").write_text(json.dumps(
        {"losses": losses, "val_psnr": vals, "bicubic_psnr": bicubic, "best_psnr": best_psnr,
         "best_step": best_step, "wall_seconds": round(wall, 1)}, indent=1) + "\n")
    print(f"best {best_psnr:.3f} dB at step {best_step}; bicubic {bicubic:.3f} dB; {wall:.0f} s")


if __name__ == "__main__":
    main()

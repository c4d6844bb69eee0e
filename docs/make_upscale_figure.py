"""Regenerate docs/images/upscale_butterfly_x3.png: bicubic vs `sr upscale` (VDSR) vs the original.

    python3 docs/make_upscale_figure.py [--shared ../shared] [--out docs/images/upscale_butterfly_x3.png]

The VDSR panel is made by the real `sr upscale` command with the real VDSR weights; bicubic is the
MATLAB-compatible imresize the benchmarks use. PSNR is on the Y channel, 3-pixel border cropped.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sr_cli.metrics import psnr, y_channel
from sr_cli.resize import imresize

SCALE = 3
CROP = (60, 20, 140, 100)  # left, top, right, bottom in HR pixels: the wing edge and its eye spots
ZOOM = 3  # nearest-neighbour enlargement of the crop so single pixels stay visible
LABEL_HEIGHT = 22
GAP = 4


def run_sr(lr_path: Path, weights: Path, out_dir: Path) -> Path:
    sr = Path(sys.executable).with_name("sr")
    command = [str(sr)] if sr.exists() else [sys.executable, "-m", "sr_cli"]
    subprocess.run([*command, "upscale", str(lr_path), "--weights", str(weights), "--scale", str(SCALE),
                    "-o", str(out_dir / "vdsr.png"), "--overwrite"], check=True)
    return out_dir / "vdsr.png"


def panel(image: np.ndarray, label: str, font: ImageFont.ImageFont) -> Image.Image:
    left, top, right, bottom = CROP
    crop = Image.fromarray(image[top:bottom, left:right]).resize(((right - left) * ZOOM, (bottom - top) * ZOOM), Image.NEAREST)
    canvas = Image.new("RGB", (crop.width, crop.height + LABEL_HEIGHT), "white")
    canvas.paste(crop, (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((4, 3), label, fill="black", font=font)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images" / "upscale_butterfly_x3.png")
    args = parser.parse_args()
    lr_path = args.shared / "datasets" / "set5" / "LR_bicubic" / f"X{SCALE}" / "butterfly.png"
    hr = np.asarray(Image.open(args.shared / "datasets" / "set5" / "HR" / "butterfly.png").convert("RGB"))
    lr = np.asarray(Image.open(lr_path).convert("RGB"))
    hr = hr[: lr.shape[0] * SCALE, : lr.shape[1] * SCALE]  # modcrop, as the LR files were made
    with tempfile.TemporaryDirectory() as folder:
        vdsr = np.asarray(Image.open(run_sr(lr_path, args.shared / "weights" / "model_epoch_50.pth", Path(folder))).convert("RGB"))
    bicubic = imresize(lr, SCALE)

    def score(image: np.ndarray) -> str:
        return f"{psnr(y_channel(image, rounded=False), y_channel(hr, rounded=False), border=SCALE):.2f} dB"

    font = ImageFont.load_default(size=14)
    panels = [panel(bicubic, f"bicubic x{SCALE}  {score(bicubic)}", font),
              panel(vdsr, f"sr upscale (VDSR)  {score(vdsr)}", font),
              panel(hr, "original (HR)", font)]
    figure = Image.new("RGB", (sum(p.width for p in panels) + GAP * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for item in panels:
        figure.paste(item, (x, 0))
        x += item.width + GAP
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"{args.out}: {figure.width}x{figure.height}, {args.out.stat().st_size} bytes; "
          f"bicubic {score(bicubic)}, VDSR {score(vdsr)} (Y PSNR, full image)")


if __name__ == "__main__":
    main()

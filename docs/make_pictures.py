"""Regenerate the before/after pictures of the docs with the real `sr upscale` command.

    python3 docs/make_upscale_figure.py [--figure upscale|readme] [--shared ../shared] [--out PATH]

- `upscale` (docs/images/upscale_butterfly_x3.png, docs/upscale.md): bicubic vs `sr upscale` (VDSR, the real
  weights) vs the original, Set5 butterfly x3; bicubic is the MATLAB-compatible imresize the benchmarks use.
  PSNR is on the Y channel, 3-pixel border cropped.
- `readme` (docs/images/readme_before_after.png, the README): a 64x64 crop of Set14 monarch's x4 LR file,
  upscaled by `sr upscale crop.png` exactly as the README's quick start runs it (no --model: the bundled
  default, with the network off), beside that input enlarged by pixel repetition and the original.
"""
from __future__ import annotations

import argparse
import os
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
README_CROP = (100, 36, 64, 64)  # left, top, width, height in LR pixels of monarch (x4): wing veins and spots
README_SCALE = 4


def run_sr(arguments: list[str], offline: bool = False) -> None:
    """`sr upscale ARGUMENTS` in a child process, from the same sr_cli this script imports."""
    env = {**os.environ, "SR_OFFLINE": "1"} if offline else None
    subprocess.run([sys.executable, "-m", "sr_cli", "upscale", *arguments], check=True, env=env)


def panel(image: np.ndarray, label: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, crop: tuple[int, int, int, int] = CROP,
          zoom: int = ZOOM) -> Image.Image:
    left, top, right, bottom = crop
    crop_image = Image.fromarray(image[top:bottom, left:right]).resize(((right - left) * zoom, (bottom - top) * zoom),
                                                                       Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (crop_image.width, crop_image.height + LABEL_HEIGHT), "white")
    canvas.paste(crop_image, (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((4, 3), label, fill="black", font=font)
    return canvas


def side_by_side(panels: list[Image.Image], out: Path) -> Image.Image:
    figure = Image.new("RGB", (sum(p.width for p in panels) + GAP * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for item in panels:
        figure.paste(item, (x, 0))
        x += item.width + GAP
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(out, optimize=True)
    return figure


def upscale_figure(shared: Path, out: Path) -> None:
    lr_path = shared / "datasets" / "set5" / "LR_bicubic" / f"X{SCALE}" / "butterfly.png"
    hr = np.asarray(Image.open(shared / "datasets" / "set5" / "HR" / "butterfly.png").convert("RGB"))
    lr = np.asarray(Image.open(lr_path).convert("RGB"))
    hr = hr[: lr.shape[0] * SCALE, : lr.shape[1] * SCALE]  # modcrop, as the LR files were made
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "vdsr.png"
        run_sr([str(lr_path), "--weights", str(shared / "weights" / "model_epoch_50.pth"), "--scale", str(SCALE),
                "-o", str(result), "--overwrite"])
        vdsr = np.asarray(Image.open(result).convert("RGB"))
    bicubic = imresize(lr, SCALE)

    def score(image: np.ndarray) -> str:
        return f"{psnr(y_channel(image, rounded=False), y_channel(hr, rounded=False), border=SCALE):.2f} dB"

    font = ImageFont.load_default(size=14)
    figure = side_by_side([panel(bicubic, f"bicubic x{SCALE}  {score(bicubic)}", font),
                           panel(vdsr, f"sr upscale (VDSR)  {score(vdsr)}", font),
                           panel(hr, "original (HR)", font)], out)
    print(f"{out}: {figure.width}x{figure.height}, {out.stat().st_size} bytes; "
          f"bicubic {score(bicubic)}, VDSR {score(vdsr)} (Y PSNR, full image)")


def readme_figure(shared: Path, out: Path) -> None:
    left, top, width, height = README_CROP
    lr = np.asarray(Image.open(shared / "datasets" / "set14" / "LR_bicubic" / "X4" / "monarch.png").convert("RGB"))
    hr = np.asarray(Image.open(shared / "datasets" / "set14" / "HR" / "monarch.png").convert("RGB"))
    s = README_SCALE
    crop = lr[top:top + height, left:left + width]
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "photo.png"
        Image.fromarray(crop).save(source)
        run_sr([str(source)], offline=True)  # the README's command: no --model, no --scale, no network
        outputs = sorted(Path(folder).glob("photo_x4_*.png"))
        assert len(outputs) == 1, outputs
        model = outputs[0].stem.removeprefix("photo_x4_")
        upscaled = np.asarray(Image.open(outputs[0]).convert("RGB"))
    full = (0, 0, width * s, height * s)
    font = ImageFont.load_default(size=14)
    figure = side_by_side([
        panel(np.repeat(np.repeat(crop, s, axis=0), s, axis=1), f"photo.png ({width}x{height}, shown x{s})", font, full, 1),
        panel(upscaled, f"sr upscale photo.png (x{s})", font, full, 1),
        panel(hr[top * s:(top + height) * s, left * s:(left + width) * s], "original", font, full, 1),
    ], out)
    print(f"{out}: {figure.width}x{figure.height}, {out.stat().st_size} bytes; model {model}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", choices=("upscale", "readme"), default="upscale")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    images = Path(__file__).resolve().parent / "images"
    if args.figure == "upscale":
        upscale_figure(args.shared, args.out or images / "upscale_butterfly_x3.png")
    else:
        readme_figure(args.shared, args.out or images / "readme_before_after.png")


if __name__ == "__main__":
    main()

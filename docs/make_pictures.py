"""Every picture of the docs, each made with the real `sr` (command or API) and the one sheet maker
(sr_cli.imageio.sheet), so anyone can redo them:

    python3 docs/make_pictures.py [--figure NAME|all] [--out-dir docs/images]

Inputs are public test images from the shared folder (SR_SHARED_DIR, default ../shared: Set5/Set14 and the
real VDSR weights); nothing of that folder is committed except these derived pictures. The Real-ESRGAN models
are the bundled ones (realesrgan-x4plus, realesr-animevideov3), so no network is used.

- `upscale` (upscale_butterfly_x3.png, docs/upscale.md): bicubic vs `sr upscale` (VDSR) vs the original,
  Set5 butterfly x3, Y-PSNR on the full image.
- `readme` (readme_before_after.png, README): `sr upscale crop.png` exactly as the quick start runs it.
- `gallery` (gallery_zebra_x4.png, docs/models.md): `sr compare` of bicubic, VDSR (when its weights are
  there) and the bundled Real-ESRGAN models on Set14 zebra's x4 input.
- `ensemble` (ensemble_on_off.png, docs/upscale.md): the default model with and without --ensemble, and
  their difference.
- `tiles` (tiled_vs_whole.png, docs/upscale.md): --tile 16 against the whole image, and their difference.
- `alpha` (alpha_edges.png, docs/api.md): hard-edged alphas upscaled x4 by bicubic and by the model.
- `terminal` (terminal_upscale.png, docs/upscale.md): a real `sr upscale -v` run, rendered as text.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sr_cli.api import UpscaleOptions, load_model
from sr_cli.imageio.sheet import contact_sheet
from sr_cli.metrics import psnr, y_channel
from sr_cli.resize import imresize

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SR_SHARED_DIR", ROOT.parent / "shared"))
IMAGES = ROOT / "docs" / "images"
SCALE = 3
CROP = (60, 20, 140, 100)  # left, top, right, bottom in HR pixels: the wing edge and its eye spots
ZOOM = 3  # nearest-neighbour enlargement of the crop so single pixels stay visible
README_CROP = (100, 36, 64, 64)  # left, top, width, height in LR pixels of monarch (x4): wing veins and spots
README_SCALE = 4
GALLERY_IMAGE = Path("datasets/set14/LR_bicubic/X4/zebra.png")
GALLERY_CROP = "88,22,48,40"  # x,y,w,h in LR pixels: the zebra's head and the stripes of its neck
DEFAULT_MODEL = "realesrgan-x4plus"
ANIME_MODEL = "realesr-animevideov3"
DETAIL_CROP = (92, 30, 32, 32)  # left, top, w, h of zebra's LR for --ensemble and --tile pictures
DIFFERENCE_GAIN = 8  # a difference map shows |a - b| times this, so a 1-level difference is visible
TERMINAL_COLUMNS = 88
MAX_PNG_BYTES = 400_000
VDSR_WEIGHTS = SHARED / "weights" / "model_epoch_50.pth"
CPU_WHOLE = UpscaleOptions(tile=0, device="cpu")


def sr_command(arguments: list[str], *, cwd: Path | None = None, capture: bool = False) -> str:
    """`sr ARGUMENTS` in a child process with the network off, from the same sr_cli this script imports."""
    env = {**os.environ, "SR_OFFLINE": "1", "PYTHONPATH": str(ROOT), "COLUMNS": str(TERMINAL_COLUMNS)}
    done = subprocess.run([sys.executable, "-m", "sr_cli", *arguments], check=True, env=env, cwd=cwd, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
    return done.stdout or ""


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def save(pixels: np.ndarray, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out, optimize=True)
    size = out.stat().st_size
    print(f"{out}: {pixels.shape[1]}x{pixels.shape[0]}, {size} bytes")
    if size > MAX_PNG_BYTES:
        raise SystemExit(f"{out} is {size} bytes, over {MAX_PNG_BYTES}: choose a smaller crop")


def shrink_losslessly(path: Path) -> None:
    """Re-encode a PNG that sr wrote with Pillow's optimiser; the pixels must come back identical."""
    original = read_rgb(path)
    save(original, path)
    if not np.array_equal(read_rgb(path), original):
        raise SystemExit(f"{path}: the optimised PNG differs from sr's output")


def difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| per pixel (largest channel) times DIFFERENCE_GAIN, as dark on white."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) * DIFFERENCE_GAIN
    return (255 - np.clip(diff, 0, 255)).astype(np.uint8)


def lr_detail() -> np.ndarray:
    left, top, width, height = DETAIL_CROP
    return read_rgb(SHARED / GALLERY_IMAGE)[top:top + height, left:left + width]


def upscale_figure(out: Path) -> None:
    lr_path = SHARED / "datasets" / "set5" / "LR_bicubic" / f"X{SCALE}" / "butterfly.png"
    hr = read_rgb(SHARED / "datasets" / "set5" / "HR" / "butterfly.png")
    lr = read_rgb(lr_path)
    hr = hr[: lr.shape[0] * SCALE, : lr.shape[1] * SCALE]  # modcrop, as the LR files were made
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "vdsr.png"
        sr_command(["upscale", str(lr_path), "--weights", str(VDSR_WEIGHTS), "--scale", str(SCALE),
                    "-o", str(result), "--overwrite"])
        vdsr = read_rgb(result)
    bicubic = imresize(lr, SCALE)

    def score(image: np.ndarray) -> str:
        return f"{psnr(y_channel(image, rounded=False), y_channel(hr, rounded=False), border=SCALE):.2f} dB"

    left, top, right, bottom = CROP
    tiles = [image[top:bottom, left:right] for image in (bicubic, vdsr, hr)]
    labels = [f"bicubic x{SCALE}  {score(bicubic)}", f"sr upscale (VDSR)  {score(vdsr)}", "original (HR)"]
    save(contact_sheet(tiles, labels, columns=3, zoom=ZOOM).pixels, out)
    print(f"bicubic {score(bicubic)}, VDSR {score(vdsr)} (Y PSNR, full image)")


def readme_figure(out: Path) -> None:
    left, top, width, height = README_CROP
    lr = read_rgb(SHARED / "datasets" / "set14" / "LR_bicubic" / "X4" / "monarch.png")
    hr = read_rgb(SHARED / "datasets" / "set14" / "HR" / "monarch.png")
    s = README_SCALE
    crop = lr[top:top + height, left:left + width]
    with tempfile.TemporaryDirectory() as folder:
        Image.fromarray(crop).save(Path(folder) / "photo.png")
        sr_command(["upscale", "photo.png"], cwd=Path(folder))  # the README's command: no --model, no --scale
        outputs = sorted(Path(folder).glob("photo_x4_*.png"))
        assert len(outputs) == 1, outputs
        model = outputs[0].stem.removeprefix("photo_x4_")
        upscaled = read_rgb(outputs[0])
    tiles = [np.repeat(np.repeat(crop, s, axis=0), s, axis=1), upscaled,
             hr[top * s:(top + height) * s, left * s:(left + width) * s]]
    labels = [f"photo.png ({width}x{height}, shown x{s})", f"sr upscale photo.png (x{s})", "original"]
    save(contact_sheet(tiles, labels, columns=3).pixels, out)
    print(f"model {model}")


def gallery_figure(out: Path) -> None:
    models = ([str(VDSR_WEIGHTS)] if VDSR_WEIGHTS.is_file() else []) + [DEFAULT_MODEL, ANIME_MODEL]
    sr_command(["compare", str(SHARED / GALLERY_IMAGE), "--models", ",".join(models), "--scale", "4",
                "--crop", GALLERY_CROP, "--zoom", "1", "--device", "cpu", "-o", str(out), "--overwrite"])
    shrink_losslessly(out)


def ensemble_figure(out: Path) -> None:
    crop = lr_detail()
    plain = load_model(DEFAULT_MODEL, options=CPU_WHOLE).upscale(crop)
    ensembled = load_model(DEFAULT_MODEL, options=UpscaleOptions(tile=0, device="cpu", ensemble=True)).upscale(crop)
    mean = np.abs(plain.astype(float) - ensembled.astype(float)).mean()
    tiles = [plain, ensembled, difference(plain, ensembled)]
    labels = [f"{DEFAULT_MODEL}", "--ensemble (8 views)", f"|difference| x{DIFFERENCE_GAIN}, mean {mean:.1f}/255"]
    save(contact_sheet(tiles, labels, columns=3, zoom=2).pixels, out)


def tiles_figure(out: Path) -> None:
    crop = lr_detail()
    whole = load_model(DEFAULT_MODEL, options=CPU_WHOLE).upscale(crop)
    tiled = load_model(DEFAULT_MODEL, options=UpscaleOptions(tile=16, device="cpu")).upscale(crop)
    largest = int(np.abs(whole.astype(int) - tiled.astype(int)).max())
    tiles = [whole, tiled, difference(whole, tiled)]
    labels = ["--tile 0 (whole image)", "--tile 16 (4 tiles)", f"|difference| x{DIFFERENCE_GAIN}, max {largest}/255" + (" (identical)" if largest == 0 else "")]
    save(contact_sheet(tiles, labels, columns=3, zoom=2).pixels, out)


def alpha_figure(out: Path) -> None:
    """The measurement of bench/alpha_edges.py, shown: binary alphas, MATLAB-bicubic x1/4, upscaled x4."""
    side, scale = 96, 4
    yy, xx = np.mgrid[0:side, 0:side]
    shapes = {"disk": ((yy - 46) ** 2 + (xx - 50) ** 2 < 30**2), "bars": (((xx // 8) % 3 == 0) & (yy > 12) & (yy < 84)),
              "diagonal": (xx > yy * 0.7 + 14)}
    weights = VDSR_WEIGHTS if VDSR_WEIGHTS.is_file() else None
    upscaler = load_model(weights, scale, options=CPU_WHOLE) if weights else load_model(DEFAULT_MODEL, options=CPU_WHOLE)
    model_name = "VDSR" if weights else DEFAULT_MODEL
    tiles, labels = [], []
    for name, shape in shapes.items():
        hr = shape.astype(np.float32)
        lr = np.clip(imresize(hr, 1 / scale), 0, 1)
        bicubic = np.clip(imresize(lr, output_shape=hr.shape), 0, 1)
        rgba = np.dstack([np.full(lr.shape + (3,), 0.5, np.float32), lr])
        model = upscaler.upscale(rgba)[..., 3]

        def db(image: np.ndarray, hr: np.ndarray = hr) -> str:
            return f"{10 * np.log10(1.0 / np.mean((image - hr) ** 2)):.1f} dB"

        as_grey: Callable[[np.ndarray], np.ndarray] = lambda a: np.rint(a * 255).astype(np.uint8)  # noqa: E731
        tiles += [as_grey(np.repeat(np.repeat(lr, scale, 0), scale, 1)), as_grey(bicubic), as_grey(model), as_grey(hr)]
        labels += [f"{name}: input (x{scale} shown)", f"bicubic {db(bicubic)}", f"{model_name} {db(model)}", "original"]
    save(contact_sheet(tiles, labels, columns=4).pixels, out)


def terminal_figure(out: Path) -> None:
    """A real `sr upscale -v` run (network off), its stdout and stderr as a terminal shows them."""
    with tempfile.TemporaryDirectory() as folder:
        Image.fromarray(lr_detail()).save(Path(folder) / "photo.png")
        command = ["upscale", "photo.png", "--model", ANIME_MODEL, "-v"]
        text = sr_command(command, cwd=Path(folder), capture=True)
    text = text.replace(str(ROOT / "sr_cli"), ".../sr_cli")  # where this checkout happens to be: not the point
    lines = [("$ sr " + " ".join(command), "#8ae234")] + [(line, "#eeeeec") for line in text.rstrip().splitlines()]
    save(render_terminal(lines), out)


def render_terminal(lines: list[tuple[str, str]]) -> np.ndarray:
    """Text on a dark background in a monospace grid, TERMINAL_COLUMNS wide (longer lines wrap)."""
    font = monospace_font()
    cell_width = int(np.ceil(font.getlength("M")))
    cell_height = 19
    rows = []
    for text, colour in lines:
        rows += [(text[i:i + TERMINAL_COLUMNS], colour) for i in range(0, max(len(text), 1), TERMINAL_COLUMNS)]
    pad = 12
    image = Image.new("RGB", (2 * pad + cell_width * TERMINAL_COLUMNS, 2 * pad + cell_height * len(rows)), "#2e3436")
    draw = ImageDraw.Draw(image)
    for row, (text, colour) in enumerate(rows):
        for column, character in enumerate(text):  # one cell per character, whatever the font's advance
            draw.text((pad + column * cell_width, pad + row * cell_height), character, fill=colour, font=font)
    return np.asarray(image)


def monospace_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", "/Library/Fonts/Menlo.ttc"):
        if Path(path).is_file():
            return ImageFont.truetype(path, 14)
    return ImageFont.load_default(size=14)  # not monospace, but drawn on the same grid


FIGURES: dict[str, tuple[Callable[[Path], None], str]] = {
    "upscale": (upscale_figure, "upscale_butterfly_x3.png"),
    "readme": (readme_figure, "readme_before_after.png"),
    "gallery": (gallery_figure, "gallery_zebra_x4.png"),
    "ensemble": (ensemble_figure, "ensemble_on_off.png"),
    "tiles": (tiles_figure, "tiled_vs_whole.png"),
    "alpha": (alpha_figure, "alpha_edges.png"),
    "terminal": (terminal_figure, "terminal_upscale.png"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", choices=(*FIGURES, "all"), default="all")
    parser.add_argument("--out-dir", type=Path, default=IMAGES)
    args = parser.parse_args()
    if not (SHARED / "datasets").is_dir():
        raise SystemExit(f"{SHARED}/datasets is absent: set SR_SHARED_DIR to the folder with Set5/Set14")
    for name, (make, filename) in FIGURES.items():
        if args.figure in (name, "all"):
            print(f"--- {name}", file=sys.stderr)
            args.out_dir.mkdir(parents=True, exist_ok=True)
            make(args.out_dir / filename)


if __name__ == "__main__":
    main()

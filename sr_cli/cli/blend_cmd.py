"""`sr blend`: network interpolation between a PSNR model and its GAN model (docs/blend.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from sr_cli.cli.console import detail, json_line, note, result_path
from sr_cli.cli.options import Device, Json, MaxPixels, Overwrite, Quiet, ResScale, Verbose, in_panel
from sr_cli.errors import UsageError

if TYPE_CHECKING:  # torch, numpy and the image readers load only when the command runs
    from sr_cli.blend import Endpoint

MODES = ("weights", "image")
MODELS_PANEL = "Models"
IMAGES_PANEL = "Images (--sweep, --mode image)"
OUTPUT_PANEL = "Output and reporting"


def blend(
    alpha: Annotated[Optional[float], typer.Option("--alpha", "-a", help="0 = the PSNR model, 1 = the GAN model.",
                                                   rich_help_panel=MODELS_PANEL)] = None,
    psnr: Annotated[Optional[str], typer.Option("--psnr", help="PSNR-oriented model: name or file (default: esrgan-psnr).",
                                                rich_help_panel=MODELS_PANEL)] = None,
    gan: Annotated[Optional[str], typer.Option("--gan", help="GAN model: name or file (default: esrgan).",
                                               rich_help_panel=MODELS_PANEL)] = None,
    mode: Annotated[str, typer.Option("--mode", help="weights (network interpolation) | image (blend the two outputs; a comparison).",
                                      rich_help_panel=MODELS_PANEL)] = "weights",
    res_scale: Annotated[Optional[float], in_panel(ResScale, MODELS_PANEL)] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="Alphas for a contact sheet, e.g. 0,0.2,0.4,0.6,0.8,1 (needs --image).",
                                                 rich_help_panel=IMAGES_PANEL)] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Input image for --sweep or --mode image.",
                                                  rich_help_panel=IMAGES_PANEL)] = None,
    crop: Annotated[Optional[str], typer.Option("--crop", help="x,y,w,h of the input region shown in a sweep (default: 96x96 centre).",
                                                rich_help_panel=IMAGES_PANEL)] = None,
    zoom: Annotated[int, typer.Option("--zoom", help="Show each sweep panel enlarged by pixel repetition.",
                                      rich_help_panel=IMAGES_PANEL)] = 1,
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help="Scale for images (default: the models' own).",
                                                   rich_help_panel=IMAGES_PANEL)] = None,
    device: Annotated[str, in_panel(Device, IMAGES_PANEL)] = "auto",
    max_pixels: Annotated[Optional[str], in_panel(MaxPixels, IMAGES_PANEL)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=(
        "blended.safetensors (default: <gan>-alpha<A>.safetensors here); with --sweep or --mode image: an image."),
        rich_help_panel=OUTPUT_PANEL)] = None,
    overwrite: Annotated[bool, in_panel(Overwrite, OUTPUT_PANEL)] = False,
    json_record: Annotated[bool, in_panel(Json, OUTPUT_PANEL)] = False,
    quiet: Annotated[bool, in_panel(Quiet, OUTPUT_PANEL)] = False,
    verbose: Annotated[bool, in_panel(Verbose, OUTPUT_PANEL)] = False,
) -> None:
    """Blend a PSNR model and its GAN model: theta = (1 - alpha) PSNR + alpha GAN.

    Blending weights runs on the CPU; --device chooses where the models run for --sweep and --mode image.
    The path written is printed on stdout (with --json: one JSON line).

    Examples:

      sr blend --alpha 0.8 -o esrgan-0.8.safetensors

      sr blend --sweep 0,0.25,0.5,0.75,1 --image photo.png -o sweep.png

      sr blend --psnr psnr.pth --gan gan.pth -a 0.5 -o half.safetensors --json
    """
    from sr_cli import blend as blending
    from sr_cli.api import UpscaleOptions
    from sr_cli.imageio import read_image, to_bit_depth, write_image
    from sr_cli.imageio.budget import pixel_budget
    from sr_cli.imageio.sheet import check_zoom, contact_sheet, parse_crop
    from sr_cli.weights.interpolate import check_alpha

    # every usage check first: nothing is downloaded or loaded for a command that cannot run
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: use weights or image")
    if output is not None and output.exists() and not overwrite:
        raise UsageError(f"{output} exists; pass --overwrite to replace it or choose another -o")
    if sweep is None and alpha is None:
        raise UsageError("give --alpha A (0..1), or --sweep 0,0.5,1 with --image for a contact sheet")
    if sweep is not None and alpha is not None:
        raise UsageError("--sweep and --alpha exclude each other: the sweep sets the alphas")
    if alpha is not None:
        check_alpha(alpha)
    alphas = blending.parse_alphas(sweep) if sweep is not None else None
    writes_weights = sweep is None and mode == "weights"
    if output is None and not writes_weights:
        raise UsageError("give -o IMAGE: --sweep and --mode image write an image (.png, .jpg, ...)")
    if writes_weights and output is not None and output.suffix.lower() != ".safetensors":
        raise UsageError(f"{output}: blended weights are written as .safetensors; name the output *.safetensors")
    if not writes_weights and image is None:
        raise UsageError("--sweep and --mode image need --image PHOTO")
    if writes_weights and image is not None:
        raise UsageError("--image is used with --sweep or --mode image only; drop it to write blended weights")
    if crop is not None and sweep is None:
        raise UsageError("--crop chooses the region of a --sweep contact sheet; drop it or add --sweep")
    if zoom != 1 and sweep is None:
        raise UsageError("--zoom enlarges the panels of a --sweep contact sheet; drop it or add --sweep")
    check_zoom(zoom)
    budget = pixel_budget(max_pixels)
    picture = read_image(image, budget=budget) if image is not None else None
    region = None
    if picture is not None and alphas is not None:
        x, y, w, h = parse_crop(crop, picture.pixels.shape[0], picture.pixels.shape[1])
        region = to_bit_depth(picture.pixels[y:y + h, x:x + w], 8)

    psnr_label, gan_label = blending.default_labels(psnr, gan)
    if output is None:  # weights mode (checked above), so --alpha was given
        assert alpha is not None
        output = blending.default_output(gan_label, alpha)
        if output.exists() and not overwrite:
            raise UsageError(f"{output} exists; pass --overwrite to replace it or choose another name with -o")
    first, second = blending.load_pair(psnr_label, gan_label, res_scale=res_scale)
    for endpoint, role in ((first, "psnr"), (second, "gan")):
        detail(f"{role}: {endpoint.label}, {endpoint.checkpoint.path} (sha256 {endpoint.checkpoint.sha256[:12]})")
    if mode == "weights":
        blending.check_not_degenerate(first, second)

    if writes_weights:
        result = blending.blend(first, second, alpha)  # type: ignore[arg-type]
        blending.save(result, output, overwrite=overwrite)
        record = {"output": str(output), "alpha": alpha, "family": result.family, "mode": "weights",
                  "sources": json.loads(result.metadata["sr.sources"])}
    else:
        assert picture is not None
        for message in picture.notes:
            note(f"{image}: {message}")
        scale_used = scale if scale is not None else _own_scale(first)
        options = UpscaleOptions(device=device, max_pixels=budget.output)
        if alphas is not None and region is not None:
            tiles = blending.sweep_images(first, second, alphas, region, scale=scale_used, mode=mode, options=options)
            label = "alpha" if mode == "weights" else "image alpha"
            sheet = contact_sheet(tiles, [f"{label} {a:g}" for a in alphas], zoom=zoom)
            write_image(output, sheet.pixels, overwrite=overwrite)
            record = {"output": str(output), "alphas": alphas, "mode": mode, "crop": [x, y, w, h], "zoom": zoom,
                      "boxes": [list(box) for box in sheet.boxes]}
        else:
            tiles = blending.sweep_images(first, second, [alpha], picture.pixels, scale=scale_used,  # type: ignore[list-item]
                                          mode="image", options=options)
            for message in write_image(output, tiles[0], picture.metadata, overwrite=overwrite):
                note(f"{output}: {message}")
            record = {"output": str(output), "alpha": alpha, "mode": "image"}
    if json_record:
        json_line({"command": "blend", "status": "done", **record})
    else:
        result_path(output)


def _own_scale(endpoint: Endpoint) -> float:
    scales = endpoint.checkpoint.detected.scales
    if not scales:
        raise UsageError(f"{endpoint.label} serves any scale; pass --scale for the images")
    return float(scales[-1])


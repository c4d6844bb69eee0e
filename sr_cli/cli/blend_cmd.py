"""`sr blend`: network interpolation between a PSNR model and its GAN model (docs/blend.md)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from sr_cli.cli.console import note, stdout
from sr_cli.cli.options import Device, MaxPixels, Overwrite, ResScale
from sr_cli.errors import UsageError

if TYPE_CHECKING:  # torch, numpy and the image readers load only when the command runs
    from sr_cli.blend import Endpoint

MODES = ("weights", "image")


def blend(
    alpha: Annotated[Optional[float], typer.Option("--alpha", "-a", help="0 = the PSNR model, 1 = the GAN model.")] = None,
    psnr: Annotated[Optional[str], typer.Option("--psnr", help="PSNR-oriented model: name or file (default: esrgan-psnr).")] = None,
    gan: Annotated[Optional[str], typer.Option("--gan", help="GAN model: name or file (default: esrgan).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=(
        "blended.safetensors (default: <gan>-alpha<A>.safetensors here); with --sweep or --mode image: an image."))] = None,
    mode: Annotated[str, typer.Option("--mode", help="weights (network interpolation) | image (blend the two outputs; a comparison).")] = "weights",
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="Alphas for a contact sheet, e.g. 0,0.2,0.4,0.6,0.8,1 (needs --image).")] = None,
    image: Annotated[Optional[Path], typer.Option("--image", help="Input image for --sweep or --mode image.")] = None,
    crop: Annotated[Optional[str], typer.Option("--crop", help="x,y,w,h of the input region shown in a sweep (default: 96x96 centre).")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help="Scale for images (default: the models' own).")] = None,
    res_scale: ResScale = None,
    device: Device = "auto",
    overwrite: Overwrite = False,
    json_record: Annotated[bool, typer.Option("--json", help="Print a JSON record of what was written.")] = False,
    max_pixels: MaxPixels = None,
) -> None:
    """Blend a PSNR model and its GAN model: theta = (1 - alpha) PSNR + alpha GAN.

    Blending weights runs on the CPU; --device chooses where the models run for --sweep and --mode image.
    """
    from sr_cli import blend as blending
    from sr_cli.api import UpscaleOptions
    from sr_cli.imageio import read_image, to_bit_depth, write_image
    from sr_cli.imageio.budget import pixel_budget
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
    budget = pixel_budget(max_pixels)
    picture = read_image(image, budget=budget) if image is not None else None
    region = None
    if picture is not None and alphas is not None:
        x, y, w, h = blending.parse_crop(crop, picture.pixels.shape[0], picture.pixels.shape[1])
        region = to_bit_depth(picture.pixels[y:y + h, x:x + w], 8)

    psnr_label, gan_label = blending.default_labels(psnr, gan)
    if output is None:  # weights mode (checked above), so --alpha was given
        assert alpha is not None
        output = blending.default_output(gan_label, alpha)
        if output.exists() and not overwrite:
            raise UsageError(f"{output} exists; pass --overwrite to replace it or choose another name with -o")
    first, second = blending.load_pair(psnr_label, gan_label, res_scale=res_scale)
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
            write_image(output, blending.contact_sheet(tiles, [f"{label} {a:g}" for a in alphas]), overwrite=overwrite)
            record = {"output": str(output), "alphas": alphas, "mode": mode, "crop": [x, y, w, h]}
        else:
            tiles = blending.sweep_images(first, second, [alpha], picture.pixels, scale=scale_used,  # type: ignore[list-item]
                                          mode="image", options=options)
            for message in write_image(output, tiles[0], picture.metadata, overwrite=overwrite):
                note(f"{output}: {message}")
            record = {"output": str(output), "alpha": alpha, "mode": "image"}
    if json_record:
        stdout.print(json.dumps(record), markup=False)
    else:
        stdout.print(f"wrote {output}", markup=False)


def _own_scale(endpoint: Endpoint) -> float:
    scales = endpoint.checkpoint.detected.scales
    if not scales:
        raise UsageError(f"{endpoint.label} serves any scale; pass --scale for the images")
    return float(scales[-1])


"""`sr compare`: models side by side on one image (sr_cli.compare), one labelled sheet."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sr_cli.cli.console import detail, json_line, note, result_path
from sr_cli.cli.options import Device, Json, MaxPixels, Overwrite, Quiet, Verbose, in_panel
from sr_cli.errors import UsageError

MODELS_PANEL = "Models"
REGION_PANEL = "Region and sheet"
RUN_PANEL = "Running"
OUTPUT_PANEL = "Output and reporting"
WHOLE_IMAGE_PIXELS = 256 * 256  # without --crop, images up to this are shown whole; larger: a centre crop
DEFAULT_CROP_SIDE = 128


def compare(
    image: Annotated[Path, typer.Argument(help="The image to compare the models on.", show_default=False,
                                          metavar="IMAGE")],
    models: Annotated[str, typer.Option("--models", "-m", help=(
        "Models to compare, separated by commas: names (sr weights list) or weights files. Bicubic is always shown."),
        rich_help_panel=MODELS_PANEL, show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The sheet to write (.png, .jpg, .webp, .tiff).",
                                         rich_help_panel=OUTPUT_PANEL, show_default=False)],
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help=(
        "Output factor of every panel (default: the first model's own scale)."), rich_help_panel=MODELS_PANEL)] = None,
    crop: Annotated[Optional[str], typer.Option("--crop", help=(
        "x,y,w,h of the input region to compare (default: the whole image up to 256x256, else a 128x128 centre)."),
        rich_help_panel=REGION_PANEL)] = None,
    zoom: Annotated[Optional[int], typer.Option("--zoom", help=(
        "Show each panel enlarged by pixel repetition (default: so panels are about 384 px)."),
        rich_help_panel=REGION_PANEL)] = None,
    columns: Annotated[Optional[int], typer.Option("--columns", help="Panels per row (default: all in one row, up to 4).",
                                                   rich_help_panel=REGION_PANEL)] = None,
    tile: Annotated[str, typer.Option("--tile", help="Input tile side in pixels, 0 = the whole region, auto = from free memory.",
                                      rich_help_panel=RUN_PANEL)] = "auto",
    device: Annotated[str, in_panel(Device, RUN_PANEL)] = "auto",
    max_pixels: Annotated[Optional[str], in_panel(MaxPixels, RUN_PANEL)] = None,
    overwrite: Annotated[bool, in_panel(Overwrite, OUTPUT_PANEL)] = False,
    json_record: Annotated[bool, in_panel(Json, OUTPUT_PANEL)] = False,
    quiet: Annotated[bool, in_panel(Quiet, OUTPUT_PANEL)] = False,
    verbose: Annotated[bool, in_panel(Verbose, OUTPUT_PANEL)] = False,
) -> None:
    """Run several models (and bicubic) on the same image or region and write one labelled sheet.

    Each model sees the region with up to 16 pixels of the image around it, so panel edges show the model.

    Examples:

      sr compare photo.png -m realesrgan-x4plus,realesr-animevideov3 -o c.png

      sr compare photo.png -m vdsr,realesrgan -s 4 --crop 9,9,64,64 -o c.png

      sr compare photo.png -m realesrgan-x4plus --zoom 2 -o c.png --json
    """
    from sr_cli import compare as comparing
    from sr_cli.api import UpscaleOptions
    from sr_cli.cli.progress import progress_bar
    from sr_cli.cli.upscale_cmd import parse_tile
    from sr_cli.imageio import format_for_write_suffix, read_image, to_bit_depth, write_image
    from sr_cli.imageio.budget import pixel_budget
    from sr_cli.imageio.sheet import check_zoom, parse_crop

    # every usage check first: nothing is read, loaded or run for a command that cannot finish
    names = comparing.parse_models(models)
    if format_for_write_suffix(output.suffix) is None:
        raise UsageError(f"{output}: the sheet is an image; name it .png, .jpg, .webp or .tiff")
    if output.exists() and not overwrite:
        raise UsageError(f"{output} exists; pass --overwrite to replace it or choose another -o")
    if not output.absolute().parent.is_dir():
        raise UsageError(f"{output}: the folder {output.parent} does not exist; create it or choose another -o")
    if scale is not None and not (scale > 0 and scale < 1e6):
        raise UsageError(f"--scale {scale:g} must be a positive factor")
    if zoom is not None:
        check_zoom(zoom)
    if columns is not None and columns < 1:
        raise UsageError(f"--columns {columns}: give 1 or more panels per row")
    comparing.check_models_exist(names)
    budget = pixel_budget(max_pixels)
    options = UpscaleOptions(tile=parse_tile(tile), device=device, max_pixels=budget.output)
    _ = options.runtime  # a missing --device fails here, before the image is read
    picture = read_image(image, budget=budget)
    for message in picture.notes:
        note(f"{image}: {message}")
    pixels = to_bit_depth(picture.pixels, 8)
    height, width = pixels.shape[:2]
    if crop is None and height * width <= WHOLE_IMAGE_PIXELS:
        x, y, w, h = 0, 0, width, height
    else:
        x, y, w, h = parse_crop(crop, height, width, size=DEFAULT_CROP_SIDE)
        if crop is None:
            note(f"{image} is {width}x{height}: comparing its centre {w}x{h} (--crop {x},{y},{w},{h}); "
                 f"choose another region with --crop x,y,w,h")
    region = comparing.Region.with_context(x, y, w, h, height, width)
    factor = scale if scale is not None else comparing.default_factor(names)
    chosen_zoom = zoom if zoom is not None else comparing.auto_zoom(h, w, factor)
    detail(f"region {x},{y},{w},{h} with context {region.left},{region.top},{region.right},{region.bottom}; "
           f"factor x{factor:g}, zoom {chosen_zoom}")

    panels = [comparing.bicubic_panel(pixels, region, factor)]
    for index, name in enumerate(names, start=1):
        note(f"[{index}/{len(names)}] {name} ...")
        with progress_bar(f"{index}/{len(names)} {name}", kind="percent") as advance:
            panel = comparing.model_panel(name, pixels, region, factor, options, advance)
        detail(f"{panel.label}: weights {panel.weights_file}, {panel.seconds:.2f} s")
        panels.append(panel)
    per_row = columns if columns is not None else min(len(panels), 4)
    sheet = comparing.sheet_of(panels, zoom=chosen_zoom, columns=per_row,
                               title=f"{image.name} x{factor:g}, region {x},{y},{w},{h}, shown x{chosen_zoom}")
    write_image(output, sheet.pixels, overwrite=overwrite)
    if json_record:
        json_line({"command": "compare", "status": "done", "output": str(output), "input": str(image),
                   "crop": [x, y, w, h], "scale": factor, "zoom": chosen_zoom,
                   "size": [int(sheet.pixels.shape[1]), int(sheet.pixels.shape[0])],
                   "panels": [{"label": p.label, "model": p.model, "box": list(box), "seconds": round(p.seconds, 3),
                               "weights_file": p.weights_file, "weights_sha256": p.weights_sha256}
                              for p, box in zip(panels, sheet.boxes, strict=True)]})
    else:
        result_path(output)

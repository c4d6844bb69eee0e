"""The one sheet maker: labelled images in a grid on white, for `sr blend --sweep`, `sr compare` and the
docs' pictures (docs/make_pictures.py).

Each panel is shown at an integer zoom by pixel repetition (nearest neighbour), so a reader sees the
model's own pixels, not a viewer's smoothing. A cell is as wide as its image or its label, whichever is
wider, so a long model name is never cut nor drawn over its neighbour. `Sheet.boxes` says where each
panel's image landed (x, y, width, height in sheet pixels): `sr compare --json` reports them, and tests
compare every box with an independently computed model output.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from sr_cli.errors import UsageError

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont, ImageFont

GAP = 8  # white pixels between cells and around the sheet
LABEL_HEIGHT = 22  # the strip above each image that holds its label
FONT_SIZE = 14
MAX_ZOOM = 16


@dataclass(frozen=True)
class Sheet:
    pixels: np.ndarray  # HxWx3 uint8
    boxes: tuple[tuple[int, int, int, int], ...]  # per panel: x, y, width, height of its (zoomed) image


def contact_sheet(tiles: Sequence[np.ndarray], labels: Sequence[str], *, columns: int = 3, zoom: int = 1,
                  gap: int = GAP, label_height: int = LABEL_HEIGHT, title: str | None = None) -> Sheet:
    """Tiles (HxW or HxWxC uint8, C 1..4; sizes may differ) with their labels in a grid, row by row.

    zoom: each tile enlarged by pixel repetition. title: one line above the grid (e.g. the command run).
    Transparent pixels are shown over white, as viewers do.
    """
    from PIL import Image, ImageDraw

    if len(tiles) != len(labels):
        raise ValueError(f"{len(tiles)} tiles but {len(labels)} labels")
    if not tiles:
        raise ValueError("a sheet needs at least one tile")
    check_zoom(zoom)
    font = sheet_font()
    shown = [zoomed(on_white(tile), zoom) for tile in tiles]
    columns = max(1, min(columns, len(shown)))
    rows = -(-len(shown) // columns)
    cell_widths = [max(max(image.shape[1], text_width(label, font) + 4) for image, label in
                       zip(shown[column::columns], labels[column::columns], strict=True)) for column in range(columns)]
    row_heights = [max(image.shape[0] for image in shown[row * columns:(row + 1) * columns]) for row in range(rows)]
    title_height = label_height if title else 0
    width = gap + sum(w + gap for w in cell_widths)
    if title:
        width = max(width, text_width(title, font) + 2 * gap)
    height = gap + title_height + sum(h + label_height + gap for h in row_heights)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((gap + 2, gap + 3), title, fill="black", font=font)
    boxes = []
    for index, (image, label) in enumerate(zip(shown, labels, strict=True)):
        row, column = divmod(index, columns)
        left = gap + sum(w + gap for w in cell_widths[:column])
        top = gap + title_height + sum(h + label_height + gap for h in row_heights[:row])
        sheet.paste(Image.fromarray(image), (left, top + label_height))
        draw.text((left + 2, top + 3), label, fill="black", font=font)
        boxes.append((left, top + label_height, image.shape[1], image.shape[0]))
    return Sheet(np.asarray(sheet), tuple(boxes))


def check_zoom(zoom: int) -> None:
    if not 1 <= zoom <= MAX_ZOOM:
        raise UsageError(f"--zoom {zoom}: use a whole number from 1 to {MAX_ZOOM}")


def zoomed(image: np.ndarray, zoom: int) -> np.ndarray:
    """Each pixel repeated zoom x zoom times."""
    return image if zoom == 1 else np.repeat(np.repeat(image, zoom, axis=0), zoom, axis=1)


def on_white(tile: np.ndarray) -> np.ndarray:
    """HxW / HxWxC (C 1..4) uint8 -> HxWx3 uint8; transparent pixels shown over white, as viewers do."""
    if tile.dtype != np.uint8:
        raise ValueError(f"sheet tiles are uint8, got {tile.dtype}")
    pixels = tile.reshape(tile.shape[0], tile.shape[1], -1).astype(np.float64)
    colour, alpha = (pixels[:, :, :-1], pixels[:, :, -1:] / 255.0) if pixels.shape[2] in (2, 4) else (pixels, 1.0)
    rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
    return np.ascontiguousarray(np.rint(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8))


@lru_cache(maxsize=1)
def sheet_font() -> FreeTypeFont | ImageFont:
    """Pillow's own font (no font file to find): the scalable one where Pillow has it (10.1+)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow 10.0: the fixed bitmap font only
        return ImageFont.load_default()


def text_width(text: str, font: FreeTypeFont | ImageFont) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(np.ceil(right - left))


def parse_crop(text: str | None, height: int, width: int, size: int = 96) -> tuple[int, int, int, int]:
    """--crop x,y,w,h of the input region shown (default: a size x size square at the centre), checked
    against the height x width image."""
    if text is None:
        w, h = min(size, width), min(size, height)
        return (width - w) // 2, (height - h) // 2, w, h
    try:
        x, y, w, h = (int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--crop {text!r}: give x,y,width,height in input pixels, e.g. 100,80,96,96") from None
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise UsageError(f"--crop {text}: the region must lie inside the {width}x{height} image "
                         f"(x + width <= {width}, y + height <= {height})")
    return x, y, w, h

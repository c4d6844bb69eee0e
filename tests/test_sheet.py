"""The one sheet maker: every tile lands, pixel for pixel (zoomed by repetition), in its box; boxes never
overlap; a long label widens its column instead of running into the next one; transparency shows white."""
from __future__ import annotations

import numpy as np
import pytest

from sr_cli.errors import UsageError
from sr_cli.imageio.sheet import contact_sheet, on_white, parse_crop

RNG = np.random.default_rng(7)


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_tiles_land_in_their_boxes_zoomed_and_never_overlap() -> None:
    tiles = [RNG.integers(0, 256, (h, w, 3)).astype(np.uint8) for h, w in ((10, 12), (7, 5), (10, 12), (3, 9), (6, 6))]
    labels = ["a", "a much longer label than the tile is wide", "c", "d", "e"]
    sheet = contact_sheet(tiles, labels, columns=2, zoom=3, title="a title")
    assert len(sheet.boxes) == len(tiles)
    for tile, (x, y, w, h) in zip(tiles, sheet.boxes, strict=True):
        assert (w, h) == (tile.shape[1] * 3, tile.shape[0] * 3)
        assert np.array_equal(sheet.pixels[y:y + h, x:x + w], np.repeat(np.repeat(tile, 3, axis=0), 3, axis=1))
        assert 0 <= x and x + w <= sheet.pixels.shape[1] and 0 <= y and y + h <= sheet.pixels.shape[0]
    for i, a in enumerate(sheet.boxes):
        assert not any(overlaps(a, b) for b in sheet.boxes[i + 1:])
    # the long label's column (the second) is wider than its tiles; its text is drawn (dark pixels above the tile)
    second_x, second_y = sheet.boxes[1][0], sheet.boxes[1][1]
    column_width = sheet.pixels.shape[1] - 8 - second_x  # the last column: up to the right margin
    assert column_width > 100 > 12 * 3  # far wider than its widest tile, for the label
    assert (sheet.pixels[second_y - 20:second_y, second_x + 100:] < 128).any()  # the label's end is drawn
    # rows: boxes of one row share a top, row two starts below row one's tallest tile
    assert sheet.boxes[0][1] == sheet.boxes[1][1] < sheet.boxes[2][1] == sheet.boxes[3][1] < sheet.boxes[4][1]
    assert sheet.boxes[2][1] > sheet.boxes[0][1] + 30


def test_transparent_and_grey_tiles_are_shown_over_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[:2, :, 3] = 200, 255  # red, opaque top half, transparent bottom half
    shown = on_white(rgba)
    assert (shown[:2] == [200, 0, 0]).all() and (shown[2:] == 255).all()
    grey = np.full((3, 3), 40, np.uint8)
    assert (on_white(grey) == 40).all() and on_white(grey).shape == (3, 3, 3)


def test_bad_sheet_arguments() -> None:
    tile = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError):
        contact_sheet([tile], ["a", "b"])
    with pytest.raises(UsageError, match="--zoom"):
        contact_sheet([tile], ["a"], zoom=0)
    assert parse_crop(None, 40, 50, size=96) == (0, 0, 50, 40)  # smaller than the default: the whole image
    assert parse_crop(None, 200, 300, size=96) == (102, 52, 96, 96)
    with pytest.raises(UsageError, match="inside the 50x40 image"):
        parse_crop("45,0,10,10", 40, 50)

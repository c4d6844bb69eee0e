"""EXIF orientation: turn stored pixels upright, and reset the tag once they are."""
from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

ORIENTATION_TAG = 0x0112


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Return HxWxC pixels as they should be displayed for an EXIF orientation value (1..8).

    The table is the EXIF 2.3 definition of where row 0 / column 0 of the stored image belong.
    Unknown values (0, 9, garbage) are treated as 1: the file is then shown as stored.
    """
    if orientation == 2:  # mirrored horizontally
        upright = pixels[:, ::-1]
    elif orientation == 3:  # rotated 180
        upright = pixels[::-1, ::-1]
    elif orientation == 4:  # mirrored vertically
        upright = pixels[::-1, :]
    elif orientation == 5:  # transposed (mirror + 90 CCW): swap rows and columns
        upright = pixels.transpose(1, 0, 2)
    elif orientation == 6:  # stored rotated 90 CCW: turn 90 clockwise
        upright = np.rot90(pixels, k=-1)
    elif orientation == 7:  # transversed: transpose about the anti-diagonal
        upright = pixels[::-1, ::-1].transpose(1, 0, 2)
    elif orientation == 8:  # stored rotated 90 CW: turn 90 counter-clockwise
        upright = np.rot90(pixels, k=1)
    else:
        upright = pixels
    return np.ascontiguousarray(upright)


def exif_with_orientation_reset(exif: PILImage.Exif) -> bytes:
    """The EXIF block with orientation = 1 (the pixels are upright now), as ``Exif\\0\\0``+TIFF bytes."""
    if exif.get(ORIENTATION_TAG, 1) != 1:
        exif[ORIENTATION_TAG] = 1
    return exif.tobytes()

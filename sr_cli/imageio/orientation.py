"""EXIF orientation: turn stored pixels upright, and reset the tag once they are."""
from __future__ import annotations

import struct

import numpy as np
from PIL import Image as PILImage

ORIENTATION_TAG = 0x0112
SHORT = 3  # TIFF field type of the Orientation tag


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


def tiff_with_orientation_reset(data: bytes) -> bytes:
    """The TIFF bytes with the first IFD's Orientation tag set to 1 (classic and BigTIFF).

    Pillow (13+) and OpenCV rotate TIFFs on decode and older Pillow versions do not; decoding a copy
    that says "upright" and rotating once ourselves gives the same pixels with every library version.
    Bytes without an Orientation tag come back unchanged.
    """
    if len(data) < 16 or data[:2] not in (b"II", b"MM"):
        return data
    order = "<" if data[:2] == b"II" else ">"
    version = struct.unpack(order + "H", data[2:4])[0]
    if version == 42:
        ifd = struct.unpack(order + "I", data[4:8])[0]
        count_format, count_size, entry_size, value_offset = "H", 2, 12, 8
    elif version == 43:  # BigTIFF
        ifd = struct.unpack(order + "Q", data[8:16])[0]
        count_format, count_size, entry_size, value_offset = "Q", 8, 20, 12
    else:
        return data
    if ifd + count_size > len(data):
        return data
    entries = struct.unpack(order + count_format, data[ifd:ifd + count_size])[0]
    for index in range(entries):
        start = ifd + count_size + index * entry_size
        if start + entry_size > len(data):
            break
        tag, kind = struct.unpack(order + "HH", data[start:start + 4])
        if tag == ORIENTATION_TAG and kind == SHORT:
            patched = bytearray(data)
            patched[start + value_offset:start + value_offset + 2] = struct.pack(order + "H", 1)
            return bytes(patched)
    return data

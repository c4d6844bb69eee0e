"""The contract of a row band handed to a streaming encoder (png_encoder, tiff_encoder): one place for both."""
from __future__ import annotations

import numpy as np


def check_band(pixels: np.ndarray, *, width: int, channels: int, bit_depth: int, rows_written: int, height: int,
               kind: str) -> int:
    """The band's row count, after checking it is HxWxC of the image's width, channels and depth (uint8 for 8,
    uint16 for 16 bits) and does not run past its height; ValueError otherwise. `kind` names the format."""
    rows, band_width, band_channels = pixels.shape
    wanted = np.uint16 if bit_depth == 16 else np.uint8
    if band_width != width or band_channels != channels or pixels.dtype != wanted:
        raise ValueError(f"a band of {band_width}x{band_channels} {pixels.dtype} does not fit a {width}-wide "
                         f"{channels}-channel {bit_depth}-bit {kind}")
    if rows_written + rows > height:
        raise ValueError(f"{rows_written + rows} rows written to a {kind} {height} rows high")
    return rows

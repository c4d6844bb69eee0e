"""What a read image is: pixels plus the metadata we carry to the output, and the formats we know."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

BitDepth = Literal[8, 16]

# Channel count -> the mode name used in messages and in `Image.mode`.
MODE_BY_CHANNELS: dict[int, str] = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}

# Formats we read, by lower-case suffix. Pillow decodes them (16-bit PNG/TIFF pixels come from OpenCV).
READ_FORMAT_BY_SUFFIX: dict[str, str] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".gif": "gif",
}

# Formats we write, by lower-case suffix, and the suffix each format gets when we choose it.
# Every format we read except GIF (an SR result is no palette animation).
WRITE_FORMAT_BY_SUFFIX: dict[str, str] = {suffix: fmt for suffix, fmt in READ_FORMAT_BY_SUFFIX.items() if fmt != "gif"}
SUFFIX_BY_WRITE_FORMAT: dict[str, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tiff", "bmp": ".bmp"}

# Which formats can hold what. JPEG/BMP have no alpha here (BMP alpha support is patchy across readers).
FORMATS_WITH_16_BIT: frozenset[str] = frozenset({"png", "tiff"})
FORMATS_WITH_ALPHA: frozenset[str] = frozenset({"png", "webp", "tiff"})

# The names users type for --format, mapped to our format names.
FORMAT_ALIASES: dict[str, str] = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp", "tif": "tiff", "tiff": "tiff"}


@dataclass(frozen=True)
class ImageMetadata:
    """What travels from the input file to the output file besides the pixels.

    ``exif`` holds the raw EXIF block (``b"Exif\\0\\0"`` + TIFF structure) with its orientation tag
    already reset to 1, because the pixels were rotated upright on read.
    """

    icc: bytes | None = None
    exif: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    source_format: str | None = None
    bit_depth: BitDepth = 8


@dataclass(frozen=True)
class Image:
    """Upright pixels, HxWxC with C in 1..4 (L, LA, RGB, RGBA), uint8 or uint16."""

    pixels: np.ndarray
    mode: str
    metadata: ImageMetadata
    notes: list[str] = field(default_factory=list)

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)


def format_for_write_suffix(suffix: str) -> str | None:
    """Our format name for an output suffix ('.JPG' -> 'jpeg'), None when we cannot write it."""
    return WRITE_FORMAT_BY_SUFFIX.get(suffix.lower())


READABLE_SUFFIXES: frozenset[str] = frozenset(READ_FORMAT_BY_SUFFIX)


def is_readable_suffix(suffix: str) -> bool:
    """The one list of image suffixes: batch inputs, `sr downscale`, benchmark sets and training data."""
    return suffix.lower() in READ_FORMAT_BY_SUFFIX

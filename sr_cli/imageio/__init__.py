"""Faithful image reading and atomic writing (bit depth, alpha, ICC, EXIF, text chunks)."""
from sr_cli.files.atomic import write_bytes_atomic
from sr_cli.imageio.model import (
    FORMATS_WITH_16_BIT,
    FORMATS_WITH_ALPHA,
    READABLE_SUFFIXES,
    SUFFIX_BY_WRITE_FORMAT,
    Image,
    ImageMetadata,
    format_for_write_suffix,
    is_readable_suffix,
)
from sr_cli.imageio.reader import open_image, read_image
from sr_cli.imageio.writer import to_bit_depth, write_image, write_image_rows, writes_rows

__all__ = [
    "FORMATS_WITH_16_BIT",
    "FORMATS_WITH_ALPHA",
    "READABLE_SUFFIXES",
    "SUFFIX_BY_WRITE_FORMAT",
    "Image",
    "ImageMetadata",
    "format_for_write_suffix",
    "is_readable_suffix",
    "open_image",
    "read_image",
    "to_bit_depth",
    "write_bytes_atomic",
    "write_image",
    "write_image_rows",
    "writes_rows",
]

"""write_image: pixels + metadata to PNG/JPEG/WebP/TIFF/BMP, atomically.

What each format keeps (anything dropped is returned as a note, never silently):

| format | bit depth | alpha | ICC | EXIF | PNG text |
|--------|-----------|-------|-----|------|----------|
| png    | 8, 16     | yes   | yes | yes  | yes      |
| tiff   | 8, 16 (16-bit gray+alpha refused) | yes | yes | 8-bit only | no |
| webp   | 8         | yes   | yes | yes  | no       |
| jpeg   | 8         | refused | yes | yes | no      |
| bmp    | 8         | refused | no | no  | no       |

16-bit pixels to an 8-bit-only format are rounded to 8 bits with a note, unless bit_depth=16 was asked
for explicitly, which raises OutputError.

write_image_rows: the same for an image that arrives in row bands (an upscale streamed from the engine),
PNG and TIFF only (`writes_rows`), encoded band by band into the atomic writer's temporary file.
"""
from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from sr_cli.errors import OutputError
from sr_cli.files.atomic import atomic_write, write_bytes_atomic
from sr_cli.imageio.model import (
    FORMAT_ALIASES,
    FORMATS_WITH_16_BIT,
    FORMATS_WITH_ALPHA,
    MODE_BY_CHANNELS,
    ImageMetadata,
    format_for_write_suffix,
)
from sr_cli.imageio.png_encoder import PngRowWriter, encode_png
from sr_cli.imageio.tiff_encoder import TiffStripWriter, TiffTooLargeError, encode_tiff

DEFAULT_QUALITY = 95  # JPEG/WebP: SR output is about detail; the usual 75-80 smears it again


def to_bit_depth(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """uint8 <-> uint16 by the exact factor 257 (255 * 257 = 65535), rounding to nearest on the way down."""
    if bit_depth == 16:
        return pixels.astype(np.uint16) * np.uint16(257) if pixels.dtype == np.uint8 else pixels
    if pixels.dtype == np.uint16:
        return ((pixels.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
    return pixels


def write_image(
    path: str | Path,
    pixels: np.ndarray,
    metadata: ImageMetadata | None = None,
    *,
    format: str | None = None,
    quality: int | None = None,
    bit_depth: int | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Write HxW or HxWxC (C 1..4) uint8/uint16 pixels atomically; returns notes on what was changed
    or dropped. ``format`` is png|jpg|jpeg|webp|tiff|tif|bmp, else taken from the suffix. ``quality``
    (1-100) applies to JPEG and WebP (WebP 100 = lossless); lossless formats ignore it. Without
    ``overwrite`` an existing file at ``path`` is never replaced, even one that appears during the write."""
    path = Path(path)
    metadata = metadata or ImageMetadata()
    chosen = _resolve_format(path, format)
    pixels = _validated(path, pixels)
    depth, notes = _plan(path, chosen, 16 if pixels.dtype == np.uint16 else 8, pixels.shape[2], metadata,
                         bit_depth=bit_depth, quality=quality)
    pixels = to_bit_depth(pixels, depth)
    if chosen == "png":
        data, png_notes = encode_png(pixels, icc=metadata.icc, exif=metadata.exif, text=metadata.text)
        notes += png_notes
    elif chosen == "tiff" and depth == 16:
        try:
            data = encode_tiff(pixels, icc=metadata.icc)
        except TiffTooLargeError as error:
            raise OutputError(f"{path}: {error}; write png instead") from None
    else:
        data = _encode_with_pillow(path, chosen, pixels, metadata, quality, notes)
    write_bytes_atomic(path, data, overwrite=overwrite)
    return notes


def writes_rows(format: str, bit_depth: int, metadata: ImageMetadata | None = None) -> bool:
    """True when `write_image_rows` can write this format (our name, e.g. "png") at this depth keeping all
    that `write_image` keeps: PNG always; TIFF at 16 bits, and at 8 bits unless there is EXIF to carry
    (8-bit TIFF with EXIF is Pillow's). JPEG, WebP and BMP encoders want the whole image."""
    if format == "png":
        return True
    return format == "tiff" and (bit_depth == 16 or not (metadata and metadata.exif))


def write_image_rows(
    path: str | Path,
    bands: Iterable[np.ndarray],
    *,
    width: int,
    height: int,
    channels: int,
    bit_depth: int,
    metadata: ImageMetadata | None = None,
    format: str | None = None,
    overwrite: bool = False,
) -> list[str]:
    """`write_image` for an image that arrives as HxWxC row bands, top to bottom, each encoded and written
    as it comes (bounded memory whatever the image's size): the same file, atomic the same way (an
    exception or Ctrl-C while a band is computed or written leaves nothing), the same notes.

    The bands are uint8 (bit_depth 8) or uint16 (16), `width` wide with `channels` channels, `height`
    rows in all; the format must be one `writes_rows` accepts (OutputError otherwise).
    """
    path = Path(path)
    metadata = metadata or ImageMetadata()
    chosen = _resolve_format(path, format)
    if not writes_rows(chosen, bit_depth, metadata):
        raise OutputError(f"{path}: {chosen.upper()} cannot be written in rows here; write png or tiff")
    if channels not in MODE_BY_CHANNELS or width < 1 or height < 1:
        raise OutputError(f"{path}: cannot write a {width}x{height} image with {channels} channels")
    depth, notes = _plan(path, chosen, bit_depth, channels, metadata, bit_depth=bit_depth, quality=None)
    with atomic_write(path, overwrite=overwrite) as handle:
        encoder: PngRowWriter | TiffStripWriter
        if chosen == "png":
            encoder = PngRowWriter(handle.write, width=width, height=height, channels=channels, bit_depth=depth,
                                   icc=metadata.icc, exif=metadata.exif, text=metadata.text)
            notes += encoder.notes
        else:
            encoder = TiffStripWriter(handle, width=width, height=height, channels=channels, bit_depth=depth,
                                      icc=metadata.icc)
        try:
            for band in bands:
                encoder.write_rows(to_bit_depth(_validated(path, band), depth))
                del band  # not held while the next band is computed
            encoder.finish()
        except TiffTooLargeError as error:
            raise OutputError(f"{path}: {error}; write png instead") from None
    return notes


def _plan(path: Path, chosen: str, source_depth: int, channels: int, metadata: ImageMetadata, *,
          bit_depth: int | None, quality: int | None) -> tuple[int, list[str]]:
    """The depth the file gets and the notes on what it cannot keep; OutputError for what it cannot hold."""
    notes: list[str] = []
    depth = bit_depth or source_depth
    if depth not in (8, 16):
        raise OutputError(f"{path}: bit depth {depth} is not supported; use 8 or 16")
    if depth == 16 and chosen not in FORMATS_WITH_16_BIT:
        if bit_depth == 16:
            raise OutputError(f"{path}: {chosen.upper()} holds 8 bits per channel only; write png or tiff for 16-bit output")
        notes.append(f"16-bit image written as 8-bit ({chosen.upper()} has no 16-bit mode)")
        depth = 8
    if channels in (2, 4) and chosen not in FORMATS_WITH_ALPHA:
        raise OutputError(f"{path}: the image has an alpha channel and {chosen.upper()} cannot store one; use --format png, webp or tiff")
    if quality is not None and not 1 <= quality <= 100:
        raise OutputError(f"{path}: quality {quality} is out of range; use 1-100")
    if metadata.text and chosen != "png":
        notes.append(f"PNG text chunks ({', '.join(metadata.text)}) not kept: {chosen.upper()} has no place for them")
    if chosen == "tiff" and depth == 16:
        if channels == 2:
            raise OutputError(f"{path}: 16-bit gray+alpha TIFF is not readable by common software; use --format png or --bit-depth 8")
        if metadata.exif:
            notes.append("EXIF not kept: 16-bit TIFF output carries the ICC profile only")
    return depth, notes


def _resolve_format(path: Path, format: str | None) -> str:
    if format is not None:
        chosen = FORMAT_ALIASES.get(format.lower()) or ("bmp" if format.lower() == "bmp" else None)
        if chosen is None:
            raise OutputError(f"{path}: unknown output format {format!r}; use png, jpg, webp or tiff")
        return chosen
    chosen = format_for_write_suffix(path.suffix)
    if chosen is None:
        raise OutputError(f"{path}: cannot tell the output format from the suffix {path.suffix!r}; use .png, .jpg, .webp or .tiff")
    return chosen


def _validated(path: Path, pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in MODE_BY_CHANNELS or pixels.dtype not in (np.uint8, np.uint16):
        raise OutputError(f"{path}: cannot write an array of shape {pixels.shape} and type {pixels.dtype}; need HxWxC, C 1-4, uint8 or uint16")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise OutputError(f"{path}: cannot write an empty image of shape {pixels.shape}")
    return pixels


def _encode_with_pillow(path: Path, chosen: str, pixels: np.ndarray, metadata: ImageMetadata, quality: int | None, notes: list[str]) -> bytes:
    """8-bit JPEG, WebP, TIFF and BMP through Pillow, with ICC and EXIF where the format holds them."""
    mode = MODE_BY_CHANNELS[pixels.shape[2]]
    image = PILImage.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode=mode)
    options: dict[str, object] = {}
    if chosen == "webp" and mode in ("L", "LA"):
        notes.append("WebP has no grayscale mode: written as RGB")
        image = image.convert("RGBA" if mode == "LA" else "RGB")
    if chosen == "bmp":
        if metadata.icc or metadata.exif:
            notes.append("ICC profile and EXIF not kept: BMP output carries neither")
    else:
        if metadata.icc:
            options["icc_profile"] = metadata.icc
        if metadata.exif:
            options["exif"] = metadata.exif
    if chosen == "jpeg":
        # 4:4:4: chroma subsampling would throw away the detail the model just made.
        options.update(quality=quality or DEFAULT_QUALITY, subsampling=0, optimize=True)
    elif chosen == "webp":
        wanted = quality or DEFAULT_QUALITY
        # exact: keep the colour under fully transparent pixels (libwebp zeroes it by default).
        options.update(quality=wanted, method=4, lossless=wanted == 100, exact=True)
    elif chosen == "tiff":
        options["compression"] = "tiff_adobe_deflate"
    buffer = io.BytesIO()
    try:
        image.save(buffer, format={"jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}[chosen], **options)
    except (OSError, ValueError) as error:
        raise OutputError(f"{path}: cannot encode {chosen.upper()} ({error}); try another --format") from error
    return buffer.getvalue()

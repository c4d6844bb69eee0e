"""read_image: any PNG/JPEG/WebP/TIFF/BMP/GIF as upright HxWxC uint8/uint16 pixels plus metadata.

Pillow decodes 8-bit data and every file's metadata. Pillow truncates 16-bit RGB(A) to 8 bits, so the
pixels of 16-bit PNG and TIFF files come from OpenCV (`IMREAD_UNCHANGED`, BGR order undone here).
The bit depth is the one the file declares (PNG IHDR, TIFF BitsPerSample), never guessed from values.

Before anything is decoded: the path must be a regular file (no FIFO, device or folder: `files.regular`), its
size within what an image inside the pixel budget can take, and the size its header declares within sr's pixel
budget (`budget`), to which Pillow's own decompression-bomb limit is set for the call. Warnings the libraries
raise become notes of the image (`library_warnings`).
"""
from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageCms, TiffImagePlugin, UnidentifiedImageError

from sr_cli.errors import InputError
from sr_cli.files.regular import read_regular
from sr_cli.imageio.budget import HOW_TO_RAISE, PixelBudget, check_input_size, megapixels, pixel_budget
from sr_cli.imageio.library_warnings import warnings_as_notes
from sr_cli.imageio.model import MODE_BY_CHANNELS, BitDepth, Image, ImageMetadata
from sr_cli.imageio.orientation import (
    ORIENTATION_TAG,
    apply_orientation,
    exif_with_orientation_reset,
    tiff_with_orientation_reset,
)

EXIF_PREFIX = b"Exif\x00\x00"
PNG_COLOR_TYPE_GRAY_ALPHA = 4
TIFF_BITS_PER_SAMPLE, TIFF_PHOTOMETRIC, TIFF_SAMPLES_PER_PIXEL, TIFF_EXIF_IFD = 258, 262, 277, 34665
# The largest file an image within the pixel budget can be: uncompressed 16-bit RGBA (8 bytes a pixel),
# plus room for metadata (ICC, EXIF, text chunks, thumbnails).
MAX_BYTES_PER_PIXEL, METADATA_ALLOWANCE = 8, 64 << 20
_PILLOW_LIMIT_LOCK = threading.Lock()
_DECLARED_PIXELS = re.compile(r"\((\d+) pixels\)")  # in Pillow's DecompressionBombError message

# Pillow modes we turn into one of ours, with the note the user sees ("" = nothing worth saying).
CONVERSIONS: dict[str, tuple[str, str]] = {
    "1": ("L", "1-bit black-and-white image read as 8-bit grayscale"),
    "PA": ("RGBA", "palette image with alpha converted to RGBA"),
    "La": ("LA", "premultiplied alpha converted to straight alpha"),
    "RGBa": ("RGBA", "premultiplied alpha converted to straight alpha"),
    "RGBX": ("RGB", ""),
    "YCbCr": ("RGB", "YCbCr image converted to RGB"),
    "LAB": ("RGB", "Lab image converted to RGB"),
    "HSV": ("RGB", "HSV image converted to RGB"),
}


def read_image(path: str | Path, *, budget: PixelBudget | None = None) -> Image:
    """Read an image file; raises InputError naming the file for anything we cannot read faithfully.

    budget: the pixel limit (default: `--max-pixels` / SR_MAX_PIXELS via `pixel_budget()`)."""
    path = Path(path)
    budget = budget or pixel_budget()
    data = _read_bounded(path, budget)
    # TIFF decoders disagree on whether they apply the Orientation tag: decode an "upright" copy and
    # rotate once ourselves (the tag's value is read from the original bytes in _decode).
    pixel_data = tiff_with_orientation_reset(data)
    notes: list[str] = []
    with _opened(path, data, budget, notes) as opened:
        if pixel_data is data:  # not a TIFF with an Orientation tag: one decoder object for all
            image = _decode(path, data, opened, opened)
        else:
            with PILImage.open(io.BytesIO(pixel_data)) as decodable:
                image = _decode(path, pixel_data, opened, decodable)
    image.notes[:0] = notes
    return image


@contextmanager
def open_image(path: str | Path, *, budget: PixelBudget | None = None,
               notes: list[str] | None = None) -> Iterator[PILImage.Image]:
    """The file as a Pillow image, for readers with their own conversion rules (benchmark and training data),
    behind the same checks as `read_image`: a regular file, its size and its header's within the budget,
    the libraries' warnings collected into `notes` (dropped when None), one InputError naming the file."""
    path = Path(path)
    budget = budget or pixel_budget()
    with _opened(path, _read_bounded(path, budget), budget, [] if notes is None else notes) as opened:
        yield opened


def peek_header(path: str | Path) -> tuple[int, int, bool] | None:
    """(width, height, has_alpha) from the file's header alone (nothing decoded, the rest not read), or
    None for anything that is not a plain readable image: an estimate's input, never a check --
    `read_image` judges the file when its turn comes."""
    path = Path(path)
    try:
        if not path.is_file():  # a FIFO would block the open
            return None
        with warnings_as_notes([]), _pillow_limit(None), PILImage.open(path) as opened:
            has_alpha = opened.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in opened.info
            return opened.width, opened.height, has_alpha
    except (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError, PILImage.DecompressionBombError):
        return None


def _read_bounded(path: Path, budget: PixelBudget) -> bytes:
    return read_regular(path, "an image", max_bytes=budget.input * MAX_BYTES_PER_PIXEL + METADATA_ALLOWANCE)


@contextmanager
def _opened(path: Path, data: bytes, budget: PixelBudget, notes: list[str]) -> Iterator[PILImage.Image]:
    """Pillow's view of `data`, its header checked against `budget` before the caller decodes anything;
    what goes wrong while the caller decodes inside the block becomes one InputError naming `path`."""
    try:
        with warnings_as_notes(notes), _pillow_limit(None), PILImage.open(io.BytesIO(data)) as opened:
            check_input_size(path, opened.width, opened.height, budget)  # the header only: nothing decoded yet
            PILImage.MAX_IMAGE_PIXELS = budget.input  # for what Pillow sizes later (GIF frames); restored on exit
            yield opened
    except UnidentifiedImageError as error:
        raise InputError(f"{path}: not an image Pillow recognises (unknown format or damaged header); "
                         "check the file is PNG, JPEG, WebP, TIFF, BMP or GIF") from error
    except PILImage.DecompressionBombError as error:  # a later frame of more than twice the budget
        declared = _DECLARED_PIXELS.search(str(error))
        size = f" ({megapixels(int(declared.group(1)))})" if declared else ""
        raise InputError(f"{path}: declares more pixels{size} than sr reads (limit {megapixels(budget.input)}; a "
                         f"decompression bomb or a huge scan); {HOW_TO_RAISE}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InputError(f"{path}: not a readable image ({error}); check that the file is complete and is PNG, JPEG, WebP, TIFF, BMP or GIF") from error


@contextmanager
def _pillow_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb limit, held for us while we open and decode a file, restored after.

    Pillow's fixed default (refuse above 179 Mpx, with a message that names neither the file nor a way out)
    is one a raised --max-pixels must lift. It is off for the open, where `check_input_size` judges the
    header, then set to our budget for what Pillow sizes later (GIF frames: it refuses above twice that)."""
    with _PILLOW_LIMIT_LOCK:
        previous = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            PILImage.MAX_IMAGE_PIXELS = previous


def _decode(path: Path, data: bytes, opened: PILImage.Image, decodable: PILImage.Image) -> Image:
    """``opened``: the file as given (metadata); ``decodable``: the same with TIFF orientation reset
    (pixels; the very same bytes for every other format)."""
    notes: list[str] = []
    frames = getattr(opened, "n_frames", 1)
    if frames > 1:
        notes.append(f"{frames} frames (animated or multi-page): only the first is used")
        decodable.seek(0)
    source_format = (opened.format or "unknown").lower()
    bit_depth = _declared_bit_depth(path, data, opened)
    exif = opened.getexif()
    orientation = int(exif.get(ORIENTATION_TAG, 1) or 1)
    icc = opened.info.get("icc_profile") or None

    if bit_depth == 16:
        pixels = _decode_16_bit(path, data, decodable)
    else:
        pixels, icc = _decode_8_bit(path, decodable, icc, notes)
    pixels = apply_orientation(pixels, orientation)
    if orientation not in (1, 0):
        notes.append(f"EXIF orientation {orientation} applied")

    metadata = ImageMetadata(
        icc=icc,
        exif=_exif_bytes(opened, exif, orientation, source_format, notes),
        text=_text_chunks(opened),
        source_format=source_format,
        bit_depth=bit_depth,
    )
    return Image(pixels=pixels, mode=MODE_BY_CHANNELS[pixels.shape[2]], metadata=metadata, notes=notes)


def _declared_bit_depth(path: Path, data: bytes, opened: PILImage.Image) -> BitDepth:
    """8 or 16, from the file header; InputError for depths we do not handle (32-bit, float)."""
    if opened.format == "PNG" and len(data) >= 26:
        depth = data[24]  # IHDR: 8-byte signature, length, type, width, height, then bit depth
    elif isinstance(opened, TiffImagePlugin.TiffImageFile):
        bits = opened.tag_v2.get(TIFF_BITS_PER_SAMPLE, (8,))
        depth = max(bits) if isinstance(bits, tuple) else int(bits)
    elif opened.mode.startswith("I;16"):
        depth = 16
    else:
        depth = 8
    if depth > 16 or (opened.mode in ("I", "F") and depth != 16):
        raise InputError(f"{path}: {depth}-bit {opened.mode} samples are not supported; convert it to an 8- or 16-bit PNG or TIFF")
    return 16 if depth == 16 else 8


def _decode_16_bit(path: Path, data: bytes, opened: PILImage.Image) -> np.ndarray:
    if isinstance(opened, TiffImagePlugin.TiffImageFile):
        samples = int(opened.tag_v2.get(TIFF_SAMPLES_PER_PIXEL, 1))
        photometric = int(opened.tag_v2.get(TIFF_PHOTOMETRIC, 1))
        if samples not in (1, 3, 4) or photometric not in (1, 2):
            raise InputError(f"{path}: 16-bit TIFF with {samples} samples and photometric {photometric} is not supported; convert it to a 16-bit PNG")
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16:
        raise InputError(f"{path}: 16-bit data that OpenCV cannot decode; re-save it as a 16-bit PNG")
    if decoded.ndim == 2:
        return decoded[:, :, None]
    if decoded.shape[2] == 3:
        return np.ascontiguousarray(decoded[:, :, ::-1])
    if opened.format == "PNG" and data[25] == PNG_COLOR_TYPE_GRAY_ALPHA:  # OpenCV expands gray+alpha to BGRA
        return np.ascontiguousarray(decoded[:, :, [0, 3]])
    return np.ascontiguousarray(decoded[:, :, [2, 1, 0, 3]])


def _decode_8_bit(path: Path, opened: PILImage.Image, icc: bytes | None, notes: list[str]) -> tuple[np.ndarray, bytes | None]:
    """Pixels in one of L, LA, RGB, RGBA, and the ICC profile that describes them."""
    opened.load()
    image = opened
    if image.mode == "P":
        target = "RGBA" if "transparency" in image.info else "RGB"
        notes.append(f"palette image converted to {target}")
        image = image.convert(target)
    elif image.mode in ("L", "RGB") and "transparency" in image.info:  # PNG tRNS colour key
        target = "LA" if image.mode == "L" else "RGBA"
        notes.append(f"transparent colour key turned into an alpha channel ({target})")
        image = image.convert(target)
    elif image.mode == "CMYK":
        image, icc = _cmyk_to_rgb(image, icc, notes)
    elif image.mode in CONVERSIONS:
        target, note = CONVERSIONS[image.mode]
        if note:
            notes.append(note)
        image = image.convert(target)
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        raise InputError(f"{path}: pixel mode {image.mode} is not supported; convert it to RGB or grayscale")
    pixels = np.asarray(image, dtype=np.uint8)
    return (pixels[:, :, None] if pixels.ndim == 2 else pixels), icc


def _cmyk_to_rgb(image: PILImage.Image, icc: bytes | None, notes: list[str]) -> tuple[PILImage.Image, bytes | None]:
    """Through the file's own CMYK profile into sRGB when it has one; else Pillow's naive formula."""
    if icc:
        try:
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            converted = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(icc)), srgb, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError) as error:
            notes.append(f"CMYK converted to RGB without colour management (its ICC profile is unusable: {error}); colours are approximate")
            return image.convert("RGB"), None
        if converted is not None:
            notes.append("CMYK converted to sRGB through its ICC profile; the output carries an sRGB profile")
            return converted, srgb.tobytes()
    notes.append("CMYK converted to RGB without colour management (no ICC profile); colours are approximate")
    return image.convert("RGB"), None


def _exif_bytes(opened: PILImage.Image, exif: PILImage.Exif, orientation: int, source_format: str, notes: list[str]) -> bytes | None:
    """The EXIF block to carry over, with orientation reset to 1 (the pixels are upright now)."""
    if source_format == "tiff":
        # A TIFF's "EXIF" as Pillow sees it is its own IFD (strip offsets, sizes...), meaningless elsewhere.
        if isinstance(opened, TiffImagePlugin.TiffImageFile) and TIFF_EXIF_IFD in opened.tag_v2:
            notes.append("TIFF EXIF sub-IFD not carried over")
        return None
    raw = opened.info.get("exif")
    if not raw:
        return None
    if orientation not in (0, 1):
        return exif_with_orientation_reset(exif)
    return raw if raw.startswith(EXIF_PREFIX) else EXIF_PREFIX + raw


def _text_chunks(opened: PILImage.Image) -> dict[str, str]:
    """PNG tEXt/zTXt/iTXt chunks as plain strings (other formats have none we carry)."""
    if opened.format != "PNG":
        return {}
    return {str(key): str(value) for key, value in getattr(opened, "text", {}).items()}

"""A PNG encoder for what Pillow cannot write: 16-bit RGB, RGBA and gray+alpha (and 16-bit gray),
with the ICC profile, EXIF and text chunks the input had.

Pillow holds no 16-bit multi-channel image and OpenCV writes no metadata and no gray+alpha, so we
write the (simple) PNG container ourselves: IHDR, iCCP, eXIf, tEXt/iTXt, IDAT, IEND. Rows are
filtered per row with the usual minimum-sum-of-absolute-differences heuristic, which gives file
sizes close to libpng's. `PngRowWriter` writes it band by band (an image streamed from the engine);
`encode_png` is the same writer given the whole image at once.
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import numpy as np

from sr_cli.imageio.row_band import check_band

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPE_BY_CHANNELS = {1: 0, 2: 4, 3: 2, 4: 6}  # gray, gray+alpha, RGB, RGBA
IDAT_CHUNK_BYTES = 1 << 23
FILTER_BLOCK_BYTES = 1 << 21  # scanline bytes filtered at once: the five trial filters take ~20x this
COMPRESSION_LEVEL = 6


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def text_chunk(key: str, value: str) -> bytes | None:
    """tEXt when key and value are Latin-1, else iTXt (UTF-8); None for a key PNG cannot hold."""
    try:
        key_bytes = key.encode("latin-1")
    except UnicodeEncodeError:
        return None
    if not 1 <= len(key_bytes) <= 79 or b"\x00" in key_bytes:
        return None
    try:
        return chunk(b"tEXt", key_bytes + b"\x00" + value.encode("latin-1"))
    except UnicodeEncodeError:
        return chunk(b"iTXt", key_bytes + b"\x00\x00\x00" + b"\x00" + b"\x00" + value.encode("utf-8"))


def _paeth(left: np.ndarray, up: np.ndarray, up_left: np.ndarray) -> np.ndarray:
    estimate = left + up - up_left
    distance_left, distance_up, distance_up_left = np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left)
    return np.where(
        (distance_left <= distance_up) & (distance_left <= distance_up_left),
        left,
        np.where(distance_up <= distance_up_left, up, up_left),
    )


def filter_rows(rows: np.ndarray, bytes_per_pixel: int, previous: np.ndarray | None = None) -> bytes:
    """PNG-filter raw scanlines (uint8, one row per line); returns filter byte + filtered row per line.

    previous: the (unfiltered) scanline above the first row, None at the top of the image. Encoding
    filters read the *unfiltered* neighbours, so rows can be filtered in any grouping: the bytes of a
    band filtered after its predecessor are those the whole image would give.
    """
    out = bytearray()
    above = np.zeros(rows.shape[1], dtype=np.int16) if previous is None else previous.astype(np.int16)
    block_rows = max(1, FILTER_BLOCK_BYTES // max(rows.shape[1], 1))
    for start in range(0, rows.shape[0], block_rows):
        block = rows[start:start + block_rows].astype(np.int16)
        up = np.vstack([above[None, :], block[:-1]])
        left = np.zeros_like(block)
        left[:, bytes_per_pixel:] = block[:, :-bytes_per_pixel]
        up_left = np.zeros_like(block)
        up_left[:, bytes_per_pixel:] = up[:, :-bytes_per_pixel]
        candidates = np.stack([
            block,
            block - left,
            block - up,
            block - (left + up) // 2,
            block - _paeth(left, up, up_left),
        ]).astype(np.uint8)  # wraps modulo 256, as PNG defines
        cost = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)  # (5, rows)
        chosen = cost.argmin(axis=0)
        picked = candidates[chosen, np.arange(block.shape[0])]
        lines = np.concatenate([chosen.astype(np.uint8)[:, None], picked], axis=1)
        out += lines.tobytes()
        above = block[-1]
    return bytes(out)


class PngRowWriter:
    """A PNG written top to bottom as row bands arrive: signature, IHDR and metadata chunks first, then
    IDAT chunks as the deflate stream fills them, IEND on `finish`. Only the last scanline of a band and
    the compressor's window are kept between bands, so an image of any height costs a band's memory.

    sink: where the bytes go (a file's `write`); channels 1..4 (gray, gray+alpha, RGB, RGBA), 8 or 16 bits.
    """

    def __init__(self, sink: Callable[[bytes], object], *, width: int, height: int, channels: int, bit_depth: int,
                 icc: bytes | None, exif: bytes | None, text: dict[str, str]) -> None:
        self._sink = sink
        self._width, self._height, self._channels, self._bit_depth = width, height, channels, bit_depth
        self._rows_written = 0
        self._previous: np.ndarray | None = None  # the last scanline written, unfiltered
        self._compressor = zlib.compressobj(COMPRESSION_LEVEL)
        self._pending = bytearray()  # compressed bytes not yet in an IDAT chunk
        self.notes: list[str] = []  # what the image's metadata could not keep
        sink(PNG_SIGNATURE)
        sink(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, COLOR_TYPE_BY_CHANNELS[channels], 0, 0, 0)))
        if icc:
            sink(chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
        if exif:
            sink(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
        for key, value in text.items():
            encoded = text_chunk(key, value)
            if encoded is None:
                self.notes.append(f"text chunk {key!r} not kept: PNG keys are 1-79 Latin-1 characters")
            else:
                sink(encoded)

    def write_rows(self, pixels: np.ndarray) -> None:
        """The next rows: HxWxC with this image's width, channels and depth (uint8 for 8, uint16 for 16 bits)."""
        rows = check_band(pixels, width=self._width, channels=self._channels, bit_depth=self._bit_depth,
                          rows_written=self._rows_written, height=self._height, kind="PNG")
        if rows == 0:
            return
        row_bytes = self._width * self._channels * self._bit_depth // 8
        step = max(1, FILTER_BLOCK_BYTES // row_bytes)  # a block at a time: the filtered copy stays small
        for start in range(0, rows, step):
            block = pixels[start:start + step]
            samples = block.astype(">u2") if self._bit_depth == 16 else block
            scanlines = np.ascontiguousarray(samples).view(np.uint8).reshape(block.shape[0], -1)
            self._pending += self._compressor.compress(filter_rows(scanlines, self._channels * self._bit_depth // 8, self._previous))
            self._previous = scanlines[-1].copy()
        self._rows_written += rows
        while len(self._pending) >= IDAT_CHUNK_BYTES:
            self._sink(chunk(b"IDAT", bytes(self._pending[:IDAT_CHUNK_BYTES])))
            del self._pending[:IDAT_CHUNK_BYTES]

    def finish(self) -> None:
        """The last IDAT and IEND; ValueError when fewer rows than the header declares were written."""
        if self._rows_written != self._height:
            raise ValueError(f"{self._rows_written} rows written to a PNG {self._height} rows high")
        self._pending += self._compressor.flush()
        for start in range(0, len(self._pending), IDAT_CHUNK_BYTES):
            self._sink(chunk(b"IDAT", bytes(self._pending[start:start + IDAT_CHUNK_BYTES])))
        self._pending.clear()
        self._sink(chunk(b"IEND", b""))


def encode_png(pixels: np.ndarray, *, icc: bytes | None, exif: bytes | None, text: dict[str, str]) -> tuple[bytes, list[str]]:
    """Encode HxWxC (C 1..4) uint8/uint16 pixels as PNG; returns the bytes and notes on what was dropped."""
    height, width, channels = pixels.shape
    parts: list[bytes] = []
    writer = PngRowWriter(parts.append, width=width, height=height, channels=channels,
                          bit_depth=16 if pixels.dtype == np.uint16 else 8, icc=icc, exif=exif, text=text)
    writer.write_rows(pixels)
    writer.finish()
    return b"".join(parts), writer.notes

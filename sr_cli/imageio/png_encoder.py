"""A PNG encoder for what Pillow cannot write: 16-bit RGB, RGBA and gray+alpha (and 16-bit gray),
with the ICC profile, EXIF and text chunks the input had.

Pillow holds no 16-bit multi-channel image and OpenCV writes no metadata and no gray+alpha, so we
write the (simple) PNG container ourselves: IHDR, iCCP, eXIf, tEXt/iTXt, IDAT, IEND. Rows are
filtered per row with the usual minimum-sum-of-absolute-differences heuristic, which gives file
sizes close to libpng's.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPE_BY_CHANNELS = {1: 0, 2: 4, 3: 2, 4: 6}  # gray, gray+alpha, RGB, RGBA
IDAT_CHUNK_BYTES = 1 << 23
ROWS_PER_FILTER_BLOCK = 256  # bounds the memory the five trial filters take


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


def filter_rows(rows: np.ndarray, bytes_per_pixel: int) -> bytes:
    """PNG-filter raw scanlines (uint8, one row per line); returns filter byte + filtered row per line.

    Encoding filters read the *unfiltered* neighbours, so all rows can be computed at once.
    """
    out = bytearray()
    previous = np.zeros(rows.shape[1], dtype=np.int16)
    for start in range(0, rows.shape[0], ROWS_PER_FILTER_BLOCK):
        block = rows[start:start + ROWS_PER_FILTER_BLOCK].astype(np.int16)
        up = np.vstack([previous[None, :], block[:-1]])
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
        previous = block[-1]
    return bytes(out)


def encode_png(pixels: np.ndarray, *, icc: bytes | None, exif: bytes | None, text: dict[str, str]) -> tuple[bytes, list[str]]:
    """Encode HxWxC (C 1..4) uint8/uint16 pixels as PNG; returns the bytes and notes on what was dropped."""
    height, width, channels = pixels.shape
    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    samples = pixels.astype(">u2") if bit_depth == 16 else pixels.astype(np.uint8)
    rows = np.ascontiguousarray(samples).view(np.uint8).reshape(height, -1)
    notes: list[str] = []
    parts = [PNG_SIGNATURE, chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, COLOR_TYPE_BY_CHANNELS[channels], 0, 0, 0))]
    if icc:
        parts.append(chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if exif:
        parts.append(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    for key, value in text.items():
        encoded = text_chunk(key, value)
        if encoded is None:
            notes.append(f"text chunk {key!r} not kept: PNG keys are 1-79 Latin-1 characters")
        else:
            parts.append(encoded)
    compressed = zlib.compress(filter_rows(rows, channels * bit_depth // 8), 6)
    for start in range(0, max(len(compressed), 1), IDAT_CHUNK_BYTES):
        parts.append(chunk(b"IDAT", compressed[start:start + IDAT_CHUNK_BYTES]))
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts), notes

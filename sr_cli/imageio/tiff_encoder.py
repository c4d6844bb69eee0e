"""A baseline TIFF encoder for 16-bit pixels (gray, gray+alpha, RGB, RGBA) with the ICC profile.

Pillow holds no 16-bit multi-channel image and OpenCV writes no ICC profile and no gray+alpha, so we
write the TIFF ourselves: little-endian, one IFD, Deflate with the horizontal predictor, alpha
declared as unassociated (straight) ExtraSamples.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

SHORT, LONG, UNDEFINED = 3, 4, 7
TYPE_CODE = {SHORT: "H", LONG: "I", UNDEFINED: "B"}
STRIP_TARGET_BYTES = 1 << 16
MAX_CLASSIC_TIFF_BYTES = (1 << 32) - 1

COMPRESSION_DEFLATE = 8
PREDICTOR_HORIZONTAL = 2
PHOTOMETRIC_MIN_IS_BLACK, PHOTOMETRIC_RGB = 1, 2
EXTRA_SAMPLE_UNASSOCIATED_ALPHA = 2
TAG_ICC_PROFILE = 34675


def _horizontal_difference(pixels: np.ndarray) -> np.ndarray:
    """TIFF predictor 2: each sample minus the same channel's left neighbour, modulo 2**16."""
    difference = pixels.copy()
    difference[:, 1:] = pixels[:, 1:] - pixels[:, :-1]  # uint16 arithmetic wraps, as the predictor defines
    return difference


def encode_tiff16(pixels: np.ndarray, *, icc: bytes | None) -> bytes:
    """Encode HxWxC (C 1..4) uint16 pixels as a Deflate-compressed TIFF; raises ValueError past 4 GiB."""
    height, width, channels = pixels.shape
    predicted = _horizontal_difference(pixels.astype(np.uint16)).astype("<u2")
    row_bytes = width * channels * 2
    rows_per_strip = max(1, STRIP_TARGET_BYTES // row_bytes)
    strips = [zlib.compress(predicted[start:start + rows_per_strip].tobytes(), 6) for start in range(0, height, rows_per_strip)]

    entries: list[tuple[int, int, list[int] | bytes]] = [
        (256, LONG, [width]),
        (257, LONG, [height]),
        (258, SHORT, [16] * channels),
        (259, SHORT, [COMPRESSION_DEFLATE]),
        (262, SHORT, [PHOTOMETRIC_RGB if channels >= 3 else PHOTOMETRIC_MIN_IS_BLACK]),
        (273, LONG, [0] * len(strips)),  # strip offsets, filled in below
        (277, SHORT, [channels]),
        (278, LONG, [rows_per_strip]),
        (279, LONG, [len(strip) for strip in strips]),
        (284, SHORT, [1]),  # chunky (interleaved) samples
        (317, SHORT, [PREDICTOR_HORIZONTAL]),
        (339, SHORT, [1] * channels),  # unsigned integers
    ]
    if channels in (2, 4):
        entries.append((338, SHORT, [EXTRA_SAMPLE_UNASSOCIATED_ALPHA]))
    if icc:
        entries.append((TAG_ICC_PROFILE, UNDEFINED, icc))
    entries.sort(key=lambda entry: entry[0])

    # Layout: header (8 bytes) | strips | values too big for an entry | IFD; offsets count from 0.
    body = bytearray()
    strip_offsets = []
    for strip in strips:
        strip_offsets.append(8 + len(body))
        body += strip
    packed_entries: list[bytes] = []
    for tag, kind, values in entries:
        if tag == 273:
            values = strip_offsets
        count = len(values)
        payload = bytes(values) if kind == UNDEFINED else struct.pack(f"<{count}{TYPE_CODE[kind]}", *values)
        if len(payload) <= 4:
            field_value = payload.ljust(4, b"\x00")
        else:
            body += b"\x00" * (len(body) % 2)  # values start on a word boundary
            field_value = struct.pack("<I", 8 + len(body))
            body += payload
        packed_entries.append(struct.pack("<HHI", tag, kind, count) + field_value)
    body += b"\x00" * (len(body) % 2)
    ifd_offset = 8 + len(body)
    ifd = struct.pack("<H", len(packed_entries)) + b"".join(packed_entries) + struct.pack("<I", 0)
    data = b"II*\x00" + struct.pack("<I", ifd_offset) + bytes(body) + ifd
    if len(data) > MAX_CLASSIC_TIFF_BYTES:
        raise ValueError("the image needs more than 4 GiB as TIFF")
    return data

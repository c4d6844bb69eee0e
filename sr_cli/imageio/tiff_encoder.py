"""A baseline TIFF encoder (8 or 16 bits; gray, gray+alpha, RGB, RGBA) with the ICC profile, written strip
by strip as row bands arrive.

Pillow holds no 16-bit multi-channel image and OpenCV writes no ICC profile and no gray+alpha, so we
write the TIFF ourselves: little-endian, one IFD, Deflate with the horizontal predictor, alpha
declared as unassociated (straight) ExtraSamples. Layout: header | strips | values too big for an
entry | IFD; the header's IFD offset is filled in at the end (the sink must be seekable), so only a
strip's rows and the strip table are held, whatever the image's height. 8-bit images that need their
EXIF kept go through Pillow instead (sr_cli.imageio.writer).
"""
from __future__ import annotations

import io
import struct
import zlib
from typing import BinaryIO

import numpy as np

from sr_cli.imageio.row_band import check_band

SHORT, LONG, UNDEFINED = 3, 4, 7
TYPE_CODE = {SHORT: "H", LONG: "I", UNDEFINED: "B"}
STRIP_TARGET_BYTES = 1 << 16
MAX_CLASSIC_TIFF_BYTES = (1 << 32) - 1
HEADER_BYTES = 8

COMPRESSION_DEFLATE = 8
PREDICTOR_HORIZONTAL = 2
PHOTOMETRIC_MIN_IS_BLACK, PHOTOMETRIC_RGB = 1, 2
EXTRA_SAMPLE_UNASSOCIATED_ALPHA = 2
TAG_ICC_PROFILE = 34675


class TiffTooLargeError(ValueError):
    """Classic TIFF addresses 4 GiB; the image needs more."""


def _horizontal_difference(pixels: np.ndarray) -> np.ndarray:
    """TIFF predictor 2: each sample minus the same channel's left neighbour, modulo 2**bits."""
    difference = pixels.copy()
    difference[:, 1:] = pixels[:, 1:] - pixels[:, :-1]  # unsigned arithmetic wraps, as the predictor defines
    return difference


class TiffStripWriter:
    """Rows in, Deflate strips out to `sink` (a seekable binary file positioned at its start)."""

    def __init__(self, sink: BinaryIO, *, width: int, height: int, channels: int, bit_depth: int,
                 icc: bytes | None) -> None:
        self._sink = sink
        self._width, self._height, self._channels, self._bit_depth = width, height, channels, bit_depth
        self._icc = icc
        self._dtype = np.dtype("<u2") if bit_depth == 16 else np.dtype(np.uint8)
        row_bytes = width * channels * self._dtype.itemsize
        self.rows_per_strip = max(1, STRIP_TARGET_BYTES // row_bytes)
        self._held: list[np.ndarray] = []  # rows of the strip being filled
        self._held_rows = 0
        self._rows_written = 0
        self._offsets: list[int] = []
        self._counts: list[int] = []
        self._position = HEADER_BYTES
        sink.write(b"II*\x00" + struct.pack("<I", 0))  # the IFD offset is filled in by `finish`

    def write_rows(self, pixels: np.ndarray) -> None:
        """The next rows: HxWxC with this image's width and channels, uint8 (8 bits) or uint16 (16 bits)."""
        rows = check_band(pixels, width=self._width, channels=self._channels, bit_depth=self._bit_depth,
                          rows_written=self._rows_written, height=self._height, kind="TIFF")
        self._rows_written += rows
        start = 0
        while start < rows:
            take = min(self.rows_per_strip - self._held_rows, rows - start)
            self._held.append(pixels[start:start + take])
            self._held_rows += take
            start += take
            if self._held_rows == self.rows_per_strip:
                self._flush_strip()

    def finish(self) -> None:
        """The strip table and the IFD; ValueError when rows are missing, TiffTooLargeError past 4 GiB."""
        if self._rows_written != self._height:
            raise ValueError(f"{self._rows_written} rows written to a TIFF {self._height} rows high")
        if self._held_rows:
            self._flush_strip()
        channels = self._channels
        entries: list[tuple[int, int, list[int] | bytes]] = [
            (256, LONG, [self._width]),
            (257, LONG, [self._height]),
            (258, SHORT, [self._bit_depth] * channels),
            (259, SHORT, [COMPRESSION_DEFLATE]),
            (262, SHORT, [PHOTOMETRIC_RGB if channels >= 3 else PHOTOMETRIC_MIN_IS_BLACK]),
            (273, LONG, self._offsets),
            (277, SHORT, [channels]),
            (278, LONG, [self.rows_per_strip]),
            (279, LONG, self._counts),
            (284, SHORT, [1]),  # chunky (interleaved) samples
            (317, SHORT, [PREDICTOR_HORIZONTAL]),
            (339, SHORT, [1] * channels),  # unsigned integers
        ]
        if channels in (2, 4):
            entries.append((338, SHORT, [EXTRA_SAMPLE_UNASSOCIATED_ALPHA]))
        if self._icc:
            entries.append((TAG_ICC_PROFILE, UNDEFINED, self._icc))
        entries.sort(key=lambda entry: entry[0])
        body = bytearray()  # what follows the strips, starting at self._position
        packed_entries: list[bytes] = []
        for tag, kind, values in entries:
            count = len(values)
            payload = bytes(values) if kind == UNDEFINED else struct.pack(f"<{count}{TYPE_CODE[kind]}", *values)
            if len(payload) <= 4:
                field_value = payload.ljust(4, b"\x00")
            else:
                body += b"\x00" * ((self._position + len(body)) % 2)  # values start on a word boundary
                field_value = struct.pack("<I", self._position + len(body))
                body += payload
            packed_entries.append(struct.pack("<HHI", tag, kind, count) + field_value)
        body += b"\x00" * ((self._position + len(body)) % 2)
        ifd_offset = self._position + len(body)
        body += struct.pack("<H", len(packed_entries)) + b"".join(packed_entries) + struct.pack("<I", 0)
        self._check_size(len(body))
        self._sink.write(bytes(body))
        end = self._sink.tell()
        self._sink.seek(4)
        self._sink.write(struct.pack("<I", ifd_offset))
        self._sink.seek(end)

    def _flush_strip(self) -> None:
        rows = np.concatenate(self._held) if len(self._held) > 1 else self._held[0]
        predicted = _horizontal_difference(rows)
        strip = zlib.compress(np.ascontiguousarray(predicted, dtype=self._dtype).tobytes(), 6)
        self._check_size(len(strip))
        self._offsets.append(self._position)
        self._counts.append(len(strip))
        self._sink.write(strip)
        self._position += len(strip)
        self._held, self._held_rows = [], 0

    def _check_size(self, more: int) -> None:
        if self._position + more > MAX_CLASSIC_TIFF_BYTES:
            raise TiffTooLargeError("the image needs more than 4 GiB as TIFF")


def encode_tiff(pixels: np.ndarray, *, icc: bytes | None) -> bytes:
    """Encode HxWxC (C 1..4) uint8/uint16 pixels as a Deflate-compressed TIFF; TiffTooLargeError past 4 GiB."""
    height, width, channels = pixels.shape
    buffer = io.BytesIO()
    writer = TiffStripWriter(buffer, width=width, height=height, channels=channels,
                             bit_depth=16 if pixels.dtype == np.uint16 else 8, icc=icc)
    writer.write_rows(pixels)
    writer.finish()
    return buffer.getvalue()

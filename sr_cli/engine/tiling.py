"""The tile grid: which part of the image each tile produces (its core) and what it sees (its window).

Coordinates are input pixels of the image padded to a multiple of `size_multiple` (see `pad_to_multiple`).
Cores partition the padded image; a window is its core grown by `overlap` on every side, clipped to the
image, with both ends on multiples of `size_multiple`. Models whose function is only equivariant to shifts
by their multiple (RRDB x2 pixel-unshuffles its input) then see every tile exactly as they see the whole
image, and windows never need padding: the only padding is at the true bottom/right border.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass(frozen=True)
class Span:
    """A half-open interval [start, stop) of one axis."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Tile:
    """A core (the pixels this tile is responsible for) and its window (what the model sees)."""

    rows: Span
    cols: Span
    window_rows: Span
    window_cols: Span


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def round_down(value: int, multiple: int) -> int:
    return (value // multiple) * multiple


def split_axis(length: int, tile: int, multiple: int = 1) -> list[Span]:
    """Cut [0, length) into the fewest cores of at most `tile` pixels (rounded up to `multiple`).

    Cores are balanced instead of `tile, tile, ..., remainder`: a 1-pixel remainder would cost a whole
    window of context for one pixel of output. Every boundary is a multiple of `multiple`; `length`
    must be one (the image was padded). A tile larger than the image gives one core.
    """
    if length <= 0 or length % multiple:
        raise ValueError(f"axis length {length} must be a positive multiple of {multiple}")
    tile = max(round_up(max(tile, 1), multiple), multiple)
    units = length // multiple  # work in units of `multiple` so boundaries stay aligned
    count = math.ceil(length / tile)
    bounds = [round(i * units / count) * multiple for i in range(count + 1)]
    return [Span(a, b) for a, b in pairwise(bounds) if b > a]


def window_of(core: Span, overlap: int, length: int, multiple: int = 1) -> Span:
    """`core` grown by `overlap` each side, clipped to [0, length), ends aligned outward to `multiple`."""
    return Span(max(0, round_down(core.start - overlap, multiple)), min(length, round_up(core.stop + overlap, multiple)))


def make_tile(rows: Span, cols: Span, overlap: int, height: int, width: int, multiple: int) -> Tile:
    return Tile(rows, cols, window_of(rows, overlap, height, multiple), window_of(cols, overlap, width, multiple))


def tile_grid(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> list[Tile]:
    """Row-major tiles covering a (padded) height x width image; `tile` 0 means one tile (whole image)."""
    row_spans = split_axis(height, tile or height, multiple)
    col_spans = split_axis(width, tile or width, multiple)
    return [make_tile(r, c, overlap, height, width, multiple) for r in row_spans for c in col_spans]


def halve(span: Span, minimum: int, multiple: int) -> list[Span]:
    """Two aligned halves of `span`, or [span] when a half would be shorter than `minimum`."""
    if span.length < 2 * max(minimum, multiple):
        return [span]
    middle = span.start + round_up(span.length // 2, multiple)
    if middle >= span.stop:
        return [span]
    return [Span(span.start, middle), Span(middle, span.stop)]


def pad_to_multiple(image: Tensor, multiple: int) -> Tensor:
    """Reflect-pad [C,H,W] at the bottom/right to multiples of `multiple` (the only padding the engine adds).

    Reflection keeps the statistics of the border (zeros would be a dark frame the model sharpens);
    the padded rows/columns are cropped from the output. An image smaller than the padding replicates.
    """
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return image
    if image.dtype == torch.uint16:  # torch pads no uint16: the same bits as int16 (padding only copies)
        return pad_to_multiple(image.view(torch.int16), multiple).view(torch.uint16)
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(image.unsqueeze(0), (0, pad_w, 0, pad_h), mode=mode).squeeze(0)


def crop(image: Tensor, rows: Span, cols: Span) -> Tensor:
    return image[..., rows.start:rows.stop, cols.start:cols.stop]


__all__ = ["Span", "Tile", "split_axis", "window_of", "make_tile", "tile_grid", "halve", "pad_to_multiple", "crop",
           "round_up", "round_down"]

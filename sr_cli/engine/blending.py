"""Feathered blending weights: raised-cosine ramps over the overlap that sum to exactly 1 everywhere.

Along one axis of length L cut at core boundaries 0 = b_0 < b_1 < ... < b_n = L, let H_b be a smooth step
that rises from 0 to 1 over [b - r, b + r] (r = the feather radius, see `feather_radius`) with H_b(t) + H_b(2b - t) = 1 (odd symmetry about
b), and let H_0 = 1 and H_L = 0 (no ramp at the true borders). Tile i gets

    phi_i = H_{b_i} - H_{b_(i+1)}

which is >= 0 (H is non-decreasing in the position and H_{b_i} >= H_{b_(i+1)} because b_i < b_(i+1)) and
is 0 outside [b_i - r, b_(i+1) + r]. Where the feather goes is `blend_plan`'s choice: on top of the context
(windows reach overlap + r past the core, so every output pixel a tile contributes to has `overlap` pixels of
real context in it), inside it once the context reaches the model's min_overlap (windows reach `overlap`: at a
boundary both tiles have that much context, and a tile with less is faded out), and no feather at all once
it reaches the exact receptive radius (tiles then equal the whole pass). The sum over tiles telescopes:

    sum_i phi_i = H_{b_0} - H_{b_n} = 1 - 0 = 1

for ANY ramp width, even when ramps of neighbouring boundaries overlap (cores narrower than 2r), and also
after a tile is split in two on out-of-memory (the new boundary's H appears once with each sign). A 2-D
tile's weight is phi_i(y) * psi_j(x), whose sum is (sum phi)(sum psi) = 1. So the blend is a convex
combination of tile outputs: where tiles agree it reproduces them exactly, where they differ (context
effects near a window edge) the tile with more context dominates, and no normalisation pass is needed.

The raised cosine 0.5 * (1 + sin(pi t / 2r)) has zero slope at both ends, so no kink becomes a visible line.
Weights are evaluated at output pixel centres, mapped back to input coordinates ((x + 0.5) / scale).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sr_cli.engine.tiling import Span, Tile

MAX_FEATHER = 16  # input pixels; differences left at >= min_overlap context are < 1/255, 16 px hide them


def feather_radius(overlap: int) -> int:
    """Half-width of the cross-fade at each core boundary: overlap // 2, at most MAX_FEATHER (0: hard seams)."""
    return min(overlap // 2, MAX_FEATHER)


@dataclass(frozen=True)
class BlendPlan:
    """How far a window reaches past its core (input pixels) and the cross-fade's half-width inside that."""

    reach: int
    feather: int


def blend_plan(overlap: int, *, min_overlap: int | None = None, exact_overlap: int | None = None) -> BlendPlan:
    """Where the cross-fade goes for `overlap` pixels of context (the one place the engine decides it).

    - overlap >= exact_overlap (the model's exact receptive radius): every tile equals the whole-image pass
      up to float rounding, so no fade is needed: hard seams, windows of core + 2 * overlap.
    - overlap >= min_overlap (the context measured to keep tiles within 1 level of the whole pass): the
      fade lies inside the context, windows of core + 2 * overlap. A pixel at a core boundary has `overlap`
      context in both tiles; one `x` px past it has overlap - x in the tile it leaves, whose weight falls
      to 0 as x reaches the feather, and overlap + x in the tile it enters.
    - otherwise (a context below what the model needs, or min_overlap unknown): the fade is added on top,
      windows of core + 2 * (overlap + feather), so every weighted pixel keeps `overlap` of context.
    """
    if exact_overlap is not None and overlap >= exact_overlap:
        return BlendPlan(reach=overlap, feather=0)
    feather = feather_radius(overlap)
    if min_overlap is not None and overlap >= min_overlap:
        return BlendPlan(reach=overlap, feather=feather)
    return BlendPlan(reach=overlap + feather, feather=feather)


def smooth_step(positions: Tensor, boundary: float, radius: float) -> Tensor:
    """H_boundary at `positions` (input-pixel coordinates): 0 before the ramp, 1 after, raised cosine between."""
    t = positions - boundary
    if radius <= 0:
        return (t > 0).to(positions.dtype)
    ramp = 0.5 * (1.0 + torch.sin(t.clamp(-radius, radius) * (math.pi / (2.0 * radius))))
    return ramp


def axis_weights(core: Span, window: Span, length: int, scale: int, radius: float) -> Tensor:
    """phi for the output pixels of `window` (length window.length * scale), in float64."""
    out_index = torch.arange(window.start * scale, window.stop * scale, dtype=torch.float64)
    positions = (out_index + 0.5) / scale
    rise = torch.ones_like(positions) if core.start <= 0 else smooth_step(positions, core.start, radius)
    fall = torch.zeros_like(positions) if core.stop >= length else smooth_step(positions, core.stop, radius)
    return rise - fall


def tile_weights(tile: Tile, height: int, width: int, scale: int, radius: float) -> Tensor:
    """[H_out, W_out] float32 weights of `tile`'s output (its window times `scale`)."""
    rows = axis_weights(tile.rows, tile.window_rows, height, scale, radius)
    cols = axis_weights(tile.cols, tile.window_cols, width, scale, radius)
    return torch.outer(rows.to(torch.float32), cols.to(torch.float32))  # float32: half the memory of float64

"""Geometric self-ensemble (EDSR, Lim et al. 2017, "+" models): the 8 symmetries of the square.

View k (0..7) of x is: transpose H and W if k & 4, then flip H if k & 1, then flip W if k & 2.
Every SR network here is run on each view, the view is undone on its output (flips first, then the
transpose: the inverse of a composition is the reverse composition) and the 8 results are averaged in
float32 on the device. Views with the same shape are batched (H == W: one batch of 8, else two of 4),
up to `max_batch_pixels` input pixels per forward: on the CPU a batch pays only while it is small (8 views
of a 24x24 RRDB window took 0.69x the time of 8 single forwards; of 48x48 EDSR 1.00x; of 96x96 RRDB and
192x192 EDSR 1.08x and 1.11x: the larger working set leaves the caches; docs/benchmarks.md, goal 4).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

VIEWS = tuple(range(8))
CPU_VIEW_BATCH_PIXELS = 16384  # input pixels per forward on the CPU (module doc): 8 views of up to 45x45


def apply_view(x: Tensor, k: int) -> Tensor:
    """View k of an [..., H, W] tensor."""
    if k & 4:
        x = x.transpose(-2, -1)
    dims = [d for d, bit in ((-2, 1), (-1, 2)) if k & bit]
    return x.flip(dims) if dims else x


def undo_view(y: Tensor, k: int) -> Tensor:
    """Inverse of `apply_view(., k)`."""
    dims = [d for d, bit in ((-2, 1), (-1, 2)) if k & bit]
    if dims:
        y = y.flip(dims)
    return y.transpose(-2, -1) if k & 4 else y


def ensemble_forward(run: Callable[[Tensor], Tensor], x: Tensor, *, max_batch_pixels: int | None = None) -> Tensor:
    """Mean over the 8 views of undo(run(view(x))) for a batch x [N,C,H,W]; float32 result. Views of one
    shape run as one batch, or as near-equal batches of at most `max_batch_pixels` input pixels each (at
    least one view per forward); the views are summed in the same order either way."""
    shapes = [VIEWS] if x.shape[-2] == x.shape[-1] else [VIEWS[:4], VIEWS[4:]]
    view_pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    total: Tensor | None = None
    batch = x.shape[0]
    for group in (chunk for same_shape in shapes for chunk in view_batches(same_shape, view_pixels, max_batch_pixels)):
        stacked = torch.cat([apply_view(x, k) for k in group], dim=0) if len(group) > 1 else apply_view(x, group[0])
        outputs = run(stacked).float()
        for position, k in enumerate(group):
            restored = undo_view(outputs[position * batch:(position + 1) * batch], k)
            total = restored.clone() if total is None else total.add_(restored)
    assert total is not None
    return total / len(VIEWS)


def view_batches(views: tuple[int, ...], view_pixels: int, max_batch_pixels: int | None) -> list[tuple[int, ...]]:
    """`views` cut into the fewest near-equal consecutive batches of at most max_batch_pixels each."""
    if max_batch_pixels is None:
        return [views]
    most = max(1, max_batch_pixels // max(view_pixels, 1))  # views per forward within the limit
    size = math.ceil(len(views) / math.ceil(len(views) / most))  # as many forwards as needed, balanced
    return [views[start:start + size] for start in range(0, len(views), size)]

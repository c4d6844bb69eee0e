"""Geometric self-ensemble (EDSR, Lim et al. 2017, "+" models): the 8 symmetries of the square.

View k (0..7) of x is: transpose H and W if k & 4, then flip H if k & 1, then flip W if k & 2.
Every SR network here is run on each view, the view is undone on its output (flips first, then the
transpose: the inverse of a composition is the reverse composition) and the 8 results are averaged in
float32 on the device. Views with the same shape are batched (H == W: one batch of 8, else two of 4).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

VIEWS = tuple(range(8))


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


def ensemble_forward(run: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Mean over the 8 views of undo(run(view(x))) for a batch x [N,C,H,W]; float32 result."""
    groups = [VIEWS] if x.shape[-2] == x.shape[-1] else [VIEWS[:4], VIEWS[4:]]
    total: Tensor | None = None
    batch = x.shape[0]
    for group in groups:
        stacked = torch.cat([apply_view(x, k) for k in group], dim=0)
        outputs = run(stacked).float()
        for position, k in enumerate(group):
            restored = undo_view(outputs[position * batch:(position + 1) * batch], k)
            total = restored.clone() if total is None else total.add_(restored)
    assert total is not None
    return total / len(VIEWS)

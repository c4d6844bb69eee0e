"""Numeric precision: fp32, or bf16/fp16 through autocast with a per-tile fp32 redo on NaN/Inf.

Autocast (rather than casting the weights) keeps the fp32 weights for the redo and works for any callable.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor

from sr_cli.errors import DeviceError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """auto = fp32 on the CPU (bf16 there is emulated on most CPUs and loses ~3 significant bits),
    bf16 on GPUs that support it (fp32 range: no overflow), else fp16. fp16 on the CPU is refused."""
    text = requested.strip().lower()
    if text not in PRECISIONS:
        raise DeviceError(f"--precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if text == "auto":
        if device.type == "cpu":
            return "fp32"
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp16"
    if text == "fp16" and device.type == "cpu":
        raise DeviceError("fp16 is not supported on CPU; use --precision fp32 or bf16")
    return text  # type: ignore[return-value]


@contextlib.contextmanager
def autocast_for(device: torch.device, precision: Precision) -> Iterator[None]:
    """Autocast to the half type for bf16/fp16; nothing for fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def run_at_precision(
    compute: Callable[[Tensor], Tensor], x: Tensor, device: torch.device, precision: Precision
) -> tuple[Tensor, bool]:
    """float32 compute(x) at `precision`; a half-precision result with NaN/Inf is recomputed in fp32.

    Returns (result, redone_in_fp32). fp16 overflows above 65504 (deep residual nets' features can);
    a black or speckled tile is never accepted.
    """
    with autocast_for(device, precision):
        result = compute(x).float()
    if precision != "fp32" and not bool(torch.isfinite(result).all()):
        return compute(x).float(), True
    return result, False

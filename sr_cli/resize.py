"""MATLAB-compatible bicubic ``imresize`` in numpy (the benchmark LR files were made with it).

What MATLAB's ``imresize(img, scale, 'bicubic')`` does, and what this module reproduces bit for bit:

- Keys cubic kernel with a = -0.5, support [-2, 2].
- When shrinking (scale < 1) the kernel is stretched by 1/scale (antialiasing) and scaled by ``scale``.
- Output pixel x (1-based) samples input coordinate ``u = x/scale + 0.5*(1 - 1/scale)``.
- Taps outside the image are mirrored (symmetric padding: ... 2 1 | 1 2 3 ... n | n n-1 ...).
- Weights are normalised to sum to 1 per output pixel.
- The image is resized one dimension at a time; the dimension with the smaller scale goes first and,
  for equal scales, rows (the height) first.
- Integer input (uint8, uint16) is rounded (half away from zero) and saturated after EACH 1-D pass, the
  way MATLAB's imresizemex returns the input class. Float input is never rounded.
- Output size is ``ceil(n * scale)`` per dimension.

The benchmark LR images (EDSR package: Set5, Set14, B100, Urban100) are ``imresize(modcrop(HR, s), 1/s)``
on uint8; ``downscale_like_benchmark`` makes them byte-identical (tests/test_resize_benchmark.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sr_cli.errors import InputError

__all__ = ["imresize", "modcrop", "downscale_like_benchmark", "AxisWeights", "axis_weights"]

_KERNEL_WIDTH = 4.0  # Keys cubic support is [-2, 2]
_INTEGER_DTYPES = (np.uint8, np.uint16)
_FLOAT_DTYPES = (np.float32, np.float64)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys (1981) cubic convolution kernel with a = -0.5, written exactly as MATLAB's ``cubic``."""
    absx = np.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (1 < absx) & (absx <= 2)
    )


@dataclass(frozen=True)
class AxisWeights:
    """Sparse 1-D resampling: ``out[i] = sum_k weights[i, k] * in[indices[i, k]]`` (0-based indices)."""

    indices: np.ndarray  # (out_length, taps) int64, already mirrored into [0, in_length)
    weights: np.ndarray  # (out_length, taps) float64, rows sum to 1


def axis_weights(in_length: int, out_length: int, scale: float) -> AxisWeights:
    """MATLAB's ``contributions(in_length, out_length, scale, @cubic, 4, true)``, 0-based."""
    if scale < 1:  # antialiasing: stretch the kernel so it low-passes at the output's Nyquist rate
        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)

        kernel_width = _KERNEL_WIDTH / scale
    else:
        kernel = _cubic
        kernel_width = _KERNEL_WIDTH
    # Same floating-point expressions, in the same order, as imresize.m, so that u is identical.
    x = np.arange(1, out_length + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may fall outside
    weights = kernel(u - indices)
    weights = weights / np.sum(weights, axis=1, keepdims=True)
    # Symmetric (mirror) borders: aux = [1..n, n..1], index by (i-1) mod 2n.
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    mirrored = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)  # MATLAB drops all-zero tap columns; it changes nothing but speed
    return AxisWeights(indices=np.ascontiguousarray(mirrored[:, keep]), weights=np.ascontiguousarray(weights[:, keep]))


_BLOCK_BYTES = 1 << 20  # work on ~1 MiB slabs so gathers and multiply-adds stay in cache


def _resize_axis(image: np.ndarray, axis: int, plan: AxisWeights, work_dtype: np.dtype) -> np.ndarray:
    """One 1-D pass along ``axis`` (0: height, 1: width), accumulated in ``work_dtype``.

    out[i] = sum_k w[i, k] * in[idx[i, k]] as a few gather + multiply-add sweeps, one per tap, done slab
    by slab (rows of the output for axis 0, rows of the input for axis 1) to stay cache-resident.
    """
    weights = plan.weights.astype(work_dtype, copy=False)
    indices = plan.indices
    taps = indices.shape[1]
    out_shape = list(image.shape)
    out_shape[axis] = indices.shape[0]
    out = np.empty(out_shape, dtype=work_dtype)
    scratch_shape = list(out_shape)
    if axis == 0:
        row_bytes = max(1, int(np.prod(out_shape[1:])) * out.itemsize)
        step = max(1, _BLOCK_BYTES // row_bytes)
        extra = (1,) * (image.ndim - 1)
        for start in range(0, out_shape[0], step):
            stop = min(start + step, out_shape[0])
            block = out[start:stop]
            scratch = np.empty(block.shape, dtype=work_dtype)
            for tap in range(taps):
                np.multiply(weights[start:stop, tap].reshape(-1, *extra), image[indices[start:stop, tap]], out=scratch)
                if tap == 0:
                    block[...] = scratch
                else:
                    block += scratch
        return out
    row_bytes = max(1, int(np.prod(out_shape[1:])) * out.itemsize)
    step = max(1, _BLOCK_BYTES // row_bytes)
    extra = (1,) * (image.ndim - 2)
    for start in range(0, out_shape[0], step):
        stop = min(start + step, out_shape[0])
        block = out[start:stop]
        source = image[start:stop]
        scratch_shape[0] = stop - start
        scratch = np.empty(scratch_shape, dtype=work_dtype)
        for tap in range(taps):
            np.multiply(weights[:, tap].reshape(1, -1, *extra), source[:, indices[:, tap]], out=scratch)
            if tap == 0:
                block[...] = scratch
            else:
                block += scratch
    return out


def _round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's conversion to an unsigned integer class: round half away from zero, then saturate.

    For unsigned targets floor(x + 0.5) then clipping at 0 is the same thing (negative values saturate to 0
    either way), and it can run in place on the float buffer.
    """
    info = np.iinfo(dtype)
    values += 0.5
    np.floor(values, out=values)
    np.clip(values, info.min, info.max, out=values)
    return values.astype(dtype)


def _output_shape(in_shape: tuple[int, int], scale: float | None, output_shape: tuple[int, int] | None) -> tuple[
    tuple[int, int], tuple[float, float]
]:
    if (scale is None) == (output_shape is None):
        raise InputError("imresize: give exactly one of scale or output_shape")
    if scale is not None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise InputError(f"imresize: scale must be a positive finite number, got {scale!r}")
        # MATLAB: output size = ceil(scale * input size); the given scale (not out/in) drives the kernel.
        out = (int(math.ceil(scale * in_shape[0])), int(math.ceil(scale * in_shape[1])))
        return out, (float(scale), float(scale))
    assert output_shape is not None
    if len(output_shape) != 2 or any(int(n) != n or n < 1 for n in output_shape):
        raise InputError(f"imresize: output_shape must be two positive integers (height, width), got {output_shape!r}")
    out = (int(output_shape[0]), int(output_shape[1]))
    return out, (out[0] / in_shape[0], out[1] / in_shape[1])


def imresize(
    image: np.ndarray, scale: float | None = None, *, output_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Bicubic resize exactly like MATLAB's ``imresize(image, scale, 'bicubic')``.

    ``image`` is HW or HWC, uint8/uint16 (rounded after each 1-D pass, as MATLAB does) or float32/float64
    (never rounded, never clipped). The dtype is preserved. Give ``scale`` (output = ceil(n * scale)) or
    ``output_shape`` = (height, width).
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise InputError(f"imresize: expected an HW or HWC numpy array, got {getattr(image, 'shape', type(image))}")
    if image.dtype not in _INTEGER_DTYPES + _FLOAT_DTYPES:
        raise InputError(f"imresize: unsupported dtype {image.dtype}; use uint8, uint16, float32 or float64")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"imresize: empty image of shape {image.shape}")
    in_shape = (image.shape[0], image.shape[1])
    out_shape, scales = _output_shape(in_shape, scale, output_shape)
    is_integer = image.dtype in _INTEGER_DTYPES
    # Integer input accumulates in float64 like imresizemex; float32 stays float32 (12 MP photos).
    work_dtype = np.dtype(np.float64) if is_integer else image.dtype
    # MATLAB: order = sort(scale) (stable) -> the smaller scale first, rows first on a tie.
    order = sorted((0, 1), key=lambda axis: scales[axis])
    result = image
    for axis in order:
        plan = axis_weights(in_shape[axis], out_shape[axis], scales[axis])
        result = _resize_axis(result, axis, plan, work_dtype)
        if is_integer:
            result = _round_to(result, image.dtype)
    return np.ascontiguousarray(result)


def modcrop(image: np.ndarray, s: int) -> np.ndarray:
    """Crop bottom/right so height and width are multiples of ``s`` (MATLAB ``modcrop``)."""
    if s < 1:
        raise InputError(f"modcrop: scale must be >= 1, got {s}")
    height = image.shape[0] - image.shape[0] % s
    width = image.shape[1] - image.shape[1] % s
    if height == 0 or width == 0:
        raise InputError(f"modcrop: image of {image.shape[1]}x{image.shape[0]} is smaller than the scale {s}")
    return image[:height, :width]


def downscale_like_benchmark(hr: np.ndarray, s: int) -> np.ndarray:
    """LR the way the EDSR benchmark files were made: ``imresize(modcrop(hr, s), 1/s, 'bicubic')``."""
    return imresize(modcrop(hr, s), 1.0 / s)

"""RGB <-> YCbCr, ITU-R BT.601 "studio swing", with MATLAB ``rgb2ycbcr`` / ``ycbcr2rgb`` conventions.

For RGB in [0, 1]:  Y  = (16  + 65.481 R + 128.553 G +  24.966 B) / 255   -> [16/255, 235/255]
                    Cb = (128 - 37.797 R -  74.203 G + 112.000 B) / 255   -> [16/255, 240/255]
                    Cr = (128 + 112.000 R -  93.786 G -  18.214 B) / 255
This is what SRCNN, VDSR, EDSR and BasicSR measure PSNR/SSIM on (Y only). It is NOT the full-range JPEG
YCbCr that PIL's ``convert('YCbCr')`` produces.

numpy functions work on HWC arrays (channels last); torch functions on tensors whose channel dimension
is ``-3`` (NCHW or CHW). Float data stays in its dtype (float32 in, float32 out); ``rgb_to_ycbcr_uint8``
reproduces MATLAB on uint8 input, which rounds (half away from zero) to uint8.
"""
from __future__ import annotations

import numpy as np
import torch

from sr_cli.errors import InputError

__all__ = [
    "GRAY_FROM_RGB",
    "RGB_TO_YCBCR",
    "YCBCR_OFFSET",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "rgb_to_y",
    "rgb_to_ycbcr_uint8",
    "rgb_to_y_uint8",
    "rgb_to_ycbcr_torch",
    "ycbcr_to_rgb_torch",
    "rgb_to_y_torch",
]

# MATLAB's origT and origOffset (for 8-bit levels); rows give Y, Cb, Cr.
RGB_TO_YCBCR = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)

# Full-range luma weights (ITU-R BT.601, what Pillow's convert("L") uses) that fold the RGB result of a
# grayscale input back to one channel, so a gray image round-trips the way users expect. `sr upscale`
# and `sr eval` both use these; PSNR/SSIM use the studio-swing Y above, never these.
GRAY_FROM_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# On [0,1] data MATLAB uses T = (1/255) * origT and offset = (1/255) * origOffset; same products here.
_FORWARD = (1.0 / 255.0) * RGB_TO_YCBCR
_FORWARD_OFFSET = (1.0 / 255.0) * YCBCR_OFFSET
# ycbcr2rgb: T = 255 * inv(origT), offset = 255 * inv(origT) * origOffset / 255 (double data).
_INVERSE = 255.0 * np.linalg.inv(RGB_TO_YCBCR)
_INVERSE_OFFSET = np.linalg.inv(RGB_TO_YCBCR) @ YCBCR_OFFSET


def _check_three_channels(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{what}: expected an HxWx3 array, got shape {getattr(image, 'shape', type(image))}")


def _float_dtype(image: np.ndarray, what: str) -> np.dtype:
    if image.dtype not in (np.float32, np.float64):
        raise InputError(f"{what}: expected float32/float64 data in [0, 1], got {image.dtype} (uint8: use rgb_to_ycbcr_uint8)")
    return image.dtype


def _apply(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Per pixel: matrix @ (r, g, b) + offset, accumulated channel by channel like MATLAB's imlincomb."""
    m = matrix.astype(dtype)
    o = offset.astype(dtype)
    channels = [image[..., 0], image[..., 1], image[..., 2]]
    out = np.empty(image.shape, dtype=dtype)
    for row in range(3):
        out[..., row] = m[row, 0] * channels[0] + m[row, 1] * channels[1] + m[row, 2] * channels[2] + o[row]
    return out


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 float RGB in [0, 1] -> YCbCr in [0, 1] (Y in [16/255, 235/255]); MATLAB rgb2ycbcr on double."""
    _check_three_channels(rgb, "rgb_to_ycbcr")
    return _apply(rgb, _FORWARD, _FORWARD_OFFSET, _float_dtype(rgb, "rgb_to_ycbcr"))


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_ycbcr`` (MATLAB ycbcr2rgb on double). Not clipped: out-of-gamut values survive."""
    _check_three_channels(ycbcr, "ycbcr_to_rgb")
    return _apply(ycbcr, _INVERSE, -_INVERSE_OFFSET, _float_dtype(ycbcr, "ycbcr_to_rgb"))


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 float RGB in [0, 1] -> HxW Y in [16/255, 235/255] (the luma plane of ``rgb_to_ycbcr``)."""
    _check_three_channels(rgb, "rgb_to_y")
    dtype = _float_dtype(rgb, "rgb_to_y")
    m = _FORWARD[0].astype(dtype)
    return m[0] * rgb[..., 0] + m[1] * rgb[..., 1] + m[2] * rgb[..., 2] + dtype.type(_FORWARD_OFFSET[0])


def rgb_to_ycbcr_uint8(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` on uint8: Y = round(16 + (65.481 R + 128.553 G + 24.966 B)/255) as uint8.

    MATLAB computes in double with T = origT/255 on 0..255 levels and rounds half away from zero.
    """
    _check_three_channels(rgb, "rgb_to_ycbcr_uint8")
    if rgb.dtype != np.uint8:
        raise InputError(f"rgb_to_ycbcr_uint8: expected uint8 data, got {rgb.dtype}")
    levels = _apply(rgb.astype(np.float64), _FORWARD, YCBCR_OFFSET, np.dtype(np.float64))
    return np.clip(np.floor(levels + 0.5), 0, 255).astype(np.uint8)  # values are >= 0: floor(x+.5) = round-half-up


def rgb_to_y_uint8(rgb: np.ndarray) -> np.ndarray:
    """The Y plane of ``rgb_to_ycbcr_uint8`` (same arithmetic, same rounding), without computing Cb/Cr."""
    _check_three_channels(rgb, "rgb_to_y_uint8")
    if rgb.dtype != np.uint8:
        raise InputError(f"rgb_to_y_uint8: expected uint8 data, got {rgb.dtype}")
    m = _FORWARD[0]
    levels = m[0] * rgb[..., 0].astype(np.float64) + m[1] * rgb[..., 1] + m[2] * rgb[..., 2] + YCBCR_OFFSET[0]
    return np.clip(np.floor(levels + 0.5), 0, 255).astype(np.uint8)


def _torch_matrix(matrix: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(matrix, dtype=like.dtype, device=like.device)


def _check_tensor(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 3 or x.shape[-3] != 3 or not x.is_floating_point():
        raise InputError(f"{what}: expected a float tensor with 3 channels at dim -3, got {getattr(x, 'shape', type(x))}")


def rgb_to_ycbcr_torch(x: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 1], channels at dim -3 (NCHW or CHW) -> YCbCr in [0, 1]; same dtype/device."""
    _check_tensor(x, "rgb_to_ycbcr_torch")
    m = _torch_matrix(_FORWARD, x)
    o = _torch_matrix(_FORWARD_OFFSET, x)
    return torch.einsum("ij,...jhw->...ihw", m, x) + o[:, None, None]


def ycbcr_to_rgb_torch(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_ycbcr_torch``; not clipped."""
    _check_tensor(x, "ycbcr_to_rgb_torch")
    m = _torch_matrix(_INVERSE, x)
    o = _torch_matrix(_INVERSE_OFFSET, x)
    return torch.einsum("ij,...jhw->...ihw", m, x) - o[:, None, None]


def rgb_to_y_torch(x: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 1] (channels at dim -3) -> Y with the channel dim kept (size 1)."""
    _check_tensor(x, "rgb_to_y_torch")
    m = _torch_matrix(_FORWARD[0], x)
    return torch.einsum("j,...jhw->...hw", m, x).unsqueeze(-3) + float(_FORWARD_OFFSET[0])

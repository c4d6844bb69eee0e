"""PSNR and SSIM as the SR literature computes them (float64, peak 255, border shaved).

- PSNR = 10 log10(peak^2 / MSE) over the image with ``border`` pixels removed on every side; identical
  images give ``inf``.
- SSIM follows Wang et al.'s reference ``ssim_index.m``: 11x11 Gaussian window (sigma 1.5, normalised),
  K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering, mean of the SSIM map. No automatic downsampling (that
  was added in the later ``ssim.m``; the SR tables use the original). Multi-channel inputs (``--rgb``) get
  the mean of the per-channel SSIMs, as BasicSR does.
- ``y_channel`` gives the BT.601 luma on 0..255, either rounded as MATLAB ``rgb2ycbcr`` does on uint8
  (the EDSR MATLAB evaluation) or unrounded (EDSR-PyTorch, BasicSR).

Callers pass ``name`` (usually the image file) so that a size mismatch names the file at fault.
"""
from __future__ import annotations

import math

import numpy as np

from sr_cli.color import rgb_to_y_uint8
from sr_cli.errors import InputError

__all__ = ["psnr", "ssim", "y_channel", "gaussian_window", "SSIM_K1", "SSIM_K2", "SSIM_WINDOW", "SSIM_SIGMA"]

SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _pair(a: np.ndarray, b: np.ndarray, border: int, name: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate, shave ``border`` pixels on each side, and return float64 copies."""
    where = f"{name}: " if name else ""
    if a.shape != b.shape:
        raise InputError(
            f"{where}sizes differ ({_describe(a)} vs {_describe(b)}); both images must have the same size and channels"
        )
    if a.ndim not in (2, 3):
        raise InputError(f"{where}expected HW or HWC arrays, got shape {a.shape}")
    if border < 0:
        raise InputError(f"{where}border must be >= 0, got {border}")
    height, width = a.shape[:2]
    if height <= 2 * border or width <= 2 * border:
        raise InputError(f"{where}image of {width}x{height} is too small for a border of {border} pixels")
    crop = (slice(border, height - border), slice(border, width - border))
    return a[crop].astype(np.float64), b[crop].astype(np.float64)


def _describe(a: np.ndarray) -> str:
    channels = "" if a.ndim == 2 else f"x{a.shape[2]}"
    return f"{a.shape[1]}x{a.shape[0]}{channels}"


def psnr(a: np.ndarray, b: np.ndarray, *, border: int, peak: float = 255.0, name: str | None = None) -> float:
    """PSNR in dB between two same-shape arrays on a 0..``peak`` scale; ``inf`` when they are identical."""
    x, y = _pair(a, b, border, name)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """1-D normalised Gaussian; ``outer(g, g)`` equals MATLAB's ``fspecial('gaussian', size, sigma)``."""
    radius = (size - 1) / 2.0
    x = np.arange(size, dtype=np.float64) - radius
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(planes: np.ndarray, g: np.ndarray) -> np.ndarray:
    """'valid' correlation of each (H, W) plane of ``planes`` (N, H, W) with the separable window outer(g, g).

    One shifted multiply-add per tap and axis: no window copies, float64 throughout.
    """
    k = g.size
    height, width = planes.shape[1] - k + 1, planes.shape[2] - k + 1
    rows = np.zeros((planes.shape[0], height, planes.shape[2]))
    for tap in range(k):
        rows += g[tap] * planes[:, tap:tap + height, :]
    out = np.zeros((planes.shape[0], height, width))
    for tap in range(k):
        out += g[tap] * rows[:, :, tap:tap + width]
    return out


def _ssim_plane(x: np.ndarray, y: np.ndarray, peak: float) -> float:
    g = gaussian_window()
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2
    mu_x, mu_y, e_xx, e_yy, e_xy = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), g)
    mu_x2, mu_y2, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_x2 = e_xx - mu_x2
    sigma_y2 = e_yy - mu_y2
    sigma_xy = e_xy - mu_xy
    ssim_map = ((2 * mu_xy + c1) * (2 * sigma_xy + c2)) / ((mu_x2 + mu_y2 + c1) * (sigma_x2 + sigma_y2 + c2))
    return float(np.mean(ssim_map))


def ssim(a: np.ndarray, b: np.ndarray, *, border: int, peak: float = 255.0, name: str | None = None) -> float:
    """Mean SSIM (Wang et al. 2004 reference) after shaving ``border``; HWC inputs: mean over channels."""
    x, y = _pair(a, b, border, name)
    if x.shape[0] < SSIM_WINDOW or x.shape[1] < SSIM_WINDOW:
        where = f"{name}: " if name else ""
        raise InputError(f"{where}image is smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window after the border crop")
    if x.ndim == 2:
        return _ssim_plane(x, y, peak)
    return float(np.mean([_ssim_plane(x[..., c], y[..., c], peak) for c in range(x.shape[2])]))


def y_channel(image: np.ndarray, *, rounded: bool) -> np.ndarray:
    """BT.601 luma of an 8-bit image on 0..255 as float64 (HW).

    RGB (HxWx3 uint8): ``rounded=True`` is MATLAB ``rgb2ycbcr`` on uint8 (Y rounded to integers), else
    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 unrounded. Grayscale (HW or HxWx1) has no colour to
    convert: its single channel is returned as is (this is how Set14 ``bridge`` is measured).
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InputError(f"y_channel: expected a uint8 image, got {getattr(image, 'dtype', type(image))}")
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0].astype(np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"y_channel: expected HxW, HxWx1 or HxWx3, got shape {image.shape}")
    if rounded:
        return rgb_to_y_uint8(image).astype(np.float64)
    rgb = image.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0

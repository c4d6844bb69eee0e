"""PSNR / SSIM against independent computations (closed forms, a slow window-by-window SSIM loop)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sr_cli.errors import InputError
from sr_cli.metrics import psnr, ssim, y_channel


def slow_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. (2004) eq. 13 evaluated window by window with an explicit 2-D Gaussian."""
    x = np.arange(11) - 5
    window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (window * pa).sum(), (window * pb).sum()
            va = (window * (pa - ma) ** 2).sum()
            vb = (window * (pb - mb) ** 2).sum()
            cov = (window * (pa - ma) * (pb - mb)).sum()
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_psnr_closed_form_and_border() -> None:
    a = np.zeros((10, 10))
    b = np.zeros((10, 10))
    b[3:7, 3:7] = 10.0  # 16 pixels off by 10 inside a 6x6 region after border 2
    assert psnr(a, b, border=2) == pytest.approx(10 * math.log10(255**2 / (16 * 100 / 36)), abs=1e-12)
    b[0, 0] = 255  # only in the border: no effect
    assert psnr(a, b, border=2) == pytest.approx(10 * math.log10(255**2 / (16 * 100 / 36)), abs=1e-12)
    assert psnr(a, b, border=0, peak=1.0) < 0


def test_identical_images_give_inf() -> None:
    image = np.random.default_rng(0).random((8, 8)) * 255
    assert psnr(image, image.copy(), border=1) == math.inf
    assert ssim(np.pad(image, 4), np.pad(image, 4), border=0) == pytest.approx(1.0)


def test_ssim_equals_slow_window_loop() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((24, 19)) * 255
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    assert ssim(a, b, border=2) == pytest.approx(slow_ssim(a[2:-2, 2:-2], b[2:-2, 2:-2]), abs=1e-12)


def test_ssim_multichannel_is_the_channel_mean() -> None:
    rng = np.random.default_rng(2)
    a = rng.random((20, 20, 3)) * 255
    b = a + rng.normal(0, 5, a.shape)
    expected = np.mean([slow_ssim(a[..., c], b[..., c]) for c in range(3)])
    assert ssim(a, b, border=0) == pytest.approx(expected, abs=1e-12)


def test_ssim_matches_wang_reference_on_constant_shift() -> None:
    # Two constant images: variances vanish, so SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1).
    c1 = (0.01 * 255) ** 2
    a, b = np.full((16, 16), 100.0), np.full((16, 16), 120.0)
    assert ssim(a, b, border=0) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1), abs=1e-12)


def test_size_mismatch_names_the_file() -> None:
    with pytest.raises(InputError, match="baby.png"):
        psnr(np.zeros((8, 8)), np.zeros((8, 9)), border=0, name="baby.png")
    with pytest.raises(InputError, match="bird.png"):
        ssim(np.zeros((20, 20)), np.zeros((20, 20, 3)), border=0, name="bird.png")
    with pytest.raises(InputError):
        ssim(np.zeros((12, 12)), np.zeros((12, 12)), border=1)  # smaller than the window after the crop
    with pytest.raises(InputError):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)), border=2)


def test_y_channel_rounded_and_unrounded() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    levels = rgb.astype(np.float64)
    exact = 16 + (65.481 * levels[..., 0] + 128.553 * levels[..., 1] + 24.966 * levels[..., 2]) / 255
    np.testing.assert_allclose(y_channel(rgb, rounded=False), exact, atol=1e-12)
    np.testing.assert_array_equal(y_channel(rgb, rounded=True), np.floor(exact + 0.5))
    gray = rgb[..., 0]
    np.testing.assert_array_equal(y_channel(gray, rounded=True), gray.astype(np.float64))
    np.testing.assert_array_equal(y_channel(gray[..., None], rounded=False), gray.astype(np.float64))
    with pytest.raises(InputError):
        y_channel(levels, rounded=True)

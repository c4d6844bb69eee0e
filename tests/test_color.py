"""BT.601 YCbCr against MATLAB's documented numbers and against each other (numpy / torch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_cli.color import (
    rgb_to_y,
    rgb_to_y_torch,
    rgb_to_ycbcr,
    rgb_to_ycbcr_torch,
    rgb_to_ycbcr_uint8,
    ycbcr_to_rgb,
    ycbcr_to_rgb_torch,
)
from sr_cli.errors import InputError


def test_black_white_and_primaries_match_bt601_studio_swing() -> None:
    rgb = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=np.float64)
    ycbcr = rgb_to_ycbcr(rgb)[0] * 255
    np.testing.assert_allclose(ycbcr[0], [16, 128, 128], atol=1e-9)
    np.testing.assert_allclose(ycbcr[1], [235, 128, 128], atol=1e-3)  # 16 + 219.0, chroma 128 +- rounding of the table
    np.testing.assert_allclose(ycbcr[2], [16 + 65.481, 128 - 37.797, 128 + 112], atol=1e-9)
    np.testing.assert_allclose(ycbcr[3], [16 + 128.553, 128 - 74.203, 128 - 93.786], atol=1e-9)
    np.testing.assert_allclose(ycbcr[4], [16 + 24.966, 128 + 112, 128 - 18.214], atol=1e-9)


def test_round_trip_numpy_and_torch() -> None:
    rgb = np.random.default_rng(0).random((6, 7, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
    tensor = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
    np.testing.assert_allclose(ycbcr_to_rgb_torch(rgb_to_ycbcr_torch(tensor)).numpy(), tensor.numpy(), atol=1e-12)


def test_torch_matches_numpy_and_y_helpers_match_full_conversion() -> None:
    rgb = np.random.default_rng(1).random((5, 4, 3))
    tensor = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
    np.testing.assert_allclose(rgb_to_ycbcr_torch(tensor).numpy().transpose(1, 2, 0), rgb_to_ycbcr(rgb), atol=1e-14)
    np.testing.assert_allclose(rgb_to_y(rgb), rgb_to_ycbcr(rgb)[..., 0], atol=1e-15)
    assert rgb_to_y_torch(tensor[None]).shape == (1, 1, 5, 4)
    np.testing.assert_allclose(rgb_to_y_torch(tensor)[0].numpy(), rgb_to_y(rgb), atol=1e-14)


def test_float32_stays_float32() -> None:
    rgb = np.random.default_rng(2).random((3, 3, 3)).astype(np.float32)
    assert rgb_to_ycbcr(rgb).dtype == np.float32
    assert rgb_to_y(rgb).dtype == np.float32
    assert rgb_to_ycbcr_torch(torch.from_numpy(rgb.transpose(2, 0, 1).copy())).dtype == torch.float32


def test_uint8_variant_rounds_the_double_formula_half_up() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    levels = rgb.astype(np.float64)
    y = 16 + (65.481 * levels[..., 0] + 128.553 * levels[..., 1] + 24.966 * levels[..., 2]) / 255
    out = rgb_to_ycbcr_uint8(rgb)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.floor(y + 0.5).astype(np.uint8))
    assert out[..., 0].min() >= 16 and out[..., 0].max() <= 235


@pytest.mark.parametrize(
    "call",
    [
        lambda: rgb_to_ycbcr(np.zeros((2, 2, 3), np.uint8)),
        lambda: rgb_to_ycbcr(np.zeros((2, 2))),
        lambda: rgb_to_ycbcr_uint8(np.zeros((2, 2, 3))),
        lambda: rgb_to_ycbcr_torch(torch.zeros(1, 1, 2, 2)),
    ],
)
def test_bad_input(call) -> None:
    with pytest.raises(InputError):
        call()

"""imresize against independent formulas: a dense-matrix MATLAB reference, constants, ramps, dtypes."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sr_cli.errors import InputError
from sr_cli.resize import downscale_like_benchmark, imresize, modcrop


def keys_cubic(x: float) -> float:
    """Keys (1981) a = -0.5, written from the paper's piecewise form (not MATLAB's vectorised one)."""
    a = -0.5
    t = abs(x)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t <= 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def mirror(index: int, n: int) -> int:
    """Symmetric padding for a 0-based index: -1 -> 0, -2 -> 1, n -> n-1, n+1 -> n-2 (period 2n)."""
    index %= 2 * n
    return index if index < n else 2 * n - 1 - index


def dense_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """(n_out, n_in) resampling matrix built pixel by pixel from the MATLAB definition."""
    stretch = min(scale, 1.0)  # antialiasing when shrinking
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) / scale - 0.5  # 0-based source coordinate of output pixel i
        support = 2.0 / stretch
        for j in range(math.floor(centre - support) - 1, math.ceil(centre + support) + 2):
            matrix[i, mirror(j, n_in)] += stretch * keys_cubic(stretch * (centre - j))
        matrix[i] /= matrix[i].sum()
    return matrix


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 17),
    width=st.integers(1, 17),
    scale=st.sampled_from([0.25, 1 / 3, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_float_resize_equals_dense_matrix_reference(height: int, width: int, scale: float, seed: int) -> None:
    image = np.random.default_rng(seed).random((height, width, 2))
    out = imresize(image, scale)
    rows = dense_matrix(height, math.ceil(height * scale), scale)
    cols = dense_matrix(width, math.ceil(width * scale), scale)
    expected = np.einsum("ih,hwc,jw->ijc", rows, image, cols)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_output_shape_with_different_scales_equals_dense_reference() -> None:
    image = np.random.default_rng(1).random((9, 14))
    out = imresize(image, output_shape=(20, 5))
    expected = dense_matrix(9, 20, 20 / 9) @ image @ dense_matrix(14, 5, 5 / 14).T
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2.0, 3.0, 4.0])
def test_constant_image_stays_constant(scale: float) -> None:
    image = np.full((13, 10, 3), 0.37)
    np.testing.assert_allclose(imresize(image, scale), 0.37, atol=1e-14)
    np.testing.assert_array_equal(imresize(np.full((13, 10), 200, np.uint8), scale), 200)


def test_linear_ramp_stays_linear_in_the_interior_when_upsampling_by_two() -> None:
    # Keys' cubic reproduces polynomials up to degree 2 exactly; away from the mirrored borders a ramp
    # sampled at the output coordinates (i + 0.5) / 2 - 0.5 comes back exactly.
    ramp = np.tile(np.arange(20, dtype=np.float64), (6, 1))
    out = imresize(ramp, 2.0)
    expected = (np.arange(40) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(out[:, 4:-4], np.tile(expected[4:-4], (12, 1)), atol=1e-12)


def test_uint8_rounds_after_each_pass_and_float_does_not() -> None:
    image = np.random.default_rng(2).integers(0, 256, (15, 11, 3), dtype=np.uint8)
    rows = dense_matrix(15, 5, 1 / 3)
    cols = dense_matrix(11, 4, 1 / 3)
    first = np.clip(np.floor(np.einsum("ih,hwc->iwc", rows, image.astype(np.float64)) + 0.5), 0, 255)
    expected = np.clip(np.floor(np.einsum("iwc,jw->ijc", first, cols) + 0.5), 0, 255).astype(np.uint8)
    out = imresize(image, 1 / 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    as_float = imresize(image.astype(np.float64), 1 / 3)
    assert as_float.dtype == np.float64
    assert not np.all(as_float == np.round(as_float))  # never rounded


def test_float32_stays_float32_and_close_to_float64() -> None:
    image = np.random.default_rng(3).random((12, 9, 3))
    out32 = imresize(image.astype(np.float32), 2.0)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, imresize(image, 2.0), atol=1e-5)


def test_uint16_saturates() -> None:
    image = np.zeros((8, 8), np.uint16)
    image[::2, ::2] = 65535  # a checkerboard overshoots when upsampled
    out = imresize(image, 2.0)
    assert out.dtype == np.uint16 and out.max() == 65535 and out.min() == 0


def test_grayscale_2d_is_supported_and_size_is_ceil() -> None:
    assert imresize(np.zeros((7, 5)), 1 / 3).shape == (3, 2)
    assert imresize(np.zeros((7, 5, 3), np.uint8), 1.5).shape == (11, 8, 3)


def test_modcrop_and_downscale_like_benchmark() -> None:
    image = np.random.default_rng(4).integers(0, 256, (14, 11, 3), dtype=np.uint8)
    assert modcrop(image, 4).shape == (12, 8, 3)
    np.testing.assert_array_equal(modcrop(image, 4), image[:12, :8])
    np.testing.assert_array_equal(downscale_like_benchmark(image, 4), imresize(image[:12, :8], 0.25))
    assert downscale_like_benchmark(image, 4).shape == (3, 2, 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda: imresize(np.zeros((4, 4)), None),
        lambda: imresize(np.zeros((4, 4)), 2.0, output_shape=(8, 8)),
        lambda: imresize(np.zeros((4, 4)), -1.0),
        lambda: imresize(np.zeros((4, 4), np.int32), 2.0),
        lambda: imresize(np.zeros(4), 2.0),
        lambda: imresize(np.zeros((4, 4)), output_shape=(0, 3)),
        lambda: modcrop(np.zeros((3, 3)), 4),
    ],
)
def test_bad_input_raises_input_error(call) -> None:
    with pytest.raises(InputError):
        call()

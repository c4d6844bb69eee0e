"""Network interpolation: endpoints exact, the formula on every tensor, incompatible pairs refused."""
from __future__ import annotations

import pytest
import torch

from sr_cli.errors import CheckpointError, UsageError
from sr_cli.weights.interpolate import check_compatible, interpolate_state_dicts


def _pair(dtype: torch.dtype = torch.float32) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    psnr = {"conv.weight": torch.randn(4, 3, 3, 3, generator=generator).to(dtype), "conv.bias": torch.tensor([-0.0, 1.0, 2.0, -3.0]).to(dtype)}
    gan = {"conv.weight": torch.randn(4, 3, 3, 3, generator=generator).to(dtype), "conv.bias": torch.tensor([0.0, -0.0, 5.0, 7.0]).to(dtype)}
    return psnr, gan


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_endpoints_are_bit_exact(dtype: torch.dtype) -> None:
    psnr, gan = _pair(dtype)
    at_zero = interpolate_state_dicts(psnr, gan, 0.0)
    at_one = interpolate_state_dicts(psnr, gan, 1.0)
    for key in psnr:
        assert at_zero[key].dtype == dtype
        # compare bit patterns, so that -0.0 vs +0.0 would fail
        assert torch.equal(at_zero[key].view(torch.int16 if dtype != torch.float32 else torch.int32),
                           psnr[key].view(torch.int16 if dtype != torch.float32 else torch.int32))
        assert torch.equal(at_one[key].view(torch.int16 if dtype != torch.float32 else torch.int32),
                           gan[key].view(torch.int16 if dtype != torch.float32 else torch.int32))


def test_formula_on_every_tensor_in_float64_reference() -> None:
    psnr, gan = _pair()
    alpha = 0.3
    blended = interpolate_state_dicts(psnr, gan, alpha)
    for key in psnr:
        reference = (1 - alpha) * psnr[key].double() + alpha * gan[key].double()
        assert torch.allclose(blended[key].double(), reference, atol=1e-6, rtol=0)


def test_half_storage_is_blended_in_float32() -> None:
    psnr = {"w": torch.tensor([1000.0, 3.0], dtype=torch.float16)}
    gan = {"w": torch.tensor([1001.0, 4.0], dtype=torch.float16)}
    blended = interpolate_state_dicts(psnr, gan, 0.5)
    assert blended["w"].dtype == torch.float16
    # computed in float32 and rounded to fp16 once: the same as rounding the exact midpoint
    assert torch.equal(blended["w"], torch.tensor([1000.5, 3.5]).to(torch.float16))


def test_incompatible_pairs_list_the_differences() -> None:
    psnr, gan = _pair()
    gan["extra.weight"] = torch.zeros(1)
    gan["conv.weight"] = torch.zeros(8, 3, 3, 3)
    with pytest.raises(CheckpointError) as error:
        check_compatible(psnr, gan, "a.pth and b.pth")
    message = str(error.value)
    assert "a.pth and b.pth" in message
    assert "extra.weight only in the second" in message
    assert "conv.weight shape [4, 3, 3, 3] vs [8, 3, 3, 3]" in message
    assert "\n" not in message


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_alpha_outside_unit_interval_is_refused(alpha: float) -> None:
    psnr, gan = _pair()
    with pytest.raises(UsageError, match="outside"):
        interpolate_state_dicts(psnr, gan, alpha)

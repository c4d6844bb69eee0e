"""Network interpolation (ESRGAN, Wang et al. 2018, Sec. 3.4): theta = (1 - alpha) theta_PSNR + alpha theta_GAN.

Pure tensor math on canonical state dicts; loading, naming and checks of the result live in sr_cli.blend.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from sr_cli.errors import CheckpointError, UsageError

_SHOWN = 5  # differing keys listed in an error message; the count says how many more


def differences(first: Mapping[str, Tensor], second: Mapping[str, Tensor]) -> list[str]:
    """Human-readable differences in keys, shapes and dtype kinds between two canonical state dicts."""
    problems: list[str] = []
    only_first = sorted(set(first) - set(second))
    only_second = sorted(set(second) - set(first))
    problems += [f"{key} only in the first" for key in only_first]
    problems += [f"{key} only in the second" for key in only_second]
    for key in first.keys() & second.keys():
        a, b = first[key], second[key]
        if a.shape != b.shape:
            problems.append(f"{key} shape {list(a.shape)} vs {list(b.shape)}")
        elif a.is_floating_point() != b.is_floating_point():
            problems.append(f"{key} dtype {a.dtype} vs {b.dtype}")
    return sorted(problems)


def check_compatible(first: Mapping[str, Tensor], second: Mapping[str, Tensor], what: str) -> None:
    """Raise CheckpointError listing the differences unless both dicts have the same keys and shapes."""
    problems = differences(first, second)
    if problems:
        more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
        raise CheckpointError(
            f"{what} cannot be blended: their weights differ in {len(problems)} place(s): "
            f"{'; '.join(problems[:_SHOWN])}{more}; blend two checkpoints of the same architecture"
        )


def check_alpha(alpha: float) -> None:
    """alpha must lie in [0, 1]: outside it the weights are extrapolated, which ESRGAN never validated."""
    if not 0.0 <= alpha <= 1.0:  # also refuses NaN
        raise UsageError(f"--alpha {alpha} is outside [0, 1]; 0 is the PSNR model, 1 the GAN model")


def interpolate_state_dicts(
    psnr: Mapping[str, Tensor], gan: Mapping[str, Tensor], alpha: float
) -> dict[str, Tensor]:
    """(1 - alpha) * psnr + alpha * gan, tensor by tensor, computed in float32 on the CPU.

    Each result keeps the PSNR tensor's dtype. alpha 0 and 1 return exact copies of the endpoints
    (the formula would turn a -0.0 into +0.0). Non-float tensors (counters) must be equal.
    """
    check_alpha(alpha)
    check_compatible(psnr, gan, "the PSNR and GAN checkpoints")
    blended: dict[str, Tensor] = {}
    for key, a in psnr.items():
        b = gan[key]
        if alpha == 0.0:
            blended[key] = a.detach().clone()
        elif alpha == 1.0:
            blended[key] = b.detach().to(a.dtype).clone()
        elif not a.is_floating_point():
            if not torch.equal(a, b):
                raise CheckpointError(f"cannot blend the non-float tensor {key}: it differs between the two files")
            blended[key] = a.detach().clone()
        else:
            a32 = a.detach().to("cpu", torch.float32)
            b32 = b.detach().to("cpu", torch.float32)
            blended[key] = ((1.0 - alpha) * a32 + alpha * b32).to(a.dtype)
    return blended

"""EDSR (Lim et al., 2017) with the exact module names of EDSR-PyTorch, so official files load strictly.

Forward convention of the released weights: RGB input in 0..rgb_range (uint8 values as float, not /255),
output in the same range. `runtime.SRNet` converts from/to [0, 1]; this module never does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# DIV2K RGB mean used by every EDSR-PyTorch release (common.MeanShift, rgb_std = 1).
DIV2K_RGB_MEAN: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)


@dataclass(frozen=True)
class EDSRParams:
    n_resblocks: int = 16
    n_feats: int = 64
    scale: int = 2
    res_scale: float = 1.0
    rgb_range: float = 255.0
    n_colors: int = 3

    def __post_init__(self) -> None:
        if self.scale not in (2, 3, 4):
            raise ValueError(f"EDSR scale must be 2, 3 or 4, got {self.scale}")
        if self.n_resblocks < 1 or self.n_feats < 1:
            raise ValueError(f"EDSR sizes must be positive: {self}")
        if self.n_colors != len(DIV2K_RGB_MEAN):
            raise ValueError(f"EDSR's MeanShift is defined for 3 (RGB) channels, got n_colors={self.n_colors}")


class MeanShift(nn.Conv2d):
    """1x1 conv adding sign * rgb_range * mean (EDSR-PyTorch's MeanShift with std 1).

    Stored in the official files (weight = I, bias = -+255 * mean); kept as frozen parameters so the
    state dict matches the released layout key for key.
    """

    def __init__(self, rgb_range: float, sign: int, n_colors: int = 3,
                 mean: tuple[float, ...] = DIV2K_RGB_MEAN) -> None:
        super().__init__(n_colors, n_colors, kernel_size=1)
        if len(mean) != n_colors:
            raise ValueError(f"MeanShift needs {n_colors} mean values, got {len(mean)}")
        assert self.bias is not None  # Conv2d has a bias unless bias=False
        with torch.no_grad():
            # built on the CPU explicitly, then copied: cheap even when the module is built on the meta
            # device (torch.eye on meta would pull in torch._refs, seconds of import time)
            self.weight.copy_(torch.eye(n_colors, device="cpu").view(n_colors, n_colors, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(mean, dtype=torch.float32, device="cpu"))
        self.requires_grad_(False)


def conv3x3(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Conv2d:
    """EDSR-PyTorch `default_conv`: zero padding kernel//2, with bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=True)


class ResBlock(nn.Module):
    """x + res_scale * conv(relu(conv(x))); children at body.0 / body.2 as in the official files."""

    def __init__(self, n_feats: int, kernel_size: int = 3, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(n_feats, n_feats, kernel_size), nn.ReLU(inplace=True), conv3x3(n_feats, n_feats, kernel_size)
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.res_scale


class Upsampler(nn.Sequential):
    """Conv + PixelShuffle stages: x2 -> [conv 4f, PS2], x4 -> that twice, x3 -> [conv 9f, PS3]."""

    def __init__(self, scale: int, n_feats: int) -> None:
        layers: list[nn.Module] = []
        if scale in (2, 4):
            for _ in range(int(math.log2(scale))):
                layers += [conv3x3(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv3x3(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"upsampler scale must be 2, 3 or 4, got {scale}")
        super().__init__(*layers)


class EDSR(nn.Module):
    def __init__(self, params: EDSRParams) -> None:
        super().__init__()
        self.params = params
        f = params.n_feats
        self.sub_mean = MeanShift(params.rgb_range, -1, params.n_colors)
        self.add_mean = MeanShift(params.rgb_range, +1, params.n_colors)
        self.head = nn.Sequential(conv3x3(params.n_colors, f))
        self.body = nn.Sequential(
            *[ResBlock(f, 3, params.res_scale) for _ in range(params.n_resblocks)], conv3x3(f, f)
        )
        self.tail = nn.Sequential(Upsampler(params.scale, f), conv3x3(f, params.n_colors))

    def forward(self, x: Tensor) -> Tensor:
        """RGB in 0..rgb_range -> RGB in 0..rgb_range (not clamped), H and W times `scale`."""
        x = self.head(self.sub_mean(x))
        x = self.tail(self.body(x) + x)
        return self.add_mean(x)

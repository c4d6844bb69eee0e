"""SRVGGNetCompact (Real-ESRGAN's realesr-general-x4v3 / animevideov3) with its module names.

`body` = conv in->f, PReLU(f), num_conv x [conv f->f, PReLU(f)], conv f->out*s^2; then
output = PixelShuffle(s)(body(x)) + nearest-upsample(x, s). RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SRVGGParams:
    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_conv: int = 32  # 32: realesr-general-x4v3 / wdn; 16: realesr-animevideov3
    upscale: int = 4

    def __post_init__(self) -> None:
        if self.upscale < 1 or self.num_conv < 0 or self.num_feat < 1:
            raise ValueError(f"invalid SRVGGNetCompact hyperparameters: {self}")
        if self.num_in_ch != self.num_out_ch:
            # the nearest-upsampled input is added to the output, so the channel counts must agree
            raise ValueError(f"SRVGGNetCompact needs num_in_ch == num_out_ch, got {self}")


class SRVGGNetCompact(nn.Module):
    def __init__(self, params: SRVGGParams) -> None:
        super().__init__()
        self.params = params
        f = params.num_feat
        layers: list[nn.Module] = [nn.Conv2d(params.num_in_ch, f, 3, padding=1), nn.PReLU(num_parameters=f)]
        for _ in range(params.num_conv):
            layers += [nn.Conv2d(f, f, 3, padding=1), nn.PReLU(num_parameters=f)]
        layers.append(nn.Conv2d(f, params.num_out_ch * params.upscale**2, 3, padding=1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(params.upscale)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.params.upscale, mode="nearest")

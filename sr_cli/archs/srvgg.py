"""SRVGGNetCompact (Real-ESRGAN's realesr-general-x4v3 / animevideov3) with its module names.

`body` = conv in->f, PReLU(f), num_conv x [conv f->f, PReLU(f)], conv f->out*s^2; then
output = PixelShuffle(s)(body(x)) + nearest-upsample(x, s). RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from sr_cli.archs.descriptor import (
    CannotPlace,
    FamilyDescriptor,
    PlaceHints,
    Placement,
    indices,
    need,
)


@dataclass(frozen=True)
class SRVGGParams:
    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_conv: int = field(default=32, metadata={"minimum": 0})  # 32: realesr-general-x4v3 / wdn; 16: realesr-animevideov3
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


def place(sd: dict[str, Tensor], hints: PlaceHints) -> Placement:
    first = need(sd, "body.0.weight", 4)
    need(sd, "body.1.weight", 1)  # PReLU slopes: the only activation with weights (act_type='prelu')
    last_index = indices(sd, r"^body\.(\d+)\.weight$")[-1]
    if last_index % 2 or last_index < 2:
        raise CannotPlace(f"body ends at index {last_index}; SRVGGNetCompact ends on an even conv index")
    last = need(sd, f"body.{last_index}.weight", 4)
    num_in_ch, num_feat = first.shape[1], first.shape[0]
    ratio, rem = divmod(last.shape[0], num_in_ch)
    upscale = round(ratio ** 0.5)
    if rem or upscale * upscale != ratio:
        raise CannotPlace(f"last conv has {last.shape[0]} outputs: not {num_in_ch} x upscale^2")
    params = SRVGGParams(num_in_ch=num_in_ch, num_out_ch=num_in_ch, num_feat=num_feat,
                         num_conv=(last_index - 2) // 2, upscale=upscale)
    return Placement("real-esrgan-srvgg", params, dict(sd))


DESCRIPTOR: FamilyDescriptor[SRVGGParams] = FamilyDescriptor(
    name="srvgg",
    label="SRVGG",
    params_class=SRVGGParams,
    module_class=SRVGGNetCompact,
    layouts=("real-esrgan-srvgg",),
    place=place,
    scales=lambda params: (params.upscale,),
    input_kind="rgb",
    in_channels=lambda params: params.num_in_ch,
    value_range=lambda params: 1.0,
    receptive_radius=lambda params: params.num_conv + 2,  # all convs at the input grid; the skip is nearest
    channels_last_on_cpu=True,  # x2.21, bench/engine_throughput.py
)

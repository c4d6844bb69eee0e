"""VDSR (Kim et al., 2016) with the module names of twtygqyy/pytorch-vdsr (`model_epoch_50.pth`).

Works on one channel: the Y of a bicubic-upscaled image, in [0, 1]. One model serves every scale
(fractional ones included), because the caller does the upscaling.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from sr_cli.archs.descriptor import (
    FamilyDescriptor,
    PlaceHints,
    Placement,
    contiguous_count,
    indices,
    need,
)


@dataclass(frozen=True)
class VDSRParams:
    num_layers: int = field(default=20, metadata={"minimum": 3})  # conv layers in total: input + (num_layers - 2) residual + output
    num_features: int = 64

    def __post_init__(self) -> None:
        if self.num_layers < 3 or self.num_features < 1:
            raise ValueError(f"VDSR needs at least 3 layers and 1 feature: {self}")


class ConvReLUBlock(nn.Module):
    """`Conv_ReLU_Block` of the reference code: conv (no bias) then ReLU; key `conv.weight`."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(features, features, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x))


class VDSR(nn.Module):
    def __init__(self, params: VDSRParams) -> None:
        super().__init__()
        self.params = params
        f = params.num_features
        self.input = nn.Conv2d(1, f, 3, padding=1, bias=False)
        self.residual_layer = nn.Sequential(*[ConvReLUBlock(f) for _ in range(params.num_layers - 2)])
        self.output = nn.Conv2d(f, 1, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, y: Tensor) -> Tensor:
        """Bicubic-upscaled Y [N,1,H,W] in [0,1] -> restored Y, same size, not clamped."""
        return self.output(self.residual_layer(self.relu(self.input(y)))) + y


def place(sd: dict[str, Tensor], hints: PlaceHints) -> Placement:
    first = need(sd, "input.weight", 4)
    need(sd, "output.weight", 4)
    layers = contiguous_count(indices(sd, r"^residual_layer\.(\d+)\.conv\.weight$"), "residual_layer")
    return Placement("vdsr-pytorch", VDSRParams(num_layers=layers + 2, num_features=first.shape[0]), dict(sd))


DESCRIPTOR: FamilyDescriptor[VDSRParams] = FamilyDescriptor(
    name="vdsr",
    label="VDSR",
    params_class=VDSRParams,
    module_class=VDSR,
    layouts=("vdsr-pytorch",),
    place=place,
    scales=lambda params: None,  # any factor above 1: the caller upscales bicubically, the net runs at 1
    input_kind="y-upscaled",
    in_channels=lambda params: 1,
    value_range=lambda params: 1.0,
    receptive_radius=lambda params: params.num_layers,  # num_layers 3x3 convs at the image's grid
    channels_last_on_cpu=True,  # x1.36, bench/engine_throughput.py
    train_params=lambda sizes: VDSRParams(num_layers=sizes.blocks, num_features=sizes.features),
    paper_model_names=None,  # one architecture, no baseline variant: every VDSR is the paper's
)

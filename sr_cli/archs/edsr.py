"""EDSR (Lim et al., 2017) with the exact module names of EDSR-PyTorch, so official files load strictly.

Forward convention of the released weights: RGB input in 0..rgb_range (uint8 values as float, not /255),
output in the same range. `runtime.SRNet` converts from/to [0, 1]; this module never does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sr_cli.archs.descriptor import (
    CannotPlace,
    FamilyDescriptor,
    PlaceHints,
    Placement,
    TrainSizes,
    contiguous_count,
    indices,
    need,
)

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
        return torch.add(x, self.body(x), alpha=self.res_scale)  # one pass over memory, not two


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


# --- reading a state dict (shared with MDSR, which has the same head, body and upsamplers) -------------

FULL_EDSR_FEATS = 256  # the published full EDSR (n_feats 256) was trained with res_scale 0.1
FULL_EDSR_RES_SCALE = 0.1


def res_scale_from(n_feats: int, hints: PlaceHints, full_rule: bool) -> tuple[float, str]:
    """res_scale cannot be seen in shapes: argument, else our metadata, else 0.1 for the 256-feature
    full EDSR (the only published model trained with it), else 1.0 (baselines, MDSR)."""
    if hints.res_scale is not None:
        return float(hints.res_scale), "argument"
    if hints.metadata_res_scale is not None:
        return float(hints.metadata_res_scale), "metadata"
    if full_rule and n_feats == FULL_EDSR_FEATS:
        return FULL_EDSR_RES_SCALE, "full-EDSR shape (256 feats)"
    return 1.0, "default"


def rgb_range_from(sd: dict[str, Tensor]) -> tuple[float, tuple[str, ...]]:
    """EDSR-PyTorch stores sub_mean.bias = -rgb_range * DIV2K mean: read rgb_range back when it fits
    (1 or 255); otherwise 255, the convention of every released file."""
    bias = sd.get("sub_mean.bias")
    if bias is not None and bias.shape == (3,):
        mean = torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float64)
        for candidate in (255.0, 1.0):
            if torch.allclose(bias.detach().double().cpu(), -candidate * mean, rtol=1e-3, atol=1e-6):
                return candidate, ()
        return 255.0, ("sub_mean.bias is not -rgb_range*DIV2K mean; assumed rgb_range 255",)
    return 255.0, ()


def upsampler_scale(sd: dict[str, Tensor], prefix: str, n_feats: int) -> int:
    """The factor of the `Upsampler` stored under `prefix` (x3: one 9f conv; x2: one 4f conv; x4: two)."""
    first = need(sd, f"{prefix}.0.weight", 4)
    if first.shape[0] == 9 * n_feats:
        return 3
    if first.shape[0] == 4 * n_feats:
        return 4 if f"{prefix}.2.weight" in sd else 2
    raise CannotPlace(f"{prefix}.0.weight has {first.shape[0]} outputs, not 4 or 9 x {n_feats}")


def place(sd: dict[str, Tensor], hints: PlaceHints) -> Placement:
    head = need(sd, "head.0.weight", 4)
    n_feats, n_colors = head.shape[0], head.shape[1]
    n_resblocks = contiguous_count(indices(sd, r"^body\.(\d+)\.body\.0\.weight$"), "body")
    scale = upsampler_scale(sd, "tail.0", n_feats)
    res_scale, source = res_scale_from(n_feats, hints, full_rule=True)
    rgb_range, notes = rgb_range_from(sd)
    if n_resblocks == 0:
        raise CannotPlace("no residual blocks", EDSRParams(scale=scale), sd)
    params = EDSRParams(n_resblocks=n_resblocks, n_feats=n_feats, scale=scale, res_scale=res_scale,
                        rgb_range=rgb_range, n_colors=n_colors)
    return Placement("edsr-pytorch", params, dict(sd), source, notes)


# --- how much an output pixel sees -----------------------------------------------------------------------


def upsampler_radius(scale: int) -> float:
    """Upsampler convs: x2/x3 one conv at the input grid; x4 a second one at 2x (half an input pixel)."""
    return 1.5 if scale == 4 else 1.0


def receptive_radius(params: EDSRParams) -> int:
    body = 1 + 2 * params.n_resblocks + 1  # head + ResBlocks (two convs each) + the body's last conv
    return math.ceil(body + upsampler_radius(params.scale) + 1 / params.scale)  # tail.1 runs at HR


def _train_params(sizes: TrainSizes) -> EDSRParams:
    (scale,) = sizes.scales
    return EDSRParams(n_resblocks=sizes.blocks, n_feats=sizes.features, scale=scale, res_scale=sizes.res_scale,
                      rgb_range=255.0)


def _value_range(params: Any) -> float:
    return float(params.rgb_range)


DESCRIPTOR: FamilyDescriptor[EDSRParams] = FamilyDescriptor(
    name="edsr",
    label="EDSR",
    params_class=EDSRParams,
    module_class=EDSR,
    layouts=("edsr-pytorch",),
    place=place,
    scales=lambda params: (params.scale,),
    input_kind="rgb",
    in_channels=lambda params: params.n_colors,
    value_range=_value_range,  # trained on 0..rgb_range inputs (uint8 values as float)
    receptive_radius=receptive_radius,
    scale_specific_prefixes=("tail.0.",),  # the upsampler; tail.1, the last conv, is the same at every scale
    shape_invisible=("res_scale",),
    channels_last_on_cpu=True,  # x1.49 (baseline), x1.21 (full), bench/engine_throughput.py
    train_params=_train_params,
    paper_model_names=("edsr", "edsr-x2", "edsr-x3", "edsr-x4"),
)

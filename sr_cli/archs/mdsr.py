"""MDSR (Lim et al., 2017): one network serving x2, x3 and x4 with the EDSR-PyTorch module names.

Shared head/body/tail; per scale a `pre_process[i]` (two ResBlocks with 5x5 kernels) and an
`upsample[i]`, where i is the position of the scale in `params.scales` ((2, 3, 4) in the official
files). The scale is an argument of `forward`: no mutable "current scale" (EDSR-PyTorch's set_scale),
so one module can serve several scales concurrently.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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
from sr_cli.archs.edsr import (
    MeanShift,
    ResBlock,
    Upsampler,
    conv3x3,
    res_scale_from,
    rgb_range_from,
    upsampler_radius,
    upsampler_scale,
)


@dataclass(frozen=True)
class MDSRParams:
    n_resblocks: int = 16  # 16 = baseline (mdsr_baseline), 80 = full (mdsr)
    n_feats: int = 64
    scales: tuple[int, ...] = (2, 3, 4)
    res_scale: float = 1.0
    rgb_range: float = 255.0

    def __post_init__(self) -> None:
        if not self.scales or any(s not in (2, 3, 4) for s in self.scales) or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"MDSR scales must be distinct values among 2, 3, 4, got {self.scales}")
        if self.n_resblocks < 1 or self.n_feats < 1:
            raise ValueError(f"MDSR sizes must be positive: {self}")


class MDSR(nn.Module):
    n_colors = 3

    def __init__(self, params: MDSRParams) -> None:
        super().__init__()
        self.params = params
        f = params.n_feats
        self.sub_mean = MeanShift(params.rgb_range, -1, self.n_colors)
        self.add_mean = MeanShift(params.rgb_range, +1, self.n_colors)
        self.head = nn.Sequential(conv3x3(self.n_colors, f))
        # EDSR-PyTorch's MDSR ResBlocks take no res_scale argument; params.res_scale is kept for
        # symmetry with EDSR and for retrained variants (official files: 1.0).
        self.pre_process = nn.ModuleList(
            [nn.Sequential(ResBlock(f, 5, params.res_scale), ResBlock(f, 5, params.res_scale)) for _ in params.scales]
        )
        self.body = nn.Sequential(*[ResBlock(f, 3, params.res_scale) for _ in range(params.n_resblocks)], conv3x3(f, f))
        self.upsample = nn.ModuleList([Upsampler(s, f) for s in params.scales])
        self.tail = nn.Sequential(conv3x3(f, self.n_colors))

    def scale_index(self, scale: int) -> int:
        try:
            return self.params.scales.index(scale)
        except ValueError:
            raise ValueError(f"this MDSR serves scales {list(self.params.scales)}, not x{scale}") from None

    def forward(self, x: Tensor, scale: int) -> Tensor:
        """RGB in 0..rgb_range -> RGB in 0..rgb_range (not clamped), H and W times `scale`."""
        i = self.scale_index(scale)
        x = self.pre_process[i](self.head(self.sub_mean(x)))
        x = self.upsample[i](self.body(x) + x)
        return self.add_mean(self.tail(x))


def place(sd: dict[str, Tensor], hints: PlaceHints) -> Placement:
    head = need(sd, "head.0.weight", 4)
    n_feats = head.shape[0]
    n_resblocks = contiguous_count(indices(sd, r"^body\.(\d+)\.body\.0\.weight$"), "body")
    branches = contiguous_count(indices(sd, r"^upsample\.(\d+)\.0\.weight$"), "upsample")
    if branches == 0 or not any(k.startswith("pre_process.") for k in sd):
        raise CannotPlace("no pre_process/upsample branches")
    scales = tuple(upsampler_scale(sd, f"upsample.{i}", n_feats) for i in range(branches))
    if len(set(scales)) != len(scales):
        raise CannotPlace(f"upsample branches repeat a scale: {list(scales)}")
    res_scale, source = res_scale_from(n_feats, hints, full_rule=False)
    rgb_range, notes = rgb_range_from(sd)
    params = MDSRParams(n_resblocks=n_resblocks, n_feats=n_feats, scales=scales, res_scale=res_scale,
                        rgb_range=rgb_range)
    return Placement("edsr-pytorch", params, dict(sd), source, notes)


def receptive_radius(params: MDSRParams) -> int:
    body = 1 + 2 * 2 * 2 + 2 * params.n_resblocks + 1  # head + pre_process (four 5x5 convs) + body
    return math.ceil(body + max(upsampler_radius(s) + 1 / s for s in params.scales))


def _forward_at_scale(module: nn.Module, x: Tensor, scale: int) -> Tensor:
    return module(x, scale)


def _train_params(sizes: TrainSizes) -> MDSRParams:
    return MDSRParams(n_resblocks=sizes.blocks, n_feats=sizes.features, scales=sizes.scales,
                      res_scale=sizes.res_scale, rgb_range=255.0)


DESCRIPTOR: FamilyDescriptor[MDSRParams] = FamilyDescriptor(
    name="mdsr",
    label="MDSR",
    params_class=MDSRParams,
    module_class=MDSR,
    layouts=("edsr-pytorch",),
    place=place,
    scales=lambda params: params.scales,
    input_kind="rgb",
    in_channels=lambda params: MDSR.n_colors,
    value_range=lambda params: float(params.rgb_range),
    receptive_radius=receptive_radius,
    shape_invisible=("res_scale",),
    channels_last_on_cpu=True,  # x1.85, bench/engine_throughput.py
    forward_at_scale=_forward_at_scale,
    train_params=_train_params,
    paper_model_names=("mdsr", "mdsr-x2", "mdsr-x3", "mdsr-x4"),
)

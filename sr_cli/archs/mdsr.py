"""MDSR (Lim et al., 2017): one network serving x2, x3 and x4 with the EDSR-PyTorch module names.

Shared head/body/tail; per scale a `pre_process[i]` (two ResBlocks with 5x5 kernels) and an
`upsample[i]`, where i is the position of the scale in `params.scales` ((2, 3, 4) in the official
files). The scale is an argument of `forward`: no mutable "current scale" (EDSR-PyTorch's set_scale),
so one module can serve several scales concurrently.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from sr_cli.archs.edsr import MeanShift, ResBlock, Upsampler, conv3x3


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

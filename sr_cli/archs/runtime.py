"""`SRNet`: the one view of a super-resolution network the rest of sr uses (design.md, "Conventions").

Every SRNet maps [N, C, H, W] in [0, 1] to [N, C, H*scale, W*scale] in the [0, 1] range (not clamped);
family-specific value conventions (EDSR/MDSR work in 0..255) are converted here and nowhere else.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.archs.mdsr import MDSR, MDSRParams
from sr_cli.archs.rrdb import RRDBNet, RRDBParams
from sr_cli.archs.srvgg import SRVGGNetCompact, SRVGGParams
from sr_cli.archs.vdsr import VDSR, VDSRParams

FAMILIES: tuple[str, ...] = ("edsr", "mdsr", "rrdb", "vdsr", "srvgg")
AnyParams = EDSRParams | MDSRParams | RRDBParams | VDSRParams | SRVGGParams
AnyModule = EDSR | MDSR | RRDBNet | VDSR | SRVGGNetCompact


def build_module(family: str, params: AnyParams) -> AnyModule:
    """The bare module of `family` with `params` (random init)."""
    builders: dict[str, tuple[type, type]] = {
        "edsr": (EDSR, EDSRParams), "mdsr": (MDSR, MDSRParams), "rrdb": (RRDBNet, RRDBParams),
        "vdsr": (VDSR, VDSRParams), "srvgg": (SRVGGNetCompact, SRVGGParams),
    }
    if family not in builders:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    module_cls, params_cls = builders[family]
    if not isinstance(params, params_cls):
        raise TypeError(f"{family} needs {params_cls.__name__}, got {type(params).__name__}")
    return module_cls(params)


def family_of(module: nn.Module) -> str:
    for family, cls in (("edsr", EDSR), ("mdsr", MDSR), ("rrdb", RRDBNet), ("vdsr", VDSR), ("srvgg", SRVGGNetCompact)):
        if isinstance(module, cls):
            return family
    raise TypeError(f"not an sr architecture: {type(module).__name__}")


# --- tile context ------------------------------------------------------------------------------------
#
# `receptive_radius` is exact: how far (in input pixels) an output pixel can see, counting every 3x3
# (radius 1) / 5x5 (radius 2) conv at the resolution it runs at, divided back to input pixels.
# A tile given that much context reproduces the whole-image output exactly (up to float rounding).
#
# `min_overlap` (measured with bench/min_overlap.py and a Set5 sweep of the real VDSR, torch 2.13 CPU):
# - Random-init models are NOT a usable proxy: with PyTorch's default init the residual branches are tiny,
#   so the needed context collapses (tiled == whole within 1/255 at c = 8 for EDSR/MDSR baseline, 4 for
#   full EDSR, 6 for RRDB x4, 10 for RRDB x2, 2 for SRVGG, 0 for VDSR).
# - The one trained model we have, VDSR model_epoch_50.pth (radius 20), needs up to 11 px on Set5 (x3
#   bicubic input, 8x8 cores at 4 positions per image; butterfly/woman edges are the worst case), i.e.
#   about 55 % of its radius -- far above its random-init 0.
# So every family whose exact radius is modest uses the exact radius (tiled output then equals the whole
# one up to float rounding, whatever the weights): VDSR 20, EDSR baseline 36, full EDSR 68, MDSR 44,
# SRVGG x4v3 34. RRDB's radius (349 px for x4, 698 for x2) would make tiles mostly overlap; it uses an
# estimate instead: effective receptive fields grow like sqrt(depth) (Luo et al., NeurIPS 2016), and
# scaling VDSR's measured 11 px by sqrt(349 / 20) gives 46 px -> 48 px on the net's own input grid
# (x pixel_unshuffle factor in image pixels). This one is an estimate, not a guarantee; no trained
# RRDB file is available here to measure it (see the issue-2 report).
_RRDB_CONTEXT_ON_GRID = 48


def _upsampler_radius(scale: int) -> float:
    """EDSR-style upsampler convs: x2/x3 one conv at the input grid; x4 a second one at 2x (half a pixel)."""
    return 1.5 if scale == 4 else 1.0


def receptive_radius(family: str, params: AnyParams) -> int:
    """Exact receptive-field radius of one output pixel, in input pixels (rounded up)."""
    if isinstance(params, EDSRParams):
        body = 1 + 2 * params.n_resblocks + 1  # head + ResBlocks (two convs each) + the body's last conv
        return math.ceil(body + _upsampler_radius(params.scale) + 1 / params.scale)  # tail.1 runs at HR
    if isinstance(params, MDSRParams):
        body = 1 + 2 * 2 * 2 + 2 * params.n_resblocks + 1  # head + pre_process (four 5x5 convs) + body
        return math.ceil(body + max(_upsampler_radius(s) + 1 / s for s in params.scales))
    if isinstance(params, RRDBParams):
        u = params.unshuffle
        grid = 1 + params.num_block * 3 * 5 + 1  # conv_first, 3 RDBs x 5 convs per RRDB, conv_body
        upsampled = 1 / 2 + 3 / 4  # conv_up1 at 2x; conv_up2, conv_hr, conv_last at 4x
        return math.ceil((grid + upsampled) * u + (u - 1))  # the net's grid is u image pixels wide
    if isinstance(params, VDSRParams):
        return params.num_layers
    if isinstance(params, SRVGGParams):
        return params.num_conv + 2
    raise TypeError(f"unknown params {type(params).__name__} for {family}")


def min_overlap_for(family: str, params: AnyParams) -> int:
    """Input pixels of context a tile needs (see the measurements above)."""
    radius = receptive_radius(family, params)
    if isinstance(params, RRDBParams):
        return min(radius, _RRDB_CONTEXT_ON_GRID * params.unshuffle)
    return radius


def native_scale(params: AnyParams) -> int:
    """The scale a single-scale net produces (VDSR: 1, it runs after the caller's bicubic upscale)."""
    if isinstance(params, (EDSRParams, RRDBParams)):
        return params.scale
    if isinstance(params, SRVGGParams):
        return params.upscale
    if isinstance(params, VDSRParams):
        return 1
    raise TypeError(f"{type(params).__name__} has several scales")


def _in_channels(params: AnyParams) -> int:
    if isinstance(params, VDSRParams):
        return 1
    if isinstance(params, EDSRParams):
        return params.n_colors
    if isinstance(params, (RRDBParams, SRVGGParams)):
        return params.num_in_ch
    return MDSR.n_colors


# --- SRNet -------------------------------------------------------------------------------------------


class SRNet(nn.Module):
    """A network at one scale, [0,1] in -> [0,1]-range out (not clamped).

    family: "edsr" | "mdsr" | "rrdb" | "vdsr" | "srvgg"
    scale: output size = input size * scale (VDSR: 1; it runs on a bicubic pre-upscaled Y)
    in_channels: 3 (RGB) or 1 (Y: VDSR)
    size_multiple: input H and W must be multiples of this (RRDB x2: 2, x1: 4, else 1)
    min_overlap: input pixels of context a tile needs for tiled == whole within 1/255
    """

    def __init__(self, module: AnyModule, *, scale: int | None = None, output_scale: int | None = None) -> None:
        super().__init__()
        self.family: str = family_of(module)
        self.module = module
        params = module.params
        if isinstance(module, MDSR):
            if scale is None:
                raise ValueError("an MDSR SRNet needs the scale it runs at")
            module.scale_index(scale)  # raises for a scale the model lacks
            self.scale: int = scale
        else:
            own = native_scale(params)
            if scale is not None and scale != own:
                raise ValueError(f"this {self.family} model is x{own}, not x{scale}")
            self.scale = own
        self.in_channels: int = _in_channels(params)
        self.size_multiple: int = params.unshuffle if isinstance(params, RRDBParams) else 1
        self.min_overlap: int = min_overlap_for(self.family, params)
        # An export that shrinks the net's output bicubically (realesr-animevideov3-x2/x3: x4, then to x2/x3).
        self.net_scale: int = self.scale
        if output_scale is not None:
            if isinstance(module, MDSR) or not 1 <= output_scale < self.scale:
                raise ValueError(f"a {self.family} x{self.scale} net cannot be resized to x{output_scale}")
            self.scale = output_scale
            self.min_overlap += 1  # the 4x4 bicubic taps reach 2 output pixels of the net: under 1 input pixel
        # EDSR/MDSR were trained on 0..rgb_range inputs; every other family on [0, 1]
        self._value_range: float = params.rgb_range if isinstance(params, (EDSRParams, MDSRParams)) else 1.0

    def serves(self, scale: float) -> bool:
        """Can this net produce an x`scale` result? VDSR serves any scale > 1 (the caller upscales
        bicubically first and runs the net at scale 1); every other net only its own scale."""
        if self.family == "vdsr":
            return scale > 1
        return scale == self.scale

    def forward(self, x: Tensor) -> Tensor:
        out = self._net_forward(x)
        if self.scale == self.net_scale:
            return out
        # PyTorch's bicubic is ncnn's Interp type 3: a = -0.75, half-pixel centres, clamped edges, no antialiasing
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        return F.interpolate(out, size=size, mode="bicubic", align_corners=False)

    def _net_forward(self, x: Tensor) -> Tensor:
        if isinstance(self.module, MDSR):
            return self.module(x * self._value_range, self.scale) / self._value_range
        if self._value_range != 1.0:
            return self.module(x * self._value_range) / self._value_range
        return self.module(x)

    def extra_repr(self) -> str:
        resized = f" (net x{self.net_scale}, resized)" if self.net_scale != self.scale else ""
        return f"family={self.family}, scale={self.scale}{resized}, in_channels={self.in_channels}, " \
               f"size_multiple={self.size_multiple}, min_overlap={self.min_overlap}"


def to_srnets(module: AnyModule, *, output_scale: int | None = None) -> dict[int, SRNet]:
    """One SRNet per scale the module serves (MDSR: several sharing the module; VDSR: {1: ...}).
    output_scale: the net's output is resized bicubically to this scale (see SRNet)."""
    if isinstance(module, MDSR):
        return {s: SRNet(module, scale=s) for s in module.params.scales}
    net = SRNet(module, output_scale=output_scale)
    return {net.scale: net}

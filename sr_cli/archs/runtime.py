"""`SRNet`: the one view of a super-resolution network the rest of sr uses (design.md, "Conventions").

Every SRNet maps [N, C, H, W] in [0, 1] to [N, C, H*scale, W*scale] in the [0, 1] range (not clamped);
family-specific value conventions (EDSR/MDSR work in 0..255) are converted here and nowhere else.
SRNet is generic: everything family-specific comes from the family's descriptor (archs/families.py).
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch.nn.functional as F
from torch import Tensor, nn

from sr_cli.archs.descriptor import FamilyDescriptor, FamilyName, InputKind
from sr_cli.archs.families import FAMILY_NAMES, descriptor_for, descriptor_of

FAMILIES: tuple[str, ...] = FAMILY_NAMES


class AnyParams(Protocol):
    """Any family's frozen hyperparameter dataclass."""

    __dataclass_fields__: ClassVar[dict[str, Any]]


AnyModule = nn.Module  # a family's bare module; its `.params` is its AnyParams


def build_module(family: str, params: Any) -> nn.Module:
    """The bare module of `family` with `params` (random init)."""
    return descriptor_for(family).build(params)


def family_of(module: nn.Module) -> FamilyName:
    return descriptor_of(module).name


# --- tile context ------------------------------------------------------------------------------------
#
# Each family's `receptive_radius` is exact: how far (in input pixels) an output pixel can see, counting
# every 3x3 (radius 1) / 5x5 (radius 2) conv at the resolution it runs at, divided back to input pixels.
# A tile given that much context reproduces the whole-image output exactly (up to float rounding);
# tests/test_archs.py measures it by perturbing one input pixel.
#
# Why not less (measured with bench/min_overlap.py and a Set5 sweep of the real VDSR, torch 2.13 CPU):
# - Random-init models are NOT a usable proxy: with PyTorch's default init the residual branches are tiny,
#   so the needed context collapses (tiled == whole within 1/255 at c = 8 for EDSR/MDSR baseline, 4 for
#   full EDSR, 6 for RRDB x4, 10 for RRDB x2, 2 for SRVGG, 0 for VDSR).
# - The one trained model we have, VDSR model_epoch_50.pth (radius 20), needs up to 11 px on Set5 (x3
#   bicubic input, 8x8 cores at 4 positions per image; butterfly/woman edges are the worst case), i.e.
#   about 55 % of its radius -- far above its random-init 0.
# So every family whose exact radius is modest uses it (VDSR 20, EDSR baseline 36, full EDSR 68, MDSR 44,
# SRVGG x4v3 34); RRDB (radius 349 px for x4) declares an estimate instead (`context_estimate`, rrdb.py).


def receptive_radius(family: str, params: Any) -> int:
    """Exact receptive-field radius of one output pixel, in input pixels (rounded up)."""
    return descriptor_for(family).receptive_radius(params)


def min_overlap_for(family: str, params: Any) -> int:
    """Input pixels of context a tile needs (see the measurements above)."""
    return descriptor_for(family).min_overlap(params)


# --- SRNet -------------------------------------------------------------------------------------------


class SRNet(nn.Module):
    """A network at one scale, [0,1] in -> [0,1]-range out (not clamped).

    family: the descriptor's name ("edsr" | "mdsr" | "rrdb" | "vdsr" | "srvgg"); descriptor: the rest
    scale: output size = input size * scale (1 for input kind "y-upscaled": it runs on a pre-upscaled Y)
    input_kind: "rgb", or "y-upscaled" (the caller upscales bicubically and passes the Y channel)
    in_channels: 3 (RGB) or 1 (Y: VDSR)
    size_multiple: input H and W must be multiples of this (RRDB x2: 2, x1: 4, else 1)
    min_overlap: input pixels of context a tile needs for tiled == whole within 1/255
    exact_overlap: the exact receptive radius (>= min_overlap): with that much context tiles equal the whole
    output_scale: an export that shrinks the net's output bicubically (ncnn animevideov3-x2/x3: x4, then x2/x3)
    """

    def __init__(self, module: nn.Module, *, scale: int | None = None, output_scale: int | None = None) -> None:
        super().__init__()
        descriptor = descriptor_of(module)
        self.descriptor: FamilyDescriptor[Any] = descriptor
        self.family: FamilyName = descriptor.name
        self.module = module
        params = module.params
        served = descriptor.scales(params)
        if served is None:  # the net runs at scale 1 on an input the caller has already enlarged
            if scale not in (None, 1):
                raise ValueError(f"this {self.family} model runs at scale 1 on a pre-upscaled input, not x{scale}")
            self.scale: int = 1
        elif scale is None:
            if len(served) != 1:
                raise ValueError(f"this {self.family} model serves scales {list(served)}: give the scale it runs at")
            self.scale = served[0]
        elif scale not in served:
            shown = f"x{served[0]}" if len(served) == 1 else f"scales {list(served)}"
            raise ValueError(f"this {self.family} model serves {shown}, not x{scale}")
        else:
            self.scale = scale
        self.input_kind: InputKind = descriptor.input_kind
        self.in_channels: int = descriptor.in_channels(params)
        self.size_multiple: int = descriptor.size_multiple(params)
        self.min_overlap: int = descriptor.min_overlap(params)
        self.exact_overlap: int = descriptor.receptive_radius(params)  # context at which tiles equal the whole
        self._value_range: float = descriptor.value_range(params)
        self.net_scale: int = self.scale
        if output_scale is not None:
            if served is None or len(served) != 1 or not 1 <= output_scale < self.scale:
                raise ValueError(f"a {self.family} x{self.scale} net cannot be resized to x{output_scale}")
            self.scale = output_scale
            self.min_overlap += 1  # the 4x4 bicubic taps reach 2 output pixels of the net: under 1 input pixel
            self.exact_overlap += 1

    def serves(self, scale: float) -> bool:
        """Can this net produce an x`scale` result? A "y-upscaled" net serves any scale > 1 (the caller
        upscales bicubically first and runs the net at scale 1); every other net only its own scale."""
        if self.input_kind == "y-upscaled":
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
        run = self.descriptor.forward_at_scale
        if self._value_range != 1.0:
            return run(self.module, x * self._value_range, self.net_scale) / self._value_range
        return run(self.module, x, self.net_scale)

    def extra_repr(self) -> str:
        resized = f" (net x{self.net_scale}, resized)" if self.net_scale != self.scale else ""
        return f"family={self.family}, scale={self.scale}{resized}, in_channels={self.in_channels}, " \
               f"size_multiple={self.size_multiple}, min_overlap={self.min_overlap}"


def to_srnets(module: nn.Module, *, output_scale: int | None = None) -> dict[int, SRNet]:
    """One SRNet per scale the module serves (MDSR: several sharing the module; VDSR: {1: ...}).
    output_scale: the net's output is resized bicubically to this scale (see SRNet)."""
    served = descriptor_of(module).scales(module.params)
    if served is None:
        return {1: SRNet(module)}
    if len(served) > 1:
        return {s: SRNet(module, scale=s) for s in served}
    net = SRNet(module, output_scale=output_scale)
    return {net.scale: net}

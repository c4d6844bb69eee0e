"""RRDBNet (ESRGAN, Wang et al. 2018) under the BasicSR module names, plus pure converters from the
two older ESRGAN key layouts.

RGB in [0, 1] -> RGB (not clamped). The trunk always upsamples x4 (nearest x2, conv, twice); the x2
and x1 variants of BasicSR/Real-ESRGAN fold the input first with pixel_unshuffle(2) / (4), which
multiplies `conv_first`'s input channels by 4 / 16 and requires H, W divisible by 2 / 4.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
from sr_cli.errors import UnsupportedCheckpointError

LRELU_SLOPE = 0.2
RESIDUAL_SCALE = 0.2  # both the RDB and the RRDB skip scale their branch by 0.2 (ESRGAN paper, sec. 3.1)
_UNSHUFFLE_BY_SCALE: dict[int, int] = {4: 1, 2: 2, 1: 4}


@dataclass(frozen=True)
class RRDBParams:
    num_in_ch: int = 3  # image channels, before any pixel_unshuffle
    num_out_ch: int = 3
    num_feat: int = 64  # nf
    num_block: int = 23  # nb
    num_grow_ch: int = 32  # gc
    scale: int = 4

    def __post_init__(self) -> None:
        if self.scale not in _UNSHUFFLE_BY_SCALE:
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {self.scale}")
        if min(self.num_in_ch, self.num_out_ch, self.num_feat, self.num_block, self.num_grow_ch) < 1:
            raise ValueError(f"RRDBNet sizes must be positive: {self}")

    @property
    def unshuffle(self) -> int:
        """pixel_unshuffle factor applied to the input (1 = none)."""
        return _UNSHUFFLE_BY_SCALE[self.scale]


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; returns conv5(...) * 0.2 + x."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        f, g = num_feat, num_grow_ch
        self.conv1 = _conv(f, g)
        self.conv2 = _conv(f + g, g)
        self.conv3 = _conv(f + 2 * g, g)
        self.conv4 = _conv(f + 3 * g, g)
        self.conv5 = _conv(f + 4 * g, f)

    def forward(self, x: Tensor) -> Tensor:
        # Activations in place and the 0.2-scaled skip as one add (torch.add's alpha): fewer passes over
        # memory, same values within float rounding. The growing torch.cat stays: in channels_last (the CPU
        # layout, docs/benchmarks.md) a preallocated feature buffer measured slower, because a conv reading
        # a channel slice of an NHWC buffer gets a strided input and copies it anyway.
        x1 = F.leaky_relu(self.conv1(x), LRELU_SLOPE, inplace=True)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), LRELU_SLOPE, inplace=True)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), LRELU_SLOPE, inplace=True)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), LRELU_SLOPE, inplace=True)
        return torch.add(x, self.conv5(torch.cat((x, x1, x2, x3, x4), 1)), alpha=RESIDUAL_SCALE)


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return torch.add(x, self.rdb3(self.rdb2(self.rdb1(x))), alpha=RESIDUAL_SCALE)


class RRDBNet(nn.Module):
    def __init__(self, params: RRDBParams) -> None:
        super().__init__()
        self.params = params
        f = params.num_feat
        self.conv_first = _conv(params.num_in_ch * params.unshuffle**2, f)
        self.body = nn.Sequential(*[RRDB(f, params.num_grow_ch) for _ in range(params.num_block)])
        self.conv_body = _conv(f, f)
        self.conv_up1 = _conv(f, f)
        self.conv_up2 = _conv(f, f)
        self.conv_hr = _conv(f, f)
        self.conv_last = _conv(f, params.num_out_ch)

    def forward(self, x: Tensor) -> Tensor:
        u = self.params.unshuffle
        feat = F.pixel_unshuffle(x, u) if u > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")), LRELU_SLOPE, inplace=True)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")), LRELU_SLOPE, inplace=True)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LRELU_SLOPE, inplace=True))


# --- converters from foreign layouts to the BasicSR names (pure: dict in, new dict out) -----------------

_2019_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^conv_first\.(weight|bias)$"), r"conv_first.\1"),
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)$"), r"body.\1.rdb\2.conv\3.\4"),
    (re.compile(r"^trunk_conv\.(weight|bias)$"), r"conv_body.\1"),
    (re.compile(r"^upconv([12])\.(weight|bias)$"), r"conv_up\1.\2"),
    (re.compile(r"^HRconv\.(weight|bias)$"), r"conv_hr.\1"),
    (re.compile(r"^conv_last\.(weight|bias)$"), r"conv_last.\1"),
)

# The 2018 layout (xinntao/ESRGAN architecture.py, converted by its transer_RRDB_models.py) is one flat
# Sequential: model.0 first conv; model.1 = ShortcutBlock whose `sub` holds the nb RRDBs then the trunk
# conv at index nb; model.2/5 are the nearest upsamples, model.3/6 their convs (4/7 activations);
# model.8 the HR conv, model.10 the last conv. Each RDB conv is a Sequential(conv[, act]): suffix `.0`.
_2018_FIXED: dict[str, str] = {"model.0": "conv_first", "model.3": "conv_up1", "model.6": "conv_up2",
                               "model.8": "conv_hr", "model.10": "conv_last"}
_2018_RDB = re.compile(r"^model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)$")
_2018_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")


def _refuse_leftovers(layout: str, leftovers: list[str]) -> None:
    if leftovers:
        shown = ", ".join(leftovers[:5]) + (f" (+{len(leftovers) - 5} more)" if len(leftovers) > 5 else "")
        raise UnsupportedCheckpointError(f"{layout} RRDB checkpoint has keys this converter does not know: {shown}")


def rename_esrgan_2019(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """`RRDB_trunk.N.RDBk.convj`, `trunk_conv`, `upconv1/2`, `HRconv` (xinntao/ESRGAN RRDBNet_arch.py,
    the official RRDB_ESRGAN_x4 / RRDB_PSNR_x4 files) -> BasicSR names; returns (renamed, unknown keys)."""
    out: dict[str, Tensor] = {}
    leftovers: list[str] = []
    for key, value in sd.items():
        for pattern, replacement in _2019_RENAMES:
            if pattern.match(key):
                out[pattern.sub(replacement, key)] = value
                break
        else:
            leftovers.append(key)
    return out, leftovers


def rename_esrgan_2018(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """`model.0`, `model.1.sub.N.RDBk.convj.0`, `model.1.sub.<nb>`, `model.3/6/8/10` -> BasicSR names;
    returns (renamed, unknown keys). The trunk conv is the `model.1.sub.<i>` entry without an `RDB`
    level; its index must be exactly the number of RRDBs."""
    out: dict[str, Tensor] = {}
    leftovers: list[str] = []
    rrdb_indices = {int(m.group(1)) for k in sd if (m := _2018_RDB.match(k))}
    trunk_index = max(rrdb_indices) + 1 if rrdb_indices else 0
    for key, value in sd.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in _2018_FIXED and leaf in ("weight", "bias"):
            out[f"{_2018_FIXED[prefix]}.{leaf}"] = value
        elif m := _2018_RDB.match(key):
            out[f"body.{m.group(1)}.rdb{m.group(2)}.conv{m.group(3)}.{m.group(4)}"] = value
        elif (m := _2018_TRUNK.match(key)) and int(m.group(1)) == trunk_index:
            out[f"conv_body.{m.group(2)}"] = value
        else:
            leftovers.append(key)
    return out, leftovers


def convert_esrgan_2019(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """ESRGAN 2019 layout -> BasicSR names (see `rename_esrgan_2019`). Unknown keys are refused."""
    out, leftovers = rename_esrgan_2019(sd)
    _refuse_leftovers("ESRGAN 2019", leftovers)
    return out


def convert_esrgan_2018(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """ESRGAN 2018 layout -> BasicSR names (see `rename_esrgan_2018`). Unknown keys are refused."""
    out, leftovers = rename_esrgan_2018(sd)
    _refuse_leftovers("ESRGAN 2018", leftovers)
    return out


def to_esrgan_2019(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of `convert_esrgan_2019` (used to write test fixtures and for round-trip checks)."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        key = re.sub(r"^body\.(\d+)\.rdb([123])\.", r"RRDB_trunk.\1.RDB\2.", key)
        key = re.sub(r"^conv_body\.", "trunk_conv.", key)
        key = re.sub(r"^conv_up([12])\.", r"upconv\1.", key)
        key = re.sub(r"^conv_hr\.", "HRconv.", key)
        out[key] = value
    return out


def to_esrgan_2018(sd: dict[str, Tensor], num_block: int) -> dict[str, Tensor]:
    """Inverse of `convert_esrgan_2018` for the x4 layout (fixtures and round-trip checks)."""
    inverse = {v: k for k, v in _2018_FIXED.items()}
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in inverse:
            out[f"{inverse[prefix]}.{leaf}"] = value
        elif prefix == "conv_body":
            out[f"model.1.sub.{num_block}.{leaf}"] = value
        elif m := re.match(r"^body\.(\d+)\.rdb([123])\.conv([1-5])$", prefix):
            out[f"model.1.sub.{m.group(1)}.RDB{m.group(2)}.conv{m.group(3)}.0.{leaf}"] = value
        else:
            raise ValueError(f"not a BasicSR RRDBNet key: {key}")
    return out


# --- the descriptor ----------------------------------------------------------------------------------


def place(sd: dict[str, Tensor], hints: PlaceHints) -> Placement:
    """BasicSR keys as they are; the two ESRGAN layouts renamed (unknown keys refused, never dropped)."""
    if any(k.startswith("RRDB_trunk.") for k in sd):
        layout, canonical, leftovers = "esrgan-2019", *rename_esrgan_2019(sd)
    elif "model.0.weight" in sd or any(k.startswith("model.1.sub.") for k in sd):
        layout, canonical, leftovers = "esrgan-2018", *rename_esrgan_2018(sd)
    else:
        layout, canonical, leftovers = "basicsr", dict(sd), []
    first = need(canonical, "conv_first.weight", 4)
    last = need(canonical, "conv_last.weight", 4)
    num_feat, in_ch, num_out_ch = first.shape[0], first.shape[1], last.shape[0]
    # BasicSR folds the input with pixel_unshuffle for x2 (4x channels) and x1 (16x); it assumes the
    # image has as many channels in as out, and so do we.
    by_ratio = {u * u: scale for scale, u in _UNSHUFFLE_BY_SCALE.items()}
    if in_ch % num_out_ch or in_ch // num_out_ch not in by_ratio:
        raise CannotPlace(f"conv_first takes {in_ch} channels for {num_out_ch} out: not x4, x2 (4x) or x1 (16x)")
    scale = by_ratio[in_ch // num_out_ch]
    num_block = contiguous_count(indices(canonical, r"^body\.(\d+)\.rdb1\.conv1\.weight$"), "RRDB")
    if num_block == 0:
        raise CannotPlace("no RRDB blocks", RRDBParams(num_feat=num_feat, scale=scale), canonical)
    grow = need(canonical, "body.0.rdb1.conv1.weight", 4).shape[0]
    params = RRDBParams(num_in_ch=num_out_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
                        num_grow_ch=grow, scale=scale)
    if leftovers:  # refused, never dropped: they show up as "unexpected" in the report
        raise CannotPlace(f"unknown {layout} keys", params, {**canonical, **{k: sd[k] for k in leftovers}}, layout)
    return Placement(layout, params, canonical)


def receptive_radius(params: RRDBParams) -> int:
    u = params.unshuffle
    grid = 1 + params.num_block * 3 * 5 + 1  # conv_first, 3 RDBs x 5 convs per RRDB, conv_body
    upsampled = 1 / 2 + 3 / 4  # conv_up1 at 2x; conv_up2, conv_hr, conv_last at 4x
    return math.ceil((grid + upsampled) * u + (u - 1))  # the net's grid is u image pixels wide


# RRDB's exact radius (349 px for x4, 698 for x2) would make tiles mostly overlap, so tiles get a measured
# context instead (bench/min_overlap.py, the real Real-ESRGAN x4plus weights, docs/benchmarks.md): the
# engine with the 16 px fade inside the context, on strips of three Set14 photos cut into 2 and 3 tiles,
# is off the whole pass by at most 13.6 / 2.5 / 2.4 / 0.5 levels at 32 / 48 / 64 / 80 px (bridge is the
# worst photo); a hard-cropped tile needs about 80 px too (worst pixel: 64 px 4.1 levels, 76 px 1.2). So
# 80 px: the smallest measured context within 1 level. The old 48 px estimate (+16 px fade on top) gave
# 2.4 levels. x2/x1 nets use 80 px of their own grid (the same receptive field in net pixels; unmeasured:
# no trained x2 RRDB file is here).
CONTEXT_ON_GRID = 80
GROW_CHANNELS = 32  # ESRGAN paper: gc = 32


def _train_params(sizes: TrainSizes) -> RRDBParams:
    (scale,) = sizes.scales
    return RRDBParams(num_in_ch=3, num_out_ch=3, num_feat=sizes.features, num_block=sizes.blocks,
                      num_grow_ch=GROW_CHANNELS, scale=scale)


DESCRIPTOR: FamilyDescriptor[RRDBParams] = FamilyDescriptor(
    name="rrdb",
    label="RRDB",
    params_class=RRDBParams,
    module_class=RRDBNet,
    layouts=("basicsr", "esrgan-2019", "esrgan-2018"),
    place=place,
    scales=lambda params: (params.scale,),
    input_kind="rgb",
    in_channels=lambda params: params.num_in_ch,
    value_range=lambda params: 1.0,
    receptive_radius=receptive_radius,
    size_multiple=lambda params: params.unshuffle,
    context_estimate=lambda params: CONTEXT_ON_GRID * params.unshuffle,
    # x2/x1 fold the input with pixel_unshuffle, which changes conv_first's input channels; the x4
    # upsampler conv_up1/2 is the same at every scale
    scale_specific_prefixes=("conv_first.",),
    # NHWC: x1.3 in CPU time for the whole x4plus net, x1.67 for one dense block (bench/peers.py and
    # docs/benchmarks.md, "Whole image on the CPU"); the concatenations cost less than NCHW convs lose
    channels_last_on_cpu=True,  # x1.31 CPU time on the whole net (one dense block x1.67), docs/benchmarks.md
    train_params=_train_params,
)

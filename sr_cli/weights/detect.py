"""Place a flat {name: tensor} dict: family, key layout, hyperparameters, canonical state dict.

Every hyperparameter visible in shapes is read from them (blocks, features, scale(s), nb/nf/gc,
channels, layers, num_conv); the conversion to canonical names is then checked against the state dict
of the model those hyperparameters build -- same keys, same shapes, both ways -- so a placed file always
loads with `strict=True`. res_scale is invisible in shapes: see `_res_scale`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from sr_cli.archs.edsr import DIV2K_RGB_MEAN, EDSRParams
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.rrdb import RRDBParams, rename_esrgan_2018, rename_esrgan_2019
from sr_cli.archs.runtime import AnyParams, build_module
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.archs.vdsr import VDSRParams
from sr_cli.errors import UnsupportedCheckpointError
from sr_cli.weights.safetensors_io import META_FAMILY, META_HYPERPARAMETERS, META_LAYOUT, META_OUTPUT_SCALE, SR_LAYOUT

PARAMS_CLASSES: dict[str, type] = {
    "edsr": EDSRParams, "mdsr": MDSRParams, "rrdb": RRDBParams, "vdsr": VDSRParams, "srvgg": SRVGGParams,
}
FULL_EDSR_FEATS = 256  # the published full EDSR (n_feats 256) was trained with res_scale 0.1
FULL_EDSR_RES_SCALE = 0.1


@dataclass(frozen=True)
class DetectedCheckpoint:
    family: str  # edsr | mdsr | rrdb | vdsr | srvgg
    layout: str  # edsr-pytorch | esrgan-2018 | esrgan-2019 | basicsr | vdsr-pytorch | real-esrgan-srvgg | sr-safetensors
    params: AnyParams
    scales: list[int] | None  # None for VDSR (it serves any scale through the caller's bicubic)
    state_dict: dict[str, Tensor]  # canonical keys, in the built model's order; the file's tensors, unchanged
    num_params: int
    res_scale_source: str | None = None  # EDSR/MDSR: "argument" | "metadata" | "full-EDSR shape (256 feats)" | "default"
    notes: tuple[str, ...] = ()
    output_scale: int | None = None  # the net's output is then resized bicubically to this (see META_OUTPUT_SCALE)

    def hyperparameters(self) -> dict[str, Any]:
        """The Params dataclass as plain JSON-able values (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self.params, f.name), tuple) else v)
                for f in fields(self.params)}


class _CannotPlace(Exception):
    """A family's signature keys are absent or inconsistent; carries the best guess for the report."""

    def __init__(self, reason: str, params: AnyParams | None = None, state_dict: dict[str, Tensor] | None = None,
                 layout: str | None = None):
        super().__init__(reason)
        self.params = params
        self.state_dict = state_dict
        self.layout = layout


@dataclass
class _Attempt:
    family: str
    layout: str
    params: AnyParams
    state_dict: dict[str, Tensor]
    res_scale_source: str | None = None
    notes: tuple[str, ...] = ()


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _need(sd: dict[str, Tensor], key: str, ndim: int) -> Tensor:
    t = sd.get(key)
    if t is None:
        raise _CannotPlace(f"no {key}")
    if t.dim() != ndim:
        raise _CannotPlace(f"{key} has shape {list(t.shape)}, expected {ndim} dimensions")
    return t


def _indices(sd: dict[str, Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _contiguous_count(indices: list[int], what: str) -> int:
    if indices != list(range(len(indices))):
        raise _CannotPlace(f"{what} indices are not 0..n-1: {indices[:6]}")
    return len(indices)


def _res_scale(n_feats: int, res_scale: float | None, meta_params: dict[str, Any] | None,
               full_rule: bool) -> tuple[float, str]:
    """res_scale cannot be seen in shapes: argument, else our metadata, else 0.1 for the 256-feature
    full EDSR (the only published model trained with it), else 1.0 (baselines, MDSR)."""
    if res_scale is not None:
        return float(res_scale), "argument"
    if meta_params and "res_scale" in meta_params:
        return float(meta_params["res_scale"]), "metadata"
    if full_rule and n_feats == FULL_EDSR_FEATS:
        return FULL_EDSR_RES_SCALE, "full-EDSR shape (256 feats)"
    return 1.0, "default"


def _rgb_range(sd: dict[str, Tensor]) -> tuple[float, tuple[str, ...]]:
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


def _upsampler_scale(sd: dict[str, Tensor], prefix: str, n_feats: int) -> int:
    first = _need(sd, f"{prefix}.0.weight", 4)
    if first.shape[0] == 9 * n_feats:
        return 3
    if first.shape[0] == 4 * n_feats:
        return 4 if f"{prefix}.2.weight" in sd else 2
    raise _CannotPlace(f"{prefix}.0.weight has {first.shape[0]} outputs, not 4 or 9 x {n_feats}")


# --- family placers: tensors -> _Attempt (or _CannotPlace) ---------------------------------------------


def _place_edsr(sd: dict[str, Tensor], res_scale: float | None, meta: dict[str, Any] | None) -> _Attempt:
    head = _need(sd, "head.0.weight", 4)
    n_feats, n_colors = head.shape[0], head.shape[1]
    n_resblocks = _contiguous_count(_indices(sd, r"^body\.(\d+)\.body\.0\.weight$"), "body")
    scale = _upsampler_scale(sd, "tail.0", n_feats)
    rs, source = _res_scale(n_feats, res_scale, meta, full_rule=True)
    rgb_range, notes = _rgb_range(sd)
    if n_resblocks == 0:
        raise _CannotPlace("no residual blocks", EDSRParams(scale=scale), sd)
    params = EDSRParams(n_resblocks=n_resblocks, n_feats=n_feats, scale=scale, res_scale=rs,
                        rgb_range=rgb_range, n_colors=n_colors)
    return _Attempt("edsr", "edsr-pytorch", params, dict(sd), source, notes)


def _place_mdsr(sd: dict[str, Tensor], res_scale: float | None, meta: dict[str, Any] | None) -> _Attempt:
    head = _need(sd, "head.0.weight", 4)
    n_feats = head.shape[0]
    n_resblocks = _contiguous_count(_indices(sd, r"^body\.(\d+)\.body\.0\.weight$"), "body")
    branches = _contiguous_count(_indices(sd, r"^upsample\.(\d+)\.0\.weight$"), "upsample")
    if branches == 0 or not any(k.startswith("pre_process.") for k in sd):
        raise _CannotPlace("no pre_process/upsample branches")
    scales = tuple(_upsampler_scale(sd, f"upsample.{i}", n_feats) for i in range(branches))
    if len(set(scales)) != len(scales):
        raise _CannotPlace(f"upsample branches repeat a scale: {list(scales)}")
    rs, source = _res_scale(n_feats, res_scale, meta, full_rule=False)
    rgb_range, notes = _rgb_range(sd)
    params = MDSRParams(n_resblocks=n_resblocks, n_feats=n_feats, scales=scales, res_scale=rs, rgb_range=rgb_range)
    return _Attempt("mdsr", "edsr-pytorch", params, dict(sd), source, notes)


def _place_rrdb(sd: dict[str, Tensor]) -> _Attempt:
    if any(k.startswith("RRDB_trunk.") for k in sd):
        layout, rename = "esrgan-2019", rename_esrgan_2019
    elif "model.0.weight" in sd or any(k.startswith("model.1.sub.") for k in sd):
        layout, rename = "esrgan-2018", rename_esrgan_2018
    else:
        layout, rename = "basicsr", None
    if rename is not None:
        canonical, leftovers = rename(sd)
    else:
        canonical, leftovers = dict(sd), []
    first = _need(canonical, "conv_first.weight", 4)
    last = _need(canonical, "conv_last.weight", 4)
    num_feat, in_ch, num_out_ch = first.shape[0], first.shape[1], last.shape[0]
    # BasicSR folds the input with pixel_unshuffle for x2 (4x channels) and x1 (16x); it assumes the
    # image has as many channels in as out, and so do we.
    by_ratio = {1: 4, 4: 2, 16: 1}
    if in_ch % num_out_ch or in_ch // num_out_ch not in by_ratio:
        raise _CannotPlace(f"conv_first takes {in_ch} channels for {num_out_ch} out: not x4, x2 (4x) or x1 (16x)")
    scale = by_ratio[in_ch // num_out_ch]
    num_block = _contiguous_count(_indices(canonical, r"^body\.(\d+)\.rdb1\.conv1\.weight$"), "RRDB")
    grow = _need(canonical, "body.0.rdb1.conv1.weight", 4).shape[0] if num_block else 32
    if num_block == 0:
        raise _CannotPlace("no RRDB blocks", RRDBParams(num_feat=num_feat, scale=scale), canonical)
    params = RRDBParams(num_in_ch=num_out_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
                        num_grow_ch=grow, scale=scale)
    if leftovers:  # refused, never dropped: they show up as "unexpected" in the report
        raise _CannotPlace(f"unknown {layout} keys", params, {**canonical, **{k: sd[k] for k in leftovers}}, layout)
    return _Attempt("rrdb", layout, params, canonical)


def _place_vdsr(sd: dict[str, Tensor]) -> _Attempt:
    first = _need(sd, "input.weight", 4)
    _need(sd, "output.weight", 4)
    layers = _contiguous_count(_indices(sd, r"^residual_layer\.(\d+)\.conv\.weight$"), "residual_layer")
    params = VDSRParams(num_layers=layers + 2, num_features=first.shape[0])
    return _Attempt("vdsr", "vdsr-pytorch", params, dict(sd))


def _place_srvgg(sd: dict[str, Tensor]) -> _Attempt:
    first = _need(sd, "body.0.weight", 4)
    _need(sd, "body.1.weight", 1)  # PReLU slopes: the only activation with weights (act_type='prelu')
    indices = _indices(sd, r"^body\.(\d+)\.weight$")
    last_index = indices[-1]
    if last_index % 2 or last_index < 2:
        raise _CannotPlace(f"body ends at index {last_index}; SRVGGNetCompact ends on an even conv index")
    last = _need(sd, f"body.{last_index}.weight", 4)
    num_in_ch, num_feat = first.shape[1], first.shape[0]
    ratio, rem = divmod(last.shape[0], num_in_ch)
    upscale = round(ratio ** 0.5)
    if rem or upscale * upscale != ratio:
        raise _CannotPlace(f"last conv has {last.shape[0]} outputs: not {num_in_ch} x upscale^2")
    params = SRVGGParams(num_in_ch=num_in_ch, num_out_ch=num_in_ch, num_feat=num_feat,
                         num_conv=(last_index - 2) // 2, upscale=upscale)
    return _Attempt("srvgg", "real-esrgan-srvgg", params, dict(sd))


_DEFAULT_LAYOUT = {"edsr": "edsr-pytorch", "mdsr": "edsr-pytorch", "rrdb": "basicsr", "vdsr": "vdsr-pytorch",
                   "srvgg": "real-esrgan-srvgg"}


# --- checking an attempt against the model it builds -------------------------------------------------


def expected_shapes(family: str, params: AnyParams) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the model's state dict, built on the meta device (no memory, no init time)."""
    return dict(_expected_shapes_cached(family, params))


@functools.lru_cache(maxsize=64)
def _expected_shapes_cached(family: str, params: AnyParams) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        module = build_module(family, params)
    return tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())


@dataclass
class _Mismatch:
    matched: int
    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[str]

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)


def _compare(expected: dict[str, tuple[int, ...]], given: dict[str, Tensor]) -> _Mismatch:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [f"{k} {list(_shape(given[k]))} (expected {list(expected[k])})"
             for k in expected if k in given and _shape(given[k]) != expected[k]]
    return _Mismatch(len(expected) - len(missing) - len(wrong), missing, unexpected, wrong)


def _finish(attempt: _Attempt) -> DetectedCheckpoint:
    order = expected_shapes(attempt.family, attempt.params)
    sd = {k: attempt.state_dict[k] for k in order}
    scales: list[int] | None
    p = attempt.params
    if isinstance(p, EDSRParams) or isinstance(p, RRDBParams):
        scales = [p.scale]
    elif isinstance(p, MDSRParams):
        scales = sorted(p.scales)
    elif isinstance(p, SRVGGParams):
        scales = [p.upscale]
    else:
        scales = None
    return DetectedCheckpoint(attempt.family, attempt.layout, attempt.params, scales, sd,
                              sum(t.numel() for t in sd.values()), attempt.res_scale_source, attempt.notes)


def _first(keys: list[str], n: int = 4) -> str:
    return "[" + ", ".join(keys[:n]) + (f", ... +{len(keys) - n}" if len(keys) > n else "") + "]"


def _from_metadata(tensors: dict[str, Tensor], metadata: dict[str, str], res_scale: float | None,
                   source: str) -> _Attempt:
    family = metadata.get(META_FAMILY, "")
    if family not in PARAMS_CLASSES:
        raise UnsupportedCheckpointError(f"{source}: sr metadata names unknown family {family!r}; re-export the file")
    try:
        values = json.loads(metadata.get(META_HYPERPARAMETERS, "{}"))
        if family == "mdsr" and "scales" in values:
            values["scales"] = tuple(values["scales"])
        if res_scale is not None and "res_scale" in values:
            values["res_scale"] = float(res_scale)
        params = PARAMS_CLASSES[family](**values)
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise UnsupportedCheckpointError(f"{source}: bad sr.hyperparameters metadata ({error}); re-export the file") from None
    rs_source = ("argument" if res_scale is not None else "metadata") if family in ("edsr", "mdsr") else None
    return _Attempt(family, SR_LAYOUT, params, dict(tensors), rs_source)


def detect(tensors: dict[str, Tensor], *, res_scale: float | None = None, metadata: dict[str, str] | None = None,
           source: str = "checkpoint") -> DetectedCheckpoint:
    """Family, layout, hyperparameters and canonical state dict of a flat tensor dict (see module doc).

    `source` names the file in error messages. Raises UnsupportedCheckpointError with the closest match
    (family, layout, first missing/unexpected keys) when nothing fits exactly. A `sr.output_scale` entry
    in the metadata (an ncnn export ending in a bicubic resize) makes the result serve that scale."""
    detected = _detect_network(tensors, res_scale=res_scale, metadata=metadata, source=source)
    text = (metadata or {}).get(META_OUTPUT_SCALE)
    if text is None:
        return detected
    own = detected.scales or []
    if not text.isdigit() or len(own) != 1 or not 1 <= int(text) < own[0]:
        raise UnsupportedCheckpointError(f"{source}: {META_OUTPUT_SCALE} {text!r} is not a whole scale below the "
                                         f"network's x{own[0] if own else '?'}; re-export the file")
    scale = int(text)
    note = (f"runs the x{own[0]} network, then resizes its output to x{scale} with bicubic (a = -0.75, no "
            f"antialiasing: ncnn's Interp type 3, the same kernel as PyTorch's), as this export does")
    return dataclasses.replace(detected, scales=[scale], output_scale=scale, notes=detected.notes + (note,))


def _detect_network(tensors: dict[str, Tensor], *, res_scale: float | None, metadata: dict[str, str] | None,
                    source: str) -> DetectedCheckpoint:
    if not tensors:
        raise UnsupportedCheckpointError(f"{source}: not a supported checkpoint: it holds no tensors")
    metadata = metadata or {}
    if metadata.get(META_LAYOUT) == SR_LAYOUT:
        attempt = _from_metadata(tensors, metadata, res_scale, source)
        mismatch = _compare(expected_shapes(attempt.family, attempt.params), attempt.state_dict)
        if not mismatch.exact:
            raise UnsupportedCheckpointError(
                f"{source}: not a supported checkpoint: its sr metadata says {attempt.family} {attempt.params} but "
                f"missing keys {_first(mismatch.missing)}, unexpected {_first(mismatch.unexpected)}, "
                f"wrong shapes {_first(mismatch.wrong_shape, 2)}"
            )
        return _finish(attempt)

    meta_params: dict[str, Any] | None = None
    if META_HYPERPARAMETERS in metadata:
        try:
            meta_params = json.loads(metadata[META_HYPERPARAMETERS])
        except json.JSONDecodeError:
            meta_params = None
    placers: list[tuple[str, Callable[[], _Attempt]]] = [
        ("mdsr", lambda: _place_mdsr(tensors, res_scale, meta_params)),
        ("edsr", lambda: _place_edsr(tensors, res_scale, meta_params)),
        ("rrdb", lambda: _place_rrdb(tensors)),
        ("vdsr", lambda: _place_vdsr(tensors)),
        ("srvgg", lambda: _place_srvgg(tensors)),
    ]
    best: tuple[int, int, str, str, _Mismatch] | None = None
    for family, place in placers:
        try:
            attempt = place()
        except _CannotPlace as failure:
            params = failure.params or PARAMS_CLASSES[family]()
            given = failure.state_dict if failure.state_dict is not None else tensors
            layout = failure.layout or _DEFAULT_LAYOUT[family]
        except ValueError:  # a Params dataclass rejected the values read from the shapes
            params, given, layout = PARAMS_CLASSES[family](), tensors, _DEFAULT_LAYOUT[family]
        else:
            mismatch = _compare(expected_shapes(attempt.family, attempt.params), attempt.state_dict)
            if mismatch.exact:
                if res_scale is not None and attempt.family not in ("edsr", "mdsr"):
                    attempt.notes += (f"res_scale {res_scale} ignored: {attempt.family} has no residual scaling option",)
                return _finish(attempt)
            params, given, layout = attempt.params, attempt.state_dict, attempt.layout
        mismatch = _compare(expected_shapes(family, params), given)
        score = (mismatch.matched, -(len(mismatch.missing) + len(mismatch.unexpected)))
        if best is None or score > best[:2]:
            best = (*score, family, layout, mismatch)
    assert best is not None
    _, _, family, layout, mismatch = best
    shapes = f", wrong shapes {_first(mismatch.wrong_shape, 2)}" if mismatch.wrong_shape else ""
    raise UnsupportedCheckpointError(
        f"{source}: not a supported checkpoint: closest match {family} ({layout}), missing keys "
        f"{_first(mismatch.missing)}, unexpected {_first(mismatch.unexpected)}{shapes}"
    )

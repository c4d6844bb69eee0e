"""Place a flat {name: tensor} dict: family, key layout, hyperparameters, canonical state dict.

Every hyperparameter visible in shapes is read from them (blocks, features, scale(s), nb/nf/gc,
channels, layers, num_conv); the conversion to canonical names is then checked against the state dict
of the model those hyperparameters build -- same keys, same shapes, both ways -- so a placed file always
loads with `strict=True`. res_scale is invisible in shapes: see `edsr.res_scale_from`.

Each family's reading of the shapes is its descriptor's `place` (archs/<family>.py); this module walks
the descriptors in `archs.families.FAMILIES` order and knows no family by name.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from sr_cli.archs.descriptor import (
    CannotPlace,
    FamilyDescriptor,
    FamilyName,
    HyperparameterError,
    PlaceHints,
    Placement,
)
from sr_cli.archs.families import FAMILIES, FAMILY_NAMES, descriptor_for
from sr_cli.archs.runtime import AnyParams
from sr_cli.errors import UnsupportedCheckpointError
from sr_cli.weights.safetensors_io import META_FAMILY, META_HYPERPARAMETERS, META_LAYOUT, META_OUTPUT_SCALE, SR_LAYOUT


@dataclass(frozen=True)
class DetectedCheckpoint:
    family: FamilyName  # edsr | mdsr | rrdb | vdsr | srvgg
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


@dataclass
class _Attempt:
    family: FamilyName
    layout: str
    params: Any
    state_dict: dict[str, Tensor]
    res_scale_source: str | None = None
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, descriptor: FamilyDescriptor[Any], placement: Placement) -> _Attempt:
        return cls(descriptor.name, placement.layout, placement.params, placement.state_dict,
                   placement.res_scale_source, placement.notes)


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


# --- checking an attempt against the model it builds -------------------------------------------------


def expected_shapes(family: str, params: Any) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the model's state dict, built on the meta device (no memory, no init time)."""
    return dict(_expected_shapes_cached(family, params))


@functools.lru_cache(maxsize=64)
def _expected_shapes_cached(family: str, params: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        module = descriptor_for(family).build(params)
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
    served = descriptor_for(attempt.family).scales(attempt.params)
    scales = sorted(served) if served is not None else None
    return DetectedCheckpoint(attempt.family, attempt.layout, attempt.params, scales, sd,
                              sum(t.numel() for t in sd.values()), attempt.res_scale_source, attempt.notes)


def _first(keys: list[str], n: int = 4) -> str:
    return "[" + ", ".join(keys[:n]) + (f", ... +{len(keys) - n}" if len(keys) > n else "") + "]"


def _finite_res_scale(values: dict[str, Any]) -> float | None:
    """A foreign file's sr.hyperparameters res_scale, when it is a usable number (else ignored)."""
    value = values.get("res_scale")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def _from_metadata(tensors: dict[str, Tensor], metadata: dict[str, str], res_scale: float | None,
                   source: str) -> _Attempt:
    """Our own files: the metadata names the family and its hyperparameters. Nothing in it is trusted:
    the values are checked against the family's schema (types, ranges), then against what the tensors
    show, before anything is built (a hostile `num_layers: 20000000` is refused at once)."""
    family = metadata.get(META_FAMILY, "")
    if family not in FAMILY_NAMES:
        raise UnsupportedCheckpointError(f"{source}: sr metadata names unknown family {family!r}; re-export the file")
    descriptor = descriptor_for(family)
    try:
        values = json.loads(metadata.get(META_HYPERPARAMETERS, "{}"))
        claimed = descriptor.params_from(values, require_all=False)
    except (json.JSONDecodeError, HyperparameterError) as error:
        raise UnsupportedCheckpointError(f"{source}: bad sr.hyperparameters metadata ({error}); re-export the file") from None
    hints = PlaceHints(res_scale=res_scale, metadata_res_scale=getattr(claimed, "res_scale", None))
    try:
        placement = descriptor.place(tensors, hints)
    except (CannotPlace, ValueError) as error:
        raise UnsupportedCheckpointError(
            f"{source}: not a supported checkpoint: its sr metadata says {family} but its tensors are not a "
            f"{family} model ({error}); re-export the file") from None
    if placement.layout != descriptor.layouts[0]:
        raise UnsupportedCheckpointError(
            f"{source}: not a supported checkpoint: its sr metadata says {family} but its keys are in the "
            f"{placement.layout} layout, not {descriptor.layouts[0]}; re-export the file")
    given = set(values) - set(descriptor.shape_invisible)
    contradictions = [f"{name}={getattr(claimed, name)!r}" for name in sorted(given)
                      if getattr(claimed, name) != getattr(placement.params, name)]
    if contradictions:
        seen = ", ".join(f"{name.split('=')[0]}={getattr(placement.params, name.split('=')[0])!r}"
                         for name in contradictions)
        raise UnsupportedCheckpointError(
            f"{source}: not a supported checkpoint: its sr metadata says {family} {', '.join(contradictions)} "
            f"but its tensors hold {seen}; re-export the file")
    return _Attempt(descriptor.name, SR_LAYOUT, placement.params, placement.state_dict, placement.res_scale_source,
                    placement.notes)


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

    meta_res_scale: float | None = None
    if META_HYPERPARAMETERS in metadata:
        try:
            meta_values = json.loads(metadata[META_HYPERPARAMETERS])
        except json.JSONDecodeError:
            meta_values = None
        if isinstance(meta_values, dict):
            meta_res_scale = _finite_res_scale(meta_values)
    hints = PlaceHints(res_scale=res_scale, metadata_res_scale=meta_res_scale)
    best: tuple[int, int, str, str, _Mismatch] | None = None
    for descriptor in FAMILIES:
        family = descriptor.name
        params: Any
        try:
            attempt = _Attempt.of(descriptor, descriptor.place(tensors, hints))
        except CannotPlace as failure:
            params = failure.params or descriptor.params_class()
            given = failure.state_dict if failure.state_dict is not None else tensors
            layout = failure.layout or descriptor.layouts[0]
        except ValueError:  # a Params dataclass rejected the values read from the shapes
            params, given, layout = descriptor.params_class(), tensors, descriptor.layouts[0]
        else:
            mismatch = _compare(expected_shapes(attempt.family, attempt.params), attempt.state_dict)
            if mismatch.exact:
                if res_scale is not None and not descriptor.shape_invisible:
                    attempt.notes += (f"res_scale {res_scale} ignored: {attempt.family} has no residual scaling option",)
                return _finish(attempt)
            params, given, layout = attempt.params, attempt.state_dict, attempt.layout
        mismatch = _compare(expected_shapes(family, params), given)
        score = (mismatch.matched, -(len(mismatch.missing) + len(mismatch.unexpected)))
        if best is None or score > best[:2]:
            best = (*score, family, layout, mismatch)
    assert best is not None
    _, _, closest, layout, mismatch = best
    shapes = f", wrong shapes {_first(mismatch.wrong_shape, 2)}" if mismatch.wrong_shape else ""
    raise UnsupportedCheckpointError(
        f"{source}: not a supported checkpoint: closest match {closest} ({layout}), missing keys "
        f"{_first(mismatch.missing)}, unexpected {_first(mismatch.unexpected)}{shapes}"
    )

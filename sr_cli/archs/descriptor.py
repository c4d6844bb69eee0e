"""`FamilyDescriptor`: everything sr knows about one model family, in one typed record.

Each `archs/<family>.py` declares one `DESCRIPTOR`; `archs/families.py` lists them. The rest of the
program asks the descriptor (which scales, what input, how much tile context, how to read a state
dict) instead of testing the family's name. Pure: no I/O, and importing it registers nothing.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from torch import Tensor, nn

FamilyName = Literal["edsr", "mdsr", "rrdb", "vdsr", "srvgg"]
# "rgb": the net takes the RGB image and enlarges it itself; "y-upscaled": it refines the Y channel of
# an image the caller has already enlarged bicubically (so it serves any factor above 1, at net scale 1).
InputKind = Literal["rgb", "y-upscaled"]
ParamsT = TypeVar("ParamsT")


# --- reading a state dict: shared helpers for the family placers ---------------------------------------


class CannotPlace(Exception):
    """A family's signature keys are absent or inconsistent; carries the best guess for the report."""

    def __init__(self, reason: str, params: object | None = None, state_dict: dict[str, Tensor] | None = None,
                 layout: str | None = None) -> None:
        super().__init__(reason)
        self.params = params
        self.state_dict = state_dict
        self.layout = layout


@dataclass(frozen=True)
class PlaceHints:
    """What the caller knows beyond the tensors' shapes (res_scale is invisible in them)."""

    res_scale: float | None = None  # the user's --res-scale
    metadata_res_scale: float | None = None  # res_scale from the file's sr.hyperparameters, when present


@dataclass(frozen=True)
class Placement:
    """A family placer's reading of a state dict: layout, hyperparameters, tensors under canonical keys."""

    layout: str
    params: Any
    state_dict: dict[str, Tensor]
    res_scale_source: str | None = None  # "argument" | "metadata" | "full-EDSR shape (256 feats)" | "default"
    notes: tuple[str, ...] = ()


def need(sd: Mapping[str, Tensor], key: str, ndim: int) -> Tensor:
    """`sd[key]`, which must have `ndim` dimensions; CannotPlace otherwise."""
    tensor = sd.get(key)
    if tensor is None:
        raise CannotPlace(f"no {key}")
    if tensor.dim() != ndim:
        raise CannotPlace(f"{key} has shape {list(tensor.shape)}, expected {ndim} dimensions")
    return tensor


def indices(sd: Mapping[str, Tensor], pattern: str) -> list[int]:
    """The sorted distinct integers group 1 of `pattern` captures over the keys."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def contiguous_count(found: list[int], what: str) -> int:
    """len(found), which must be exactly 0..n-1 (a gap means a damaged or foreign file)."""
    if found != list(range(len(found))):
        raise CannotPlace(f"{what} indices are not 0..n-1: {found[:6]}")
    return len(found)


# --- hyperparameter schema, derived from the Params dataclass ------------------------------------------


class HyperparameterError(ValueError):
    """A hyperparameter value of the wrong type or out of range; `field` names it ("" for the whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class FieldSpec:
    """One hyperparameter: its JSON kind and its lower bound (from the dataclass field's metadata)."""

    name: str
    kind: Literal["int", "float", "int-tuple"]
    minimum: float  # ints and tuple items: >= minimum; floats: > minimum (and finite)

    def check(self, value: object) -> object:
        """The value as the dataclass wants it (lists become tuples); HyperparameterError otherwise."""
        if self.kind == "int-tuple":
            if not isinstance(value, (list, tuple)):
                raise HyperparameterError(self.name, f"expected a list of integers, got {_kind(value)}")
            return tuple(self._integer(item) for item in value)
        if self.kind == "int":
            return self._integer(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HyperparameterError(self.name, f"expected a number, got {_kind(value)}")
        if not math.isfinite(value) or not value > self.minimum:
            raise HyperparameterError(self.name, f"{value} is not a finite number above {self.minimum:g}")
        return float(value)

    def _integer(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            shown = "null" if value is None else f"{_kind(value)} {value!r}"
            raise HyperparameterError(self.name, f"expected an integer, got {shown}")
        if value < self.minimum:
            raise HyperparameterError(self.name, f"{value} is below the minimum {self.minimum:g}")
        return value


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def schema_of(params_class: type) -> tuple[FieldSpec, ...]:
    """The schema of a frozen Params dataclass: int / float / tuple[int, ...] fields, with the bound from
    `field(metadata={"minimum": ...})` (default: ints >= 1, floats > 0)."""
    hints = typing.get_type_hints(params_class)
    specs = []
    for field in dataclasses.fields(params_class):
        hint = hints[field.name]
        if hint is int:
            kind: Literal["int", "float", "int-tuple"] = "int"
        elif hint is float:
            kind = "float"
        elif typing.get_origin(hint) is tuple and typing.get_args(hint) == (int, Ellipsis):
            kind = "int-tuple"
        else:
            raise TypeError(f"{params_class.__name__}.{field.name}: {hint} is not int, float or tuple[int, ...]")
        default_minimum = 0.0 if kind == "float" else 1
        specs.append(FieldSpec(field.name, kind, field.metadata.get("minimum", default_minimum)))
    return tuple(specs)


# --- the descriptor ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSizes:
    """What `sr train` chooses for a network: sizes from the recipe or --blocks/--features, the scale(s)."""

    blocks: int
    features: int
    scales: tuple[int, ...]
    res_scale: float


def _identity_forward(module: nn.Module, x: Tensor, scale: int) -> Tensor:
    return module(x)


@dataclass(frozen=True, eq=False)
class FamilyDescriptor(Generic[ParamsT]):
    """One model family. Functions of the params answer per model (a x2 and a x4 EDSR differ)."""

    name: FamilyName
    label: str  # as papers and tables write it: "EDSR"
    params_class: type[ParamsT]  # frozen dataclass; its fields are the manifest/metadata schema
    module_class: Callable[[ParamsT], nn.Module]  # builds the bare module (random init)
    layouts: tuple[str, ...]  # key layouts `place` reads; the first is the canonical one
    place: Callable[[dict[str, Tensor], PlaceHints], Placement]  # keys/shapes -> params (+ foreign-layout conversion)
    scales: Callable[[ParamsT], tuple[int, ...] | None]  # scales served; None: any > 1 (input kind "y-upscaled")
    input_kind: InputKind
    in_channels: Callable[[ParamsT], int]  # channels of the tensor the net takes
    value_range: Callable[[ParamsT], float]  # the module works on [0, value_range] (EDSR/MDSR: rgb_range)
    receptive_radius: Callable[[ParamsT], int]  # exact: input pixels an output pixel can see (rounded up)
    size_multiple: Callable[[ParamsT], int] = lambda params: 1  # input H, W must be multiples of this
    # input pixels of tile context; None: the exact receptive radius (tiles then equal the whole image)
    context_estimate: Callable[[ParamsT], int] | None = None
    scale_specific_prefixes: tuple[str, ...] = ()  # keys re-initialised when --init changes the scale
    shape_invisible: tuple[str, ...] = ()  # hyperparameters the tensors cannot tell (taken from metadata)
    channels_last_on_cpu: bool = False  # measured faster in NHWC on the CPU (docs/benchmarks.md)
    # NHWC on CUDA: the tensor cores' native layout (cuDNN transposes NCHW around each half-precision conv).
    # Not measured by this project yet (no GPU); bench/gpu.py compares both layouts per family.
    channels_last_on_gpu: bool = True
    forward_at_scale: Callable[[nn.Module, Tensor, int], Tensor] = _identity_forward
    train_params: Callable[[TrainSizes], ParamsT] | None = None  # None: sr train has no recipe for it
    # model names that get `label` in result tables (they are the papers' models); None: every model
    paper_model_names: tuple[str, ...] | None = ()

    def build(self, params: ParamsT) -> nn.Module:
        if not isinstance(params, self.params_class):
            raise TypeError(f"{self.name} needs {self.params_class.__name__}, got {type(params).__name__}")
        return self.module_class(params)

    def min_overlap(self, params: ParamsT) -> int:
        radius = self.receptive_radius(params)
        return radius if self.context_estimate is None else min(radius, self.context_estimate(params))

    def schema(self) -> tuple[FieldSpec, ...]:
        return schema_of(self.params_class)

    def params_from(self, values: object, *, require_all: bool) -> ParamsT:
        """Typed, range-checked params from JSON-like values; HyperparameterError names the bad field.
        require_all=False lets missing fields take the dataclass defaults."""
        if not isinstance(values, dict):
            raise HyperparameterError("", f"expected an object, got {_kind(values)}")
        specs = {spec.name: spec for spec in self.schema()}
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise HyperparameterError(unknown[0], f"unknown field for {self.name} (allowed: {', '.join(specs)})")
        missing = sorted(set(specs) - set(values))
        if require_all and missing:
            raise HyperparameterError(missing[0], "required field is missing")
        checked = {name: specs[name].check(value) for name, value in values.items()}
        try:
            return self.params_class(**checked)
        except (TypeError, ValueError) as error:
            raise HyperparameterError("", f"not valid for {self.name}: {error}") from None

    def serves(self, params: ParamsT, scale: float) -> bool:
        """Can a model with `params` produce an x`scale` result?"""
        served = self.scales(params)
        if served is None:
            return scale > 1
        return float(scale).is_integer() and int(scale) in served

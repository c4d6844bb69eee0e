"""The two files of an ncnn model, parsed exactly as ncnn reads them; nothing in them is trusted.

- The text `.param` (magic 7767517): layers with type, name, input and output blobs and `k=v` parameters
  (`-233xx=n,a,b,...` arrays), checked against the layer and blob counts it declares.
- The `.bin`, walked as ncnn's `ModelBinFromDataReader` reads it (src/modelbin.cpp): layer by layer in
  `.param` order, a Convolution's weights are a 4-byte tag then the data (`0x01306B47` fp16, padded to
  4 bytes; `0` fp32), its bias raw fp32; PReLU slopes raw fp32. int8 and every other tag are refused by
  name. The declared counts must add up to the file's length exactly before any data is read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from sr_cli.errors import CheckpointError, InputError, UnsupportedCheckpointError

PARAM_MAGIC = "7767517"
BINARY_PARAM_MAGIC = (7767517).to_bytes(4, "little")  # the .param.bin form (ncnn2mem), which sr does not read
MAX_PARAM_BYTES = 64 << 20  # a 23-block RRDB export is 116 kB of text; anything near this is not a model
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
_TAG_NAMES = {0x000D4B38: "int8", 0x0002C056: "fp32 with int8 scaling"}
_ARRAY_KEY_BASE = -23300  # ncnn: an array parameter id k is written as -23300 - k

ParamValue = int | float | list[int | float]

# ncnn layer types sr reads; those that carry weights in the .bin are read by _read_weights.
_WEIGHTLESS = ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU")
_WITH_WEIGHTS = ("Convolution", "PReLU")

# Parameter ids and their defaults, from ncnn's layer sources (load_param). Any other id is refused.
DEFAULTS: dict[str, dict[int, ParamValue]] = {
    "Input": {0: 0, 1: 0, 11: 0, 2: 0},
    "Split": {},
    "Concat": {0: 0},
    "Eltwise": {0: 1, 1: []},
    "BinaryOp": {0: 0, 1: 0, 2: 0.0},
    "Interp": {0: 0, 1: 1.0, 2: 1.0, 3: 0, 4: 0, 5: 0, 6: 0},
    "PixelShuffle": {0: 1, 1: 0},
    "ReLU": {0: 0.0},
    "PReLU": {0: 0},
    "Convolution": {0: 0, 1: 0, 11: -1, 2: 1, 12: -1, 3: 1, 13: -1, 4: 0, 14: -1, 15: -1, 16: -1, 18: 0.0,
                    5: 0, 6: 0, 8: 0, 9: 0, 10: [], 19: 0},
}


@dataclass(frozen=True)
class NcnnLayer:
    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, ParamValue]
    line: int  # 1-based line in the .param

    def get(self, key: int) -> ParamValue:
        return self.params.get(key, DEFAULTS[self.type][key])

    def describe(self) -> str:
        return f"layer {self.name} ({self.type}, line {self.line})"


@dataclass(frozen=True)
class NcnnWeights:
    """What the .bin held for one layer: Convolution (weight, bias or None) or PReLU (slopes,)."""

    tensors: tuple[Tensor, ...]
    storage: str  # "fp16" | "fp32" (the Convolution weight tag; PReLU: "fp32")


def is_ncnn_param(head: bytes) -> bool:
    """Does a file start like an ncnn text .param (the magic number on its own first line)?"""
    first = head.split(b"\n", 1)[0].strip()
    return first == PARAM_MAGIC.encode()


# --- 1. the .param -------------------------------------------------------------------------------------


def parse_param(text: str, path: Path) -> list[NcnnLayer]:
    """The layers of a text .param, checked against its own declared layer and blob counts."""
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, tokens) for number, tokens in lines if tokens]
    if not lines or lines[0][1] != [PARAM_MAGIC]:
        raise CheckpointError(f"{path}: not an ncnn .param (the first line must be the magic number {PARAM_MAGIC})")
    if len(lines) < 2 or len(lines[1][1]) != 2 or not all(t.isdigit() for t in lines[1][1]):
        raise CheckpointError(f"{path}: line 2 must hold the layer and blob counts; the file is damaged")
    layer_count, blob_count = (int(t) for t in lines[1][1])
    layers = [_parse_layer(tokens, number, path) for number, tokens in lines[2:]]
    if len(layers) != layer_count:
        raise CheckpointError(f"{path}: declares {layer_count} layers but holds {len(layers)}; the file is truncated or damaged")
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise CheckpointError(f"{path}: two layers are named {twice!r}; the file is damaged")
    produced: set[str] = set()
    for layer in layers:
        for blob in layer.bottoms:
            if blob not in produced:
                raise CheckpointError(f"{path}: {layer.describe()} reads blob {blob!r} before any layer makes it")
        for blob in layer.tops:
            if blob in produced:
                raise CheckpointError(f"{path}: {layer.describe()} makes blob {blob!r} a second time")
            produced.add(blob)
    if len(produced) != blob_count:
        raise CheckpointError(f"{path}: declares {blob_count} blobs but its layers make {len(produced)}; the file is damaged")
    return layers


def _parse_layer(tokens: list[str], number: int, path: Path) -> NcnnLayer:
    where = f"{path}: line {number}"
    if len(tokens) < 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
        raise CheckpointError(f"{where}: not an ncnn layer line (type name inputs outputs ...)")
    kind, name = tokens[0], tokens[1]
    n_in, n_out = int(tokens[2]), int(tokens[3])
    blobs = tokens[4:4 + n_in + n_out]
    if len(blobs) != n_in + n_out:
        raise CheckpointError(f"{where}: layer {name} declares {n_in} inputs and {n_out} outputs but lists fewer blobs")
    params: dict[int, ParamValue] = {}
    for item in tokens[4 + n_in + n_out:]:
        key_text, sep, value_text = item.partition("=")
        if not sep or not re.fullmatch(r"-?\d+", key_text):
            raise CheckpointError(f"{where}: layer {name}: {item!r} is not a key=value parameter")
        key = int(key_text)
        if key <= _ARRAY_KEY_BASE:
            key = _ARRAY_KEY_BASE - key
            count_text, _, rest = value_text.partition(",")
            values = [_scalar(v, where, name) for v in rest.split(",")] if rest else []
            if not count_text.isdigit() or int(count_text) != len(values):
                raise CheckpointError(f"{where}: layer {name}: array parameter {item!r} does not hold the count it declares")
            params[key] = values
        else:
            params[key] = _scalar(value_text, where, name)
    return NcnnLayer(kind, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]), params, number)


def _scalar(text: str, where: str, name: str) -> int | float:
    try:  # ncnn's rule: a value with '.' or an exponent is a float, anything else an int
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise CheckpointError(f"{where}: layer {name}: parameter value {text!r} is not a number") from None


# --- 2. the .bin ---------------------------------------------------------------------------------------


@dataclass
class _Span:
    offset: int
    count: int  # elements
    dtype: str  # numpy dtype string
    shape: tuple[int, ...]


def read_weights(layers: list[NcnnLayer], bin_path: Path) -> dict[str, NcnnWeights]:
    """Walk the .bin in .param order; refuse a size that does not add up before reading any data."""
    try:
        with open(bin_path, "rb") as handle:
            return _read_weights_from(layers, bin_path, handle, bin_path.stat().st_size)
    except OSError as error:
        raise InputError(f"{bin_path}: cannot read the ncnn weights ({error.strerror or error}); "
                         f"put NAME.bin beside NAME.param") from None


def _read_weights_from(layers: list[NcnnLayer], bin_path: Path, handle: BinaryIO, size: int) -> dict[str, NcnnWeights]:
    plan: dict[str, tuple[list[_Span], str]] = {}
    offset = 0

    def need(count: int, what: str, layer: NcnnLayer) -> None:
        if offset + count > size:
            raise CheckpointError(f"{bin_path}: truncated: {layer.describe()} needs {what} at byte {offset}, "
                                  f"but the file has {size} bytes; get the .bin again")

    for layer in layers:
        if layer.type in _WEIGHTLESS:
            continue
        if layer.type not in _WITH_WEIGHTS:
            raise UnsupportedCheckpointError(
                f"{bin_path.with_suffix('.param')}: {layer.describe()}: sr reads the layer types of RRDB and "
                f"SRVGG exports only ({', '.join(_WEIGHTLESS + _WITH_WEIGHTS)}); this is another network")
        check_known_params(layer, bin_path.with_suffix(".param"))
        if layer.type == "PReLU":
            slopes = _positive(layer, 0, "the slope count", bin_path)
            need(4 * slopes, f"{slopes} fp32 slopes", layer)
            plan[layer.name] = ([_Span(offset, slopes, "<f4", (slopes,))], "fp32")
            offset += 4 * slopes
            continue
        if layer.get(8) != 0 or layer.get(19) != 0:
            what = "int8 quantization scales (8=)" if layer.get(8) != 0 else "a dynamic weight input (19=)"
            raise UnsupportedCheckpointError(f"{bin_path.with_suffix('.param')}: {layer.describe()} uses {what}; "
                                             f"sr reads float weights only")
        count = _positive(layer, 6, "weight_data_size", bin_path)
        outputs = _positive(layer, 0, "num_output", bin_path)
        need(4, "a 4-byte storage tag", layer)
        handle.seek(offset)
        tag = int.from_bytes(handle.read(4), "little")
        offset += 4
        if tag == TAG_FP16:
            nbytes, dtype, storage = _align4(2 * count), "<f2", "fp16"
        elif tag == TAG_FP32:
            nbytes, dtype, storage = 4 * count, "<f4", "fp32"
        else:
            raise UnsupportedCheckpointError(
                f"{bin_path}: {layer.describe()} stores its weights as {_tag_name(tag)}; sr reads fp16 and fp32 "
                f"ncnn models only (export the model without quantization)")
        need(nbytes, f"{count} {storage} weights", layer)
        spans = [_Span(offset, count, dtype, (count,))]
        offset += nbytes
        if layer.get(5):
            need(4 * outputs, f"{outputs} fp32 biases", layer)
            spans.append(_Span(offset, outputs, "<f4", (outputs,)))
            offset += 4 * outputs
        plan[layer.name] = (spans, storage)
    if offset != size:
        raise CheckpointError(f"{bin_path}: {size} bytes, but the layers of {bin_path.with_suffix('.param').name} "
                              f"declare {offset}; the .bin does not belong to this .param or is damaged")
    weights: dict[str, NcnnWeights] = {}
    for name, (spans, storage) in plan.items():
        tensors = []
        for span in spans:
            handle.seek(span.offset)
            data = np.frombuffer(handle.read(span.count * np.dtype(span.dtype).itemsize), dtype=span.dtype)
            tensors.append(torch.from_numpy(data.astype(data.dtype.newbyteorder("="))).reshape(span.shape))
        weights[name] = NcnnWeights(tuple(tensors), storage)
    return weights


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4


def _tag_name(tag: int) -> str:
    name = _TAG_NAMES.get(tag)
    if name is not None:
        return f"{name} (tag 0x{tag:08X})"
    # ncnn takes any other tag whose bytes do not sum to 0 for a 256-entry quantization table
    return f"an 8-bit quantization table (tag 0x{tag:08X})"


def _positive(layer: NcnnLayer, key: int, what: str, bin_path: Path) -> int:
    value = layer.get(key)
    if not isinstance(value, int) or value < 1 or value > 1 << 30:
        raise CheckpointError(f"{bin_path.with_suffix('.param')}: {layer.describe()}: {what} ({key}=) is {value!r}, "
                              f"not a positive count")
    return value


def check_known_params(layer: NcnnLayer, param_path: Path) -> None:
    unknown = sorted(set(layer.params) - set(DEFAULTS[layer.type]))
    if unknown:
        raise UnsupportedCheckpointError(f"{param_path}: {layer.describe()} has parameter {unknown[0]}=, "
                                         f"which sr does not know for {layer.type}; it cannot be matched exactly")



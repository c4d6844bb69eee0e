"""Match an ncnn graph layer by layer against RRDB x4 / SRVGG compact and place it in canonical names.

Split layers are resolved and a stand-alone leaky ReLU is folded into the conv before it; then every
compute layer must be, in order, the next layer of the family's forward pass: type, connectivity
(producers, commutative adds allowed either way round), channel counts, activations, Eltwise
coefficients and Interp modes. Block / conv counts, widths and the scale are read from the graph first
and the whole graph is then checked against the structure they imply, so any depth fits. A trailing
bicubic Interp (realesr-animevideov3-x2/x3: the x4 net, then a resize) is split off and reported as the
output scale. The first layer that differs is named in the refusal.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from sr_cli.archs.rrdb import LRELU_SLOPE, RESIDUAL_SCALE, RRDBParams
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.errors import UnsupportedCheckpointError
from sr_cli.weights.ncnn_format import (
    NcnnLayer,
    NcnnWeights,
    ParamValue,
    check_known_params,
)

_INTERP_NEAREST, _INTERP_BICUBIC = 1, 3
_ELTWISE_SUM, _BINARY_ADD, _ACT_NONE, _ACT_LEAKY = 1, 0, 0, 2


@dataclass(frozen=True)
class NcnnModel:
    """An ncnn export placed in a canonical layout (the BasicSR names sr's RRDB / SRVGG modules use)."""

    family: str  # "rrdb" | "srvgg"
    params: RRDBParams | SRVGGParams
    state_dict: dict[str, Tensor]  # canonical keys; conv weights keep the .bin's storage dtype (fp16 or fp32)
    output_scale: int | None  # a final bicubic Interp to this scale (animevideov3-x2/x3); None: the net's own
    storage: str  # "fp16" | "fp32" | "fp16+fp32"
    param_path: Path
    bin_path: Path
    layer_count: int


# --- the graph --------------------------------------------------------------------------------------


@dataclass
class _Node:
    """A compute layer with its inputs resolved to producer layers (index into the list; -1 = the image)."""

    layer: NcnnLayer
    inputs: list[int]
    activation: tuple[int, float]  # (ncnn activation_type, slope) after folding a following ReLU
    folded: list[str] = field(default_factory=list)


def _graph(layers: list[NcnnLayer], param_path: Path) -> list[_Node]:
    """Compute layers in order, Split resolved, a leaky ReLU right after a conv folded into it."""
    producer: dict[str, int] = {}
    nodes: list[_Node] = []
    consumers: dict[str, int] = {}
    for layer in layers:
        for blob in layer.bottoms:
            consumers[blob] = consumers.get(blob, 0) + 1
    for layer in layers:
        check_known_params(layer, param_path)
        if len(layer.tops) != 1 and layer.type != "Split":
            raise UnsupportedCheckpointError(f"{param_path}: {layer.describe()} has {len(layer.tops)} outputs; "
                                             f"RRDB and SRVGG layers have one")
        if layer.type == "Input":
            if layer.bottoms or producer:
                raise UnsupportedCheckpointError(f"{param_path}: {layer.describe()}: one Input, first, is expected")
            producer[layer.tops[0]] = -1
            continue
        try:
            inputs = [producer[blob] for blob in layer.bottoms]
        except KeyError:
            raise UnsupportedCheckpointError(f"{param_path}: {layer.describe()} reads a blob no layer makes") from None
        if layer.type == "Split":
            if len(inputs) != 1:
                raise UnsupportedCheckpointError(f"{param_path}: {layer.describe()} must have one input")
            for top in layer.tops:
                producer[top] = inputs[0]
            continue
        slope = layer.get(0) if layer.type == "ReLU" else None
        if isinstance(slope, (int, float)) and len(inputs) == 1 and inputs[0] >= 0:
            previous = nodes[inputs[0]]
            if previous.layer.type == "Convolution" and previous.activation == (_ACT_NONE, 0.0) \
                    and consumers.get(layer.bottoms[0], 0) == 1 and inputs[0] == len(nodes) - 1:
                previous.activation = (_ACT_LEAKY, float(slope)) if slope != 0 else (1, 0.0)
                previous.folded.append(layer.name)
                producer[layer.tops[0]] = inputs[0]
                continue
        activation = (_ACT_NONE, 0.0)
        if layer.type == "Convolution":
            act = layer.get(9)
            act_params = layer.get(10)
            slope = float(act_params[0]) if isinstance(act_params, list) and act_params else 0.0
            activation = (int(act) if isinstance(act, int) else -1, slope if act == _ACT_LEAKY else 0.0)
        producer[layer.tops[0]] = len(nodes)
        nodes.append(_Node(layer, inputs, activation))
    return nodes


# The expected structure: a list of steps, each one layer of the family's forward pass.


@dataclass(frozen=True)
class _Step:
    type: str
    inputs: tuple[int, ...]  # indices of earlier steps; -1 = the image
    what: str  # where in the network, for the refusal ("conv2 of RDB 1 of RRDB 3")
    out_channels: int
    key: str | None = None  # canonical state-dict prefix (weights go under key.weight / key.bias)
    activation: tuple[int, float] = (_ACT_NONE, 0.0)
    coefficients: tuple[float, ...] = ()  # Eltwise sum: one per input
    interp: tuple[int, float] | None = None  # (resize_type, scale factor)
    shuffle: int = 0  # PixelShuffle factor


class _Builder:
    def __init__(self, in_channels: int) -> None:
        self.steps: list[_Step] = []
        self.channels = {-1: in_channels}

    def add(self, step: _Step) -> int:
        self.steps.append(step)
        self.channels[len(self.steps) - 1] = step.out_channels
        return len(self.steps) - 1

    def conv(self, source: int, out: int, key: str, what: str, leaky: bool = False) -> int:
        act = (_ACT_LEAKY, LRELU_SLOPE) if leaky else (_ACT_NONE, 0.0)
        return self.add(_Step("Convolution", (source,), what, out, key, act))

    def concat(self, sources: list[int], what: str) -> int:
        return self.add(_Step("Concat", tuple(sources), what, sum(self.channels[s] for s in sources)))

    def scaled_sum(self, branch: int, skip: int, what: str) -> int:
        return self.add(_Step("Eltwise", (branch, skip), what, self.channels[skip],
                              coefficients=(RESIDUAL_SCALE, 1.0)))

    def add_op(self, a: int, b: int, what: str) -> int:
        return self.add(_Step("BinaryOp", (a, b), what, self.channels[a]))

    def interp(self, source: int, mode: int, factor: float, what: str) -> int:
        return self.add(_Step("Interp", (source,), what, self.channels[source], interp=(mode, factor)))


def _rrdb_steps(num_feat: int, grow: int, blocks: int, out_ch: int) -> _Builder:
    b = _Builder(3)
    first = b.conv(-1, num_feat, "conv_first", "conv_first")
    x = first
    for n in range(blocks):
        block_in = x
        for r in (1, 2, 3):
            where = f"RDB {r} of RRDB {n}"
            feats = [x]
            for c in (1, 2, 3, 4):
                source = feats[0] if c == 1 else b.concat(feats, f"the concat before conv{c} of {where}")
                feats.append(b.conv(source, grow, f"body.{n}.rdb{r}.conv{c}", f"conv{c} of {where}", leaky=True))
            conv5 = b.conv(b.concat(feats, f"the concat before conv5 of {where}"), num_feat,
                           f"body.{n}.rdb{r}.conv5", f"conv5 of {where}")
            x = b.scaled_sum(conv5, x, f"the 0.2-scaled skip of {where}")
        x = b.scaled_sum(x, block_in, f"the 0.2-scaled skip of RRDB {n}")
    body = b.conv(x, num_feat, "conv_body", "conv_body")
    feat = b.add_op(first, body, "the trunk skip (conv_first + conv_body)")
    feat = b.conv(b.interp(feat, _INTERP_NEAREST, 2.0, "the first nearest x2"), num_feat, "conv_up1", "conv_up1", leaky=True)
    feat = b.conv(b.interp(feat, _INTERP_NEAREST, 2.0, "the second nearest x2"), num_feat, "conv_up2", "conv_up2", leaky=True)
    feat = b.conv(feat, num_feat, "conv_hr", "conv_hr", leaky=True)
    b.conv(feat, out_ch, "conv_last", "conv_last")
    return b


def _srvgg_steps(num_feat: int, num_conv: int, scale: int, out_ch: int) -> _Builder:
    b = _Builder(3)
    x = -1
    for i in range(num_conv + 1):
        x = b.conv(x, num_feat, f"body.{2 * i}", f"conv {i}")
        x = b.add(_Step("PReLU", (x,), f"PReLU {i}", num_feat, f"body.{2 * i + 1}"))
    x = b.conv(x, out_ch * scale * scale, f"body.{2 * num_conv + 2}", "the last conv")
    x = b.add(_Step("PixelShuffle", (x,), f"the pixel shuffle x{scale}", out_ch, shuffle=scale))
    skip = b.interp(-1, _INTERP_NEAREST, float(scale), f"the nearest x{scale} of the input")
    b.add_op(x, skip, "the output (net + nearest-upsampled input)")
    return b


def _match(nodes: list[_Node], builder: _Builder) -> tuple[int, str | None]:
    """(steps matched, None) when everything matches, else (steps matched, why the next one does not)."""
    steps = builder.steps
    for i, step in enumerate(steps):
        if i >= len(nodes):
            return i, f"the graph ends before {step.what} ({step.type})"
        node = nodes[i]
        layer = node.layer
        why = _differs(node, step, builder)
        if why:
            return i, f"{layer.describe()}: expected {step.what}: {why}"
    if len(nodes) > len(steps):
        extra = nodes[len(steps)].layer
        return len(steps), f"{extra.describe()}: the network should end before it"
    return len(steps), None


def _differs(node: _Node, step: _Step, builder: _Builder) -> str | None:
    layer = node.layer
    if layer.type != step.type:
        return f"a {step.type} layer, not {layer.type}"
    commutative = step.type in ("BinaryOp", "Eltwise")
    if step.type == "Eltwise":
        coeffs = layer.get(1)
        if layer.get(0) != _ELTWISE_SUM:
            return f"a sum (0=1), not operation 0={layer.get(0)}"
        if not isinstance(coeffs, list) or len(coeffs) != len(node.inputs):
            return f"coefficients {list(step.coefficients)} for its inputs, found {coeffs!r}"
        given = sorted(zip(node.inputs, (float(c) for c in coeffs), strict=True))
        wanted = sorted(zip(step.inputs, step.coefficients, strict=True))
        if [s for s, _ in given] != [s for s, _ in wanted]:
            return f"inputs from {_names(step.inputs, builder)}, found {_names(tuple(node.inputs), builder)}"
        if any(not math.isclose(a, b, rel_tol=1e-6) for (_, a), (_, b) in zip(given, wanted, strict=True)):
            return f"coefficients {list(step.coefficients)} for ({_names(step.inputs, builder)}), found {coeffs}"
        return None
    given_inputs = sorted(node.inputs) if commutative else list(node.inputs)
    wanted_inputs = sorted(step.inputs) if commutative else list(step.inputs)
    if given_inputs != wanted_inputs:
        return f"inputs from {_names(step.inputs, builder)}, found {_names(tuple(node.inputs), builder)}"
    in_channels = builder.channels[step.inputs[0]]
    if step.type == "Convolution":
        return _conv_differs(node, step, in_channels)
    if step.type == "PReLU":
        return None if layer.get(0) == step.out_channels else f"{step.out_channels} slopes (0=), found {layer.get(0)}"
    if step.type == "Concat":
        return None if layer.get(0) == 0 else f"a channel concat (0=0), found axis {layer.get(0)}"
    if step.type == "BinaryOp":
        if layer.get(0) != _BINARY_ADD or layer.get(1) != 0:
            return f"an add of two blobs (0=0 1=0), found 0={layer.get(0)} 1={layer.get(1)}"
        return None
    if step.type == "PixelShuffle":
        if layer.get(0) != step.shuffle or layer.get(1) != 0:
            return f"factor {step.shuffle} in PyTorch order (0={step.shuffle} 1=0), found 0={layer.get(0)} 1={layer.get(1)}"
        return None
    if step.type == "Interp":
        assert step.interp is not None
        return _interp_differs(layer, step.interp)
    return f"sr does not match {step.type} layers"


def _conv_differs(node: _Node, step: _Step, in_channels: int) -> str | None:
    layer = node.layer
    kernel_w = layer.get(1)
    shape = {
        "kernel": (kernel_w, _or(layer.get(11), kernel_w)),
        "dilation": (layer.get(2), _or(layer.get(12), layer.get(2))),
        "stride": (layer.get(3), _or(layer.get(13), layer.get(3))),
    }
    pad_left = layer.get(4)
    pad_top = _or(layer.get(14), pad_left)
    pads = (pad_left, pad_top, _or(layer.get(15), pad_left), _or(layer.get(16), pad_top))
    if layer.get(0) != step.out_channels:
        return f"{step.out_channels} outputs (0=), found {layer.get(0)}"
    if shape != {"kernel": (3, 3), "dilation": (1, 1), "stride": (1, 1)} or pads != (1, 1, 1, 1):
        return f"a 3x3 conv, stride 1, dilation 1, padding 1; found {shape}, padding {pads}"
    if layer.get(5) != 1:
        return "a bias (5=1)"
    if layer.get(6) != step.out_channels * in_channels * 9:
        return f"{in_channels} input channels ({step.out_channels * in_channels * 9} weights, 6=), found 6={layer.get(6)}"
    if node.activation[0] != step.activation[0] or not math.isclose(node.activation[1], step.activation[1], rel_tol=1e-6):
        wanted = "leaky ReLU 0.2 (9=2 -23310=1,0.2)" if step.activation[0] == _ACT_LEAKY else "no activation"
        return f"{wanted}, found activation {node.activation[0]} with slope {node.activation[1]}"
    return None


def _interp_differs(layer: NcnnLayer, expected: tuple[int, float]) -> str | None:
    mode, factor = expected
    names = {_INTERP_NEAREST: "nearest", 2: "bilinear", _INTERP_BICUBIC: "bicubic"}
    found = (layer.get(0), layer.get(1), layer.get(2), layer.get(3), layer.get(4), layer.get(5), layer.get(6))
    if found[0] != mode:
        shown = names.get(found[0], "unknown") if isinstance(found[0], int) else "unknown"
        return f"{names[mode]} (0={mode}), found 0={found[0]} ({shown})"
    if not all(isinstance(v, float) and math.isclose(v, factor, rel_tol=1e-6) for v in found[1:3]):
        return f"a x{factor:g} scale factor (1= 2=), found {found[1]} x {found[2]}"
    if found[3:] != (0, 0, 0, 0):
        return f"no fixed output size, dynamic size or align_corner (3= 4= 5= 6=), found {found[3:]}"
    return None


def _or(value: ParamValue, default: ParamValue) -> ParamValue:
    return default if value == -1 else value


def _names(indices: tuple[int, ...], builder: _Builder) -> str:
    return ", ".join("the input image" if i == -1 else builder.steps[i].what if i < len(builder.steps) else f"layer {i}"
                     for i in indices)


# --- hyperparameters read from the graph, then the whole graph checked against them ----------------------


def _conv_outputs(nodes: list[_Node], index: int) -> int:
    convs = [n for n in nodes if n.layer.type == "Convolution"]
    if not convs:
        return 0
    value = convs[index].layer.get(0)
    return value if isinstance(value, int) and value > 0 else 0


def _rrdb_candidate(nodes: list[_Node]) -> tuple[_Builder, RRDBParams] | None:
    feat, grow, out_ch = _conv_outputs(nodes, 0), _conv_outputs(nodes, 1), _conv_outputs(nodes, -1)
    blocks = sum(n.layer.type == "Eltwise" for n in nodes) // 4
    if min(feat, grow, out_ch, blocks) < 1:
        return None
    params = RRDBParams(num_in_ch=3, num_out_ch=3, num_feat=feat, num_block=blocks, num_grow_ch=grow, scale=4)
    return _rrdb_steps(feat, grow, blocks, 3), params


def _srvgg_candidate(nodes: list[_Node]) -> tuple[_Builder, SRVGGParams] | None:
    feat = _conv_outputs(nodes, 0)
    prelus = sum(n.layer.type == "PReLU" for n in nodes)
    shuffles = [n.layer.get(0) for n in nodes if n.layer.type == "PixelShuffle"]
    scale = shuffles[0] if shuffles and isinstance(shuffles[0], int) and shuffles[0] >= 1 else 4
    if feat < 1 or prelus < 1:
        return None
    params = SRVGGParams(num_in_ch=3, num_out_ch=3, num_feat=feat, num_conv=prelus - 1, upscale=scale)
    return _srvgg_steps(feat, prelus - 1, scale, 3), params


def _final_resize(nodes: list[_Node], net_scale: int, param_path: Path) -> tuple[list[_Node], int | None]:
    """A trailing bicubic Interp on the network's output (animevideov3-x2/x3): split it off, check it."""
    if len(nodes) < 2:
        return nodes, None
    last = nodes[-1]
    if last.layer.type != "Interp" or last.layer.get(0) != _INTERP_BICUBIC or last.inputs != [len(nodes) - 2]:
        return nodes, None
    factor = last.layer.get(1)
    target = net_scale * factor if isinstance(factor, float) else 0.0
    if not (isinstance(factor, float) and target == round(target) and 1 <= round(target) < net_scale):
        raise UnsupportedCheckpointError(f"{param_path}: {last.layer.describe()}: a final bicubic resize of the "
                                         f"x{net_scale} output by {factor!r} does not give a whole scale below x{net_scale}")
    why = _interp_differs(last.layer, (_INTERP_BICUBIC, float(factor)))
    if why:
        raise UnsupportedCheckpointError(f"{param_path}: {last.layer.describe()}: expected the final bicubic resize: {why}")
    return nodes[:-1], round(target)


def place(layers: list[NcnnLayer], weights: dict[str, NcnnWeights], param_path: Path, bin_path: Path) -> NcnnModel:
    """Match the graph against RRDB x4 and SRVGG compact; the canonical state dict of the one that fits."""
    nodes = _graph(layers, param_path)
    attempts: list[tuple[int, str, str]] = []
    candidates: list[tuple[str, Callable[[list[_Node]], tuple[_Builder, RRDBParams] | tuple[_Builder, SRVGGParams] | None]]] = [
        ("rrdb", _rrdb_candidate), ("srvgg", _srvgg_candidate)]
    for family, candidate in candidates:
        found = candidate(nodes)
        if found is None:
            attempts.append((0, family, "its first layers are not this family's"))
            continue
        builder, params = found
        net_scale = params.scale if isinstance(params, RRDBParams) else params.upscale
        body, output_scale = _final_resize(nodes, net_scale, param_path)
        matched, why = _match(body, builder)
        if why is None:
            state_dict, storage = _canonical(body, builder, weights)
            return NcnnModel(family, params, state_dict, output_scale, storage, param_path, bin_path, len(layers))
        attempts.append((matched, family, why))
    matched, family, why = max(attempts, key=lambda item: item[0])
    raise UnsupportedCheckpointError(f"{param_path}: not an RRDB or SRVGG export sr can place: closest match "
                                     f"{family} ({matched} layers agree), then {why}")


def _canonical(nodes: list[_Node], builder: _Builder, weights: dict[str, NcnnWeights]) -> tuple[dict[str, Tensor], str]:
    state: dict[str, Tensor] = {}
    storages: set[str] = set()
    for node, step in zip(nodes, builder.steps, strict=True):
        if step.key is None:
            continue
        held = weights[node.layer.name]
        if step.type == "Convolution":
            weight, bias = held.tensors
            in_channels = builder.channels[step.inputs[0]]
            state[f"{step.key}.weight"] = weight.reshape(step.out_channels, in_channels, 3, 3)
            state[f"{step.key}.bias"] = bias
            storages.add(held.storage)
        else:
            state[f"{step.key}.weight"] = held.tensors[0]
    return state, "+".join(sorted(storages))



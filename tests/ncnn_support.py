"""Write small ncnn models (.param + .bin) the way ncnn's exporters do, for the reader's tests.

A model is a list of layers (type, name, inputs, outputs, params); `write_ncnn` inserts the Split layers
ncnn puts wherever a blob feeds several layers, writes the text .param and the .bin (each Convolution
weight behind a storage tag, fp16 padded to 4 bytes; biases and PReLU slopes raw fp32).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TAG_FP16 = 0x01306B47


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: str = ""
    weights: list[np.ndarray] = field(default_factory=list)  # Convolution: [weight, bias]; PReLU: [slopes]


class Model:
    def __init__(self, seed: int = 0) -> None:
        self.layers: list[Layer] = [Layer("Input", "input.1", [], ["data"])]
        self.rng = np.random.default_rng(seed)
        self._count = 0

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}_{self._count}"

    def conv(self, source: str, in_ch: int, out_ch: int, leaky: bool = False, scale: float = 0.1) -> str:
        name = self._name("Conv")
        weight = (self.rng.standard_normal((out_ch, in_ch, 3, 3)) * scale).astype(np.float32)
        bias = (self.rng.standard_normal(out_ch) * 0.01).astype(np.float32)
        act = " 9=2 -23310=1,2.000000e-01" if leaky else ""
        params = f"0={out_ch} 1=3 4=1 5=1 6={weight.size}{act}"
        self.layers.append(Layer("Convolution", name, [source], [name + "_out"], params, [weight, bias]))
        return name + "_out"

    def prelu(self, source: str, channels: int) -> str:
        name = self._name("PRelu")
        slopes = (0.1 + 0.1 * self.rng.random(channels)).astype(np.float32)
        self.layers.append(Layer("PReLU", name, [source], [name + "_out"], f"0={channels}", [slopes]))
        return name + "_out"

    def op(self, kind: str, sources: list[str], params: str = "", output: str | None = None) -> str:
        name = self._name(kind)
        top = output or name + "_out"
        self.layers.append(Layer(kind, name, sources, [top], params))
        return top


def srvgg_model(num_feat: int = 4, num_conv: int = 1, scale: int = 2, resize: float | None = None,
                seed: int = 0) -> Model:
    """SRVGGNetCompact as Real-ESRGAN's ncnn export lays it out (optionally + a final bicubic Interp)."""
    m = Model(seed)
    x = m.prelu(m.conv("data", 3, num_feat), num_feat)
    for _ in range(num_conv):
        x = m.prelu(m.conv(x, num_feat, num_feat), num_feat)
    x = m.op("PixelShuffle", [m.conv(x, num_feat, 3 * scale * scale)], f"0={scale}")
    up = m.op("Interp", ["data"], f"0=1 1={float(scale):e} 2={float(scale):e}")
    out = m.op("BinaryOp", [x, up], "0=0", output=None if resize else "output")
    if resize:
        m.op("Interp", [out], f"0=3 1={resize:e} 2={resize:e}", output="output")
    return m


def rrdb_model(num_feat: int = 8, grow: int = 4, blocks: int = 1, seed: int = 0) -> Model:
    """RRDBNet x4 as the realesrgan-x4plus ncnn export lays it out."""
    m = Model(seed)
    first = m.conv("data", 3, num_feat)
    x = first
    for _ in range(blocks):
        block_in = x
        for _ in range(3):
            feats = [x]
            for _ in range(4):
                source = feats[0] if len(feats) == 1 else m.op("Concat", list(feats))
                feats.append(m.conv(source, num_feat + grow * (len(feats) - 1), grow, leaky=True))
            conv5 = m.conv(m.op("Concat", list(feats)), num_feat + 4 * grow, num_feat)
            x = m.op("Eltwise", [conv5, x], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        x = m.op("Eltwise", [x, block_in], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    x = m.op("BinaryOp", [first, m.conv(x, num_feat, num_feat)], "0=0")
    for _ in range(2):
        x = m.conv(m.op("Interp", [x], "0=1 1=2.000000e+00 2=2.000000e+00"), num_feat, num_feat, leaky=True)
    x = m.conv(x, num_feat, num_feat, leaky=True)
    m.layers.append(Layer("Convolution", "Conv_last", [x], ["output"], f"0=3 1=3 4=1 5=1 6={num_feat * 27}",
                          [(m.rng.standard_normal((3, num_feat, 3, 3)) * 0.1).astype(np.float32),
                           np.zeros(3, dtype=np.float32)]))
    return m


def with_splits(layers: list[Layer]) -> list[Layer]:
    """Insert ncnn's Split layers: a blob read by k > 1 layers is split into k copies, one per reader."""
    readers: dict[str, int] = {}
    for layer in layers:
        for blob in layer.inputs:
            readers[blob] = readers.get(blob, 0) + 1
    used: dict[str, int] = {}
    out: list[Layer] = []
    for index, layer in enumerate(layers):
        renamed = []
        for blob in layer.inputs:
            if readers[blob] > 1:
                renamed.append(f"{blob}_splitncnn_{used.get(blob, 0)}")
                used[blob] = used.get(blob, 0) + 1
            else:
                renamed.append(blob)
        out.append(Layer(layer.type, layer.name, renamed, layer.outputs, layer.params, layer.weights))
        for blob in layer.outputs:
            if readers.get(blob, 0) > 1:
                tops = [f"{blob}_splitncnn_{i}" for i in range(readers[blob])]
                out.append(Layer("Split", f"splitncnn_{index}_{blob}", [blob], tops))
    return out


def write_ncnn(model: Model, folder: Path, name: str = "model", *, fp16: bool = True) -> Path:
    """NAME.param + NAME.bin in `folder`; returns the .param path."""
    layers = with_splits(model.layers)
    blobs = {blob for layer in layers for blob in layer.outputs}
    lines = ["7767517", f"{len(layers)} {len(blobs)}"]
    data = bytearray()
    for layer in layers:
        fields = [layer.type, layer.name, str(len(layer.inputs)), str(len(layer.outputs)), *layer.inputs, *layer.outputs]
        lines.append(" ".join(fields + ([layer.params] if layer.params else [])))
        if layer.type == "Convolution":
            weight, bias = layer.weights
            if fp16:
                raw = weight.astype("<f2").tobytes()
                data += struct.pack("<I", TAG_FP16) + raw + b"\0" * (-len(raw) % 4)
            else:
                data += struct.pack("<I", 0) + weight.astype("<f4").tobytes()
            data += bias.astype("<f4").tobytes()
        elif layer.type == "PReLU":
            data += layer.weights[0].astype("<f4").tobytes()
    param = folder / f"{name}.param"
    param.write_text("\n".join(lines) + "\n")
    (folder / f"{name}.bin").write_bytes(bytes(data))
    return param


def run_ncnn(param: Path, image: np.ndarray) -> np.ndarray:
    """The ncnn engine's output (CPU, fp32) for a CHW float32 image in [0, 1]."""
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 2
    for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
        setattr(net.opt, option, False)  # fp32 throughout, as sr computes
    assert net.load_param(str(param)) == 0 and net.load_model(str(param.with_suffix(".bin"))) == 0
    array = np.ascontiguousarray(image, dtype=np.float32)
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(array))  # ncnn.Mat borrows `array`: it stays alive until extract returns
    code, out = extractor.extract("output")
    assert code == 0
    result = np.array(out)
    del extractor, net
    return result

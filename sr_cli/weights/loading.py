"""File -> verified, strictly loaded module -> SRNet at the scale asked for."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sr_cli.archs.runtime import SRNet, build_module, to_srnets
from sr_cli.errors import ScaleMismatchError
from sr_cli.files.digest import sha256_of
from sr_cli.weights.detect import DetectedCheckpoint, detect
from sr_cli.weights.reading import read_checkpoint


@dataclass(frozen=True)
class LoadedCheckpoint:
    detected: DetectedCheckpoint
    module: nn.Module  # eval mode, loaded with strict=True
    path: Path
    sha256: str


def load_checkpoint(path: Path, *, res_scale: float | None = None) -> LoadedCheckpoint:
    """Read (safely), place and strictly load a weights file. res_scale: see detect()."""
    path = Path(path)
    raw = read_checkpoint(path)
    detected = detect(raw.tensors, res_scale=res_scale, metadata=raw.metadata, source=str(path))
    # Built on the meta device and given uninitialised CPU memory: random init of a 43M-parameter net
    # would be wasted work, since strict loading below overwrites every tensor (and raises otherwise).
    with torch.device("meta"):
        module = build_module(detected.family, detected.params)
    module = module.to_empty(device="cpu")
    module.load_state_dict(detected.state_dict, strict=True)
    module.eval()
    return LoadedCheckpoint(detected, module, path, sha256_of(path))


def srnet_serving(module: nn.Module, scale: float, *, output_scale: int | None = None) -> SRNet | None:
    """The SRNet of `module` that produces x`scale` output, None when none does (the one scale choice).
    output_scale: the file's net output is resized bicubically to this scale (ncnn animevideov3-x2/x3)."""
    for net in to_srnets(module, output_scale=output_scale).values():
        if net.serves(scale):
            return net
    return None


def srnet_for(loaded: LoadedCheckpoint, scale: float) -> SRNet:
    """The SRNet producing x`scale` output. VDSR serves any scale > 1 at net scale 1 (the caller
    upscales bicubically first); the others only the scale(s) they were trained for."""
    net = srnet_serving(loaded.module, scale, output_scale=loaded.detected.output_scale)
    if net is not None:
        return net
    scales = loaded.detected.scales or []
    if len(scales) == 1:
        raise ScaleMismatchError(
            f"{loaded.path} is a x{scales[0]} model; pass --scale {scales[0]} or choose another file"
        )
    if scales:
        listed = ", ".join(f"x{s}" for s in scales)
        raise ScaleMismatchError(f"{loaded.path} serves {listed}, not x{scale:g}; pass one of those or choose another file")
    raise ScaleMismatchError(f"{loaded.path} upscales by factors above 1 only, not x{scale:g}; pass a larger --scale")

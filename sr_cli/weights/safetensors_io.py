"""Our own weight files (blends, trained exports) are .safetensors: no pickle, metadata in the header.

Metadata convention (read by `detect`): `sr.layout` = "sr-safetensors", `sr.family` = the family name,
`sr.hyperparameters` = JSON of the family's Params dataclass; others may add free `sr.*` keys
(e.g. `sr.alpha`, `sr.sources`). All values are strings (a safetensors rule).
"""
from __future__ import annotations

import json
import struct
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor

from sr_cli.archs.runtime import AnyParams
from sr_cli.errors import CheckpointError, OutputError
from sr_cli.files.atomic import write_bytes_atomic

SR_LAYOUT = "sr-safetensors"
META_LAYOUT = "sr.layout"
META_FAMILY = "sr.family"
META_HYPERPARAMETERS = "sr.hyperparameters"
# The network's output is resized to this whole scale with bicubic (a = -0.75, half-pixel centres, edges
# clamped, no antialiasing: ncnn's Interp type 3, which is also PyTorch's bicubic), as the
# realesr-animevideov3-x2/x3 ncnn exports do after their x4 network.
META_OUTPUT_SCALE = "sr.output_scale"


def sr_metadata(family: str, params: AnyParams, **extra: str) -> dict[str, str]:
    """The metadata our files carry, from a family name and its Params dataclass (+ free `sr.*` strings)."""
    meta = {META_LAYOUT: SR_LAYOUT, META_FAMILY: family, META_HYPERPARAMETERS: json.dumps(asdict(params))}
    for key, value in extra.items():
        meta[f"sr.{key}"] = str(value)
    return meta


def save_safetensors(path: Path, state_dict: dict[str, Tensor], metadata: dict[str, str], *,
                     overwrite: bool = False) -> None:
    """Write with `files.atomic` (temporary beside the target, fsync, never a partial file; an existing
    file is replaced only with `overwrite`). The file gets the user's umask like any other output."""
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; offending keys: {bad}")
    # safetensors refuses shared or non-contiguous storage; our tensors are plain copies anyway.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    # Serialised in memory (the tensors above are already a copy), so the one atomic writer does the I/O.
    write_bytes_atomic(Path(path), serialize_safetensors(tensors, metadata), overwrite=overwrite,
                       advice="check the folder and free space")


_DTYPE_NAMES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
    torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def serialize_safetensors(tensors: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    """The .safetensors bytes, deterministic: the same tensors and metadata give the same bytes in every process.

    safetensors' own writer emits the metadata in hash-map order, which changes from run to run; a file
    regenerated to check it byte for byte (sr_cli/bundled) needs a fixed order: keys sorted, tensors by name,
    the header padded with spaces to 8 bytes as the format asks."""
    if sys.byteorder != "little":
        raise OutputError("writing .safetensors needs a little-endian machine")
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        if tensor.dtype not in _DTYPE_NAMES:
            raise TypeError(f"{name}: dtype {tensor.dtype} cannot be stored in .safetensors")
        data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": _DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors (on CPU) and the header metadata ({} when none)."""
    try:
        tensors = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({error}); download or export it again") from None
    return dict(tensors), metadata


__all__ = ["SR_LAYOUT", "META_LAYOUT", "META_FAMILY", "META_HYPERPARAMETERS", "META_OUTPUT_SCALE", "sr_metadata",
           "save_safetensors", "read_safetensors"]

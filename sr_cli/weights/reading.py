"""Read any supported weights file into a flat {name: tensor} dict, executing nothing from it.

Format is sniffed from the bytes, not the extension: zip torch files and legacy torch files go through
`torch.load(weights_only=True)` (legacy pickled *modules*, which it cannot read, through our restricted
unpickler in `legacy_pickle`), `.safetensors` through safetensors. Containers are unwrapped
(`params_ema` > `params` > `state_dict` > `model` > the object itself) and DataParallel `module.`
prefixes stripped. Nothing that looks like weights is dropped silently.
"""
from __future__ import annotations

import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sr_cli.errors import CheckpointError, InputError, UnsafeCheckpointError, UnsupportedCheckpointError
from sr_cli.files.regular import check_regular, open_regular
from sr_cli.weights.allocation import check_tensors, check_total
from sr_cli.weights.legacy_pickle import read_legacy_checkpoint
from sr_cli.weights.ncnn import is_ncnn_param, ncnn_metadata, ncnn_pair, read_ncnn
from sr_cli.weights.safetensors_io import read_safetensors

# Entries that hold the weights in the containers we know, most preferred first: BasicSR/Real-ESRGAN
# keep an EMA copy under params_ema (the one they publish results for), else params; training scripts
# commonly use state_dict or model.
WEIGHTS_FILE = "a weights file"  # what messages call the expected kind of file
CONTAINER_KEYS: tuple[str, ...] = ("params_ema", "params", "state_dict", "model")
_ZIP_MAGIC = b"PK\x03\x04"
# A legacy torch file starts with pickle protocol 2 + LONG1 of the 10-byte magic number 0x1950a86a20f9469cfc6c.
_LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header
_UNSUPPORTED_GLOBAL = re.compile(r"(?:GLOBAL|global) ([\w.]+)")


@dataclass
class RawCheckpoint:
    tensors: dict[str, Tensor]
    container: str  # "state_dict" (the object itself), "params_ema", "params", "state_dict"/"model" entry, "pickled_module", "safetensors"
    metadata: dict[str, str]  # safetensors header metadata ({} for torch files)
    serialization: str = "zip"  # "zip" | "legacy" | "safetensors" | "ncnn"
    ignored: list[str] = field(default_factory=list)  # top-level entries left aside (e.g. "epoch", "params" when params_ema won)


def sniff(head: bytes, size: int | None = None) -> str:
    """'zip' | 'legacy' | 'pickle' | 'safetensors' | 'ncnn' | 'unknown' from the first bytes of a file (and its size).

    By structure, safetensors first: its first 8 bytes are a little-endian header length, which can start
    with any byte (0x80 for every length that is 128 mod 256, like a pickle's PROTO opcode); a file is one
    when that length is plausible, fits in the file, and the JSON header's "{" follows it. Neither a zip
    (compression method at byte 8), a legacy torch file (its magic number) nor a pickle has "{" there."""
    if _looks_like_safetensors(head, size):
        return "safetensors"
    if is_ncnn_param(head):
        return "ncnn"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_LEGACY_PREFIX):
        return "legacy"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def _looks_like_safetensors(head: bytes, size: int | None) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    fits = size is None or 8 + header_len <= size
    return 2 <= header_len < SAFETENSORS_MAX_HEADER and fits and head[8:9] == b"{"


def read_checkpoint(path: Path) -> RawCheckpoint:
    """The tensors of a weights file, executing nothing from it and allocating no more than its bytes justify
    (`allocation`). InputError for a path that is not a regular file, CheckpointError for a bad file."""
    path = Path(path)
    raw = _read_checkpoint(path)
    check_tensors(str(path), raw.tensors.items(), path.stat().st_size)
    return raw


def _read_checkpoint(path: Path) -> RawCheckpoint:
    size = check_regular(path, WEIGHTS_FILE)
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty; download it again")
    with open_regular(path, WEIGHTS_FILE) as handle:
        try:
            head = handle.read(32)
        except OSError as error:
            raise InputError(f"{path}: cannot read ({error.strerror or error}); check its permissions") from None
    kind = sniff(head, size)
    # NAME.param, or NAME.bin beside it (a .bin has no magic: its first byte may look like a pickle's)
    if kind == "ncnn" or (kind in ("unknown", "pickle") and ncnn_pair(path) is not None):
        model = read_ncnn(path)
        return RawCheckpoint(model.state_dict, "ncnn", ncnn_metadata(model), "ncnn")
    if kind == "safetensors":
        tensors, metadata = read_safetensors(path)
        return RawCheckpoint(_strip_data_parallel(tensors, path), "safetensors", metadata, "safetensors")
    if kind == "zip":
        _check_zip_records(path, size)
        obj = _torch_load(path)
        return _unwrap(obj, path, "zip")
    if kind in ("legacy", "pickle"):
        if kind == "legacy":
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
                return _unwrap(obj, path, "legacy")
            except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError, TypeError):
                # Old pickled modules (and Python 2 strings) are beyond weights_only; our reader handles
                # them and reports precisely why anything else fails. Nothing has run either way.
                pass
        contents = read_legacy_checkpoint(path)
        raw = _unwrap(contents.obj, path, "legacy")
        if contents.module_classes:
            raw.container = "pickled_module"
        return raw
    raise CheckpointError(
        f"{path}: not a checkpoint (neither a torch .pt/.pth file nor .safetensors); check the file"
    )


def _check_zip_records(path: Path, size: int) -> None:
    """torch.load inflates compressed zip records (torch.save never writes any): a 100 kB file can unpack to
    100 MB and more. Refuse records that unpack to more than the file's bytes justify, from the directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"{path}: truncated or corrupt torch file ({error}); download it again") from None
    check_total(str(path), unpacked, size, "its zip records unpack to")


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        match = _UNSUPPORTED_GLOBAL.search(str(error))
        if match is None:
            reason = next((line.strip() for line in str(error).splitlines() if line.strip()), "unpickling failed")
            raise CheckpointError(f"{path}: the safe loader cannot read this torch file ({reason}); re-save it as a state dict") from None
        raise UnsafeCheckpointError(
            f"{path}: refused: the pickle asks for the global {match.group(1)}, which is not on the allow-list "
            f"of checkpoint classes (nothing was executed); use a state dict or .safetensors file from a source you trust"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: truncated or corrupt torch file ({first}); download it again") from None


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _holds_tensors(obj: Any, depth: int = 0) -> bool:
    if isinstance(obj, Tensor):
        return True
    if depth > 8:
        return False
    if isinstance(obj, dict):
        return any(_holds_tensors(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_holds_tensors(v, depth + 1) for v in obj)
    return False


def _unwrap(obj: Any, path: Path, serialization: str) -> RawCheckpoint:
    if not isinstance(obj, dict):
        raise UnsupportedCheckpointError(f"{path}: holds a {type(obj).__name__}, not a dict of weights")
    container = "state_dict"
    ignored: list[str] = []
    chosen: dict[Any, Any] = obj
    for key in CONTAINER_KEYS:
        entry = obj.get(key)
        if isinstance(entry, dict) and _holds_tensors(entry):
            container, chosen = key, entry
            ignored = [str(k) for k in obj if k != key]
            break
    tensors: dict[str, Tensor] = {}
    for key, value in chosen.items():
        if isinstance(value, Tensor):
            if not isinstance(key, str):
                raise UnsupportedCheckpointError(f"{path}: weight name {key!r} is not a string")
            tensors[key] = value
        elif _holds_tensors(value):
            raise UnsupportedCheckpointError(
                f"{path}: entry {key!r} holds nested weights sr does not know how to unwrap "
                f"(expected one of {', '.join(CONTAINER_KEYS)} or a flat state dict)"
            )
        else:
            ignored.append(str(key))
    if not tensors:
        raise UnsupportedCheckpointError(
            f"{path}: no weights found (top-level entries: {', '.join(map(str, list(obj)[:8]))})"
        )
    return RawCheckpoint(_strip_data_parallel(tensors, path), container, {}, serialization, ignored)


def _strip_data_parallel(tensors: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Remove the `module.` prefix nn.DataParallel / DistributedDataParallel add to every key."""
    if not any(k.startswith("module.") for k in tensors):
        return tensors
    out: dict[str, Tensor] = {}
    for key, value in tensors.items():
        new = key[len("module."):] if key.startswith("module.") else key
        if new in out:
            raise UnsupportedCheckpointError(f"{path}: both {key!r} and {new!r} are present; the file is ambiguous")
        out[new] = value
    return out

"""Our own weight files (blends, trained exports) are .safetensors: no pickle, metadata in the header.

Metadata convention (read by `detect`): `sr.layout` = "sr-safetensors", `sr.family` = the family name,
`sr.hyperparameters` = JSON of the family's Params dataclass; others may add free `sr.*` keys
(e.g. `sr.alpha`, `sr.sources`). All values are strings (a safetensors rule).
"""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict
from pathlib import Path


from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from sr_cli.archs.runtime import AnyParams
from sr_cli.errors import CheckpointError, OutputError

SR_LAYOUT = "sr-safetensors"
META_LAYOUT = "sr.layout"
META_FAMILY = "sr.family"
META_HYPERPARAMETERS = "sr.hyperparameters"


def sr_metadata(family: str, params: AnyParams, **extra: str) -> dict[str, str]:
    """The metadata our files carry, from a family name and its Params dataclass (+ free `sr.*` strings)."""
    meta = {META_LAYOUT: SR_LAYOUT, META_FAMILY: family, META_HYPERPARAMETERS: json.dumps(asdict(params))}
    for key, value in extra.items():
        meta[f"sr.{key}"] = str(value)
    return meta


def save_safetensors(path: Path, state_dict: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Write atomically: `<name>.<random>.tmp` beside the target, fsync, os.replace; tmp removed on failure."""
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"safetensors metadata must map str to str; offending keys: {bad}")
    # safetensors refuses shared or non-contiguous storage; our tensors are plain copies anyway.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {path.parent} does not exist; create it or choose another output")
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputError(f"{path}: cannot write ({error.strerror or error}); check the folder and free space") from error
        raise


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors (on CPU) and the header metadata ({} when none)."""
    try:
        tensors = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({error}); download or export it again") from None
    return dict(tensors), metadata


__all__ = ["SR_LAYOUT", "META_LAYOUT", "META_FAMILY", "META_HYPERPARAMETERS", "sr_metadata",
           "save_safetensors", "read_safetensors"]

"""Our own weight files (blends, trained exports) are .safetensors: no pickle, metadata in the header.

Metadata convention (read by `detect`): `sr.layout` = "sr-safetensors", `sr.family` = the family name,
`sr.hyperparameters` = JSON of the family's Params dataclass; others may add free `sr.*` keys
(e.g. `sr.alpha`, `sr.sources`). All values are strings (a safetensors rule).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import Tensor

from sr_cli.archs.runtime import AnyParams
from sr_cli.errors import CheckpointError
from sr_cli.files.atomic import write_bytes_atomic

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
    write_bytes_atomic(Path(path), save(tensors, metadata=metadata), overwrite=overwrite,
                       advice="check the folder and free space")


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

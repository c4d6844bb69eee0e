"""How much memory a checkpoint may make us allocate: what its bytes justify, and no more.

A tensor in a torch file is a view (size, stride, offset) over a storage whose bytes are in the file. A view
may repeat elements: a 434-byte file can describe a (1024, 1024, 3072) tensor with stride (0, 0, 0) over one
float, which any `.clone()`, `.float()` or `load_state_dict` expands to 12 GiB. Real weights never do that
beyond a few broadcast constants, so every reader (zip and legacy torch files, our legacy unpickler,
safetensors) checks before anything is copied:

- each tensor has at most as many elements as its storage holds, unless it is tiny (`TINY_TENSOR_ELEMENTS`);
- all tensors together take at most `MAX_EXPANSION` times the file's size, plus `ALLOWANCE_BYTES`
  (views that share one storage, e.g. tied weights, are legitimate but cannot multiply the file).

Anything else is refused as a corrupt checkpoint.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

from torch import Tensor

from sr_cli.errors import CheckpointError

TINY_TENSOR_ELEMENTS = 1 << 16  # a broadcast constant of this size costs 256 kB as float32: harmless
MAX_EXPANSION = 2
ALLOWANCE_BYTES = 64 << 20


def check_view(source: str, name: str, size: tuple[int, ...], stride: tuple[int, ...], storage_elements: int) -> int:
    """The element count of a view, after refusing one that holds more elements than its storage."""
    if any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"{source}: tensor {name} has a negative size or stride; the file is corrupt")
    elements = math.prod(size)
    if elements > max(storage_elements, TINY_TENSOR_ELEMENTS):
        raise CheckpointError(
            f"{source}: tensor {name} claims {elements} elements (size {tuple(size)}, stride {tuple(stride)}) over a "
            f"storage of {storage_elements}; real weights never repeat their data like this, the file is corrupt "
            f"or hostile, refused before expanding it")
    return elements


def check_total(source: str, total_bytes: int, file_bytes: int, what: str = "its tensors would take") -> None:
    """Refuse when all tensors together would take more than the file's bytes can justify."""
    allowed = MAX_EXPANSION * file_bytes + ALLOWANCE_BYTES
    if total_bytes > allowed:
        raise CheckpointError(
            f"{source}: {what} {total_bytes / 1e9:.2f} GB from a {file_bytes / 1e6:.1f} MB file (at most "
            f"{allowed / 1e9:.2f} GB is plausible); the file is corrupt or hostile, refused before expanding it")


def check_tensors(source: str, tensors: Iterable[tuple[str, Tensor]], file_bytes: int) -> None:
    """Both checks over tensors a loader returned as views (torch.load and safetensors allocate storages only)."""
    total = 0
    for name, tensor in tensors:
        storage_elements = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1)
        elements = check_view(source, name, tuple(tensor.shape), tuple(tensor.stride()), storage_elements)
        total += elements * tensor.element_size()
    check_total(source, total, file_bytes)

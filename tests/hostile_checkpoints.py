"""Builders of hostile torch checkpoints, byte for byte as torch.save lays them out (zip and legacy).

A tensor is pickled as `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` with the
storage as a persistent id, so any (size, stride) can be written over any storage, which is what a hostile
file does. Nothing here is ever unpickled by the test process itself.
"""
from __future__ import annotations

import copyreg
import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from typing import Any

import torch

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Storage:
    """Pickled as the persistent id of a float32 storage `key` of `elements` elements."""

    def __init__(self, key: str, elements: int) -> None:
        self.key, self.elements = key, elements


class View:
    """Pickled as a tensor with this size and stride over `storage`."""

    def __init__(self, storage: Storage, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0) -> None:
        self.storage, self.size, self.stride, self.offset = storage, tuple(size), tuple(stride), offset

    def __reduce__(self) -> tuple[Any, ...]:
        return (torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, OrderedDict()))


class _ZipPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return ("storage", torch.FloatStorage, obj.key, "cpu", obj.elements) if isinstance(obj, Storage) else None


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return ("storage", torch.FloatStorage, obj.key, "cpu", obj.elements, None) if isinstance(obj, Storage) else None


def zip_checkpoint(obj: Any, storages: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip torch file: archive/data.pkl, archive/data/<key> per storage (the bytes given)."""
    pickled = io.BytesIO()
    _ZipPickler(pickled, protocol=2).dump(obj)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        archive.writestr("archive/data.pkl", pickled.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return out.getvalue()


def legacy_checkpoint(obj: Any, storages: dict[str, tuple[int, bytes]]) -> bytes:
    """A legacy torch file: magic, protocol, sys_info, the object, the storage keys, then per storage its
    int64 element count (as given) and its bytes (as given)."""
    out = io.BytesIO()
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for item in (LEGACY_MAGIC, 1001, sys_info):
        pickle.dump(item, out, protocol=2)
    _LegacyPickler(out, protocol=2).dump(obj)
    pickle.dump(list(storages), out, protocol=2)
    for elements, data in storages.values():
        out.write(struct.pack("<q", elements))
        out.write(data)
    return out.getvalue()


def pickled_module_checkpoint(size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """A legacy file holding a whole pickled `vdsr.Net` module (the form torch.load(weights_only) cannot
    read, so our restricted unpickler does) whose one weight is a view over a one-element storage."""
    module = types.ModuleType("vdsr")

    class Net:
        def __init__(self, state: dict[str, Any]) -> None:
            self.state = state

        def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
            return (copyreg.__newobj__, (Net,), self.state)  # type: ignore[attr-defined]  # protocol 2: NEWOBJ + BUILD

    Net.__module__, Net.__qualname__ = "vdsr", "Net"
    module.Net = Net  # type: ignore[attr-defined]
    storage = Storage("0", 1)
    state = {"_parameters": OrderedDict(weight=View(storage, size, stride)), "_buffers": OrderedDict(),
             "_modules": OrderedDict()}
    saved = sys.modules.get("vdsr")
    sys.modules["vdsr"] = module
    try:
        return legacy_checkpoint(Net(state), {"0": (1, b"\0" * 4)})
    finally:
        if saved is None:
            del sys.modules["vdsr"]
        else:
            sys.modules["vdsr"] = saved

"""Read legacy (pre-zip, torch <= 1.5) checkpoints, including whole pickled modules, without running them.

`torch.load(weights_only=True)` cannot read a pickled *module* (e.g. VDSR's `model_epoch_50.pth`, saved
from Python 2 with torch <= 0.3: it pickles `vdsr.Net` with its source as a Py2 BINSTRING). This reader
is a restricted `pickle.Unpickler` whose `find_class` maps an allow-list of globals to inert stand-ins
defined here; every other global raises `UnsafeCheckpointError` before anything is called. Tensor bytes
are read by our own code from the raw storage records that follow the pickles.

Legacy file layout (torch/serialization.py `_legacy_save`): five consecutive pickles -- magic number,
protocol version (1001), sys_info, the object, the list of storage keys -- then for each key in that
order: int64 element count, then count * element_size bytes, little-endian.
"""
from __future__ import annotations

import io
import pickle
import re
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sr_cli.errors import CheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError
from sr_cli.files.regular import read_regular
from sr_cli.weights.allocation import check_total, check_view

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
# Modules whose classes may appear in a pickled module tree; all become inert `ModuleStandIn`s.
_MODULE_CLASS_MODULES = re.compile(r"^(torch\.nn\.modules\.[a-z_]+|vdsr)$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- inert stand-ins ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageType:
    """Stands for `torch.FloatStorage` & co.: only remembers the element dtype."""

    name: str
    dtype: torch.dtype


@dataclass
class StorageRecord:
    storage_type: StorageType
    key: str
    location: str
    numel: int
    data: Tensor | None = None  # filled once the raw bytes after the pickles are read


@dataclass
class TensorRecord:
    """What `_rebuild_tensor(_v2)` would build; materialised after the storages are read."""

    storage: StorageRecord
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self, source: str) -> Tensor:
        data = self.storage.data
        if data is None:
            raise CheckpointError(f"{source}: storage {self.storage.key} is referenced but its bytes are missing")
        if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise CheckpointError(f"{source}: a tensor has a negative size/stride/offset; the file is corrupt")
        if len(self.size) != len(self.stride):
            raise CheckpointError(f"{source}: a tensor has {len(self.size)} sizes but {len(self.stride)} strides; the file is corrupt")
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride, strict=True)) if all(self.size) else -1
        if last >= data.numel():
            raise CheckpointError(f"{source}: a tensor reaches past the end of its storage; the file is corrupt")
        check_view(source, "?", self.size, self.stride, data.numel())  # read_legacy_objects checked it by name
        try:
            return torch.as_strided(data, self.size, self.stride, self.offset).clone()
        except RuntimeError as error:  # sizes torch cannot index (beyond int64): not a real tensor
            raise CheckpointError(f"{source}: a tensor torch cannot build ({str(error).splitlines()[0]}); the file is corrupt") from None


class ParameterStandIn:
    """Stands for `torch.nn.Parameter(tensor)`; old pickles then BUILD it with (requires_grad, volatile, hooks)."""

    def __init__(self, data: Any = None, requires_grad: Any = True) -> None:
        self.data = data

    def __setstate__(self, state: Any) -> None:
        pass  # (requires_grad, volatile, backward_hooks): nothing we need, nothing to run


class ModuleStandIn:
    """Base of the stand-in classes made for allow-listed module globals. BUILD stores the state dict."""

    qualified_name = "?"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


class BackendStandIn:
    """Returned for `torch.nn.backends.thnn._get_thnn_function_backend()` (a field of torch<=0.3 modules)."""


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> TensorRecord:
    """Pure replacement for torch._utils._rebuild_tensor and _rebuild_tensor_v2 (extra args: requires_grad,
    backward_hooks[, metadata]) -- records the view, builds nothing."""
    if not isinstance(storage, StorageRecord):
        raise UnsupportedCheckpointError("tensor rebuilt from something that is not a storage record")
    if not (isinstance(storage_offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)):
        raise UnsupportedCheckpointError("tensor rebuilt with a malformed offset/size/stride")
    return TensorRecord(storage, storage_offset, tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, *_: Any) -> ParameterStandIn:
    return ParameterStandIn(data)


def _thnn_backend() -> BackendStandIn:
    return BackendStandIn()


# --- the restricted unpickler -------------------------------------------------------------------------


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals, each to an inert stand-in; anything else is refused unrun."""

    _FUNCTIONS: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.nn.parameter", "Parameter"): ParameterStandIn,
        ("torch.nn.backends.thnn", "_get_thnn_function_backend"): _thnn_backend,
        ("collections", "OrderedDict"): OrderedDict,
        # nn.Module keeps e.g. `_non_persistent_buffers_set`; protocol 2 names the type `__builtin__.set`.
        ("builtins", "set"): set, ("__builtin__", "set"): set,
        ("builtins", "frozenset"): frozenset, ("__builtin__", "frozenset"): frozenset,
    }

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")  # Python 2 str -> latin1 text, the only lossless choice
        self.source = source
        self.storages: dict[str, StorageRecord] = {}
        self._module_classes: dict[str, type[ModuleStandIn]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._FUNCTIONS:
            return self._FUNCTIONS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return StorageType(name, _STORAGE_DTYPES[name])
        if _MODULE_CLASS_MODULES.match(module) and _IDENTIFIER.match(name):
            qualified = f"{module}.{name}"
            if qualified not in self._module_classes:
                # A fresh *empty* subclass: creating it runs no checkpoint code, and NEWOBJ on it only
                # calls object.__new__.
                self._module_classes[qualified] = type(name, (ModuleStandIn,), {"qualified_name": qualified})
            return self._module_classes[qualified]
        raise UnsafeCheckpointError(
            f"{self.source}: refused: the pickle asks for the global {module}.{name}, which is not on the "
            f"allow-list of checkpoint classes (nothing was executed); use a state dict or .safetensors file "
            f"from a source you trust"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise UnsupportedCheckpointError(f"{self.source}: unknown persistent id {pid!r} in the pickle")
        kind = pid[0]
        if kind == "module" and len(pid) == 4 and isinstance(pid[1], type) and issubclass(pid[1], ModuleStandIn):
            return pid[1]  # (class, source file, source text): the text is never looked at
        if kind == "storage" and len(pid) == 6:
            _, storage_type, key, location, numel, view_metadata = pid
            if not isinstance(storage_type, StorageType) or not isinstance(key, str) or not isinstance(numel, int):
                raise UnsupportedCheckpointError(f"{self.source}: malformed storage record {pid!r}")
            if view_metadata is not None:
                raise UnsupportedCheckpointError(
                    f"{self.source}: storage views (torch < 0.4 `storage[a:b]`) are not supported"
                )
            record = self.storages.get(key)
            if record is None:
                record = self.storages[key] = StorageRecord(storage_type, key, str(location), numel)
            return record
        raise UnsupportedCheckpointError(f"{self.source}: unknown persistent id kind {kind!r} in the pickle")


# --- reading ------------------------------------------------------------------------------------------


def _load_one(unpickler: RestrictedUnpickler, source: str, what: str) -> Any:
    """One pickle from the unpickler's stream, every failure turned into a one-line CheckpointError."""
    try:
        return unpickler.load()
    except (UnsafeCheckpointError, UnsupportedCheckpointError):
        raise
    except EOFError:
        raise CheckpointError(f"{source}: truncated file (ends inside the {what}); download it again") from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, UnicodeDecodeError, RecursionError, MemoryError) as error:
        raise CheckpointError(f"{source}: corrupt or not a checkpoint ({what}: {error})") from None


def read_legacy_objects(data: bytes, source: str) -> Any:
    """Unpickle a legacy torch file (or a plain pickle, which is then refused) safely.

    Returns the checkpoint object with stand-ins in place of modules and `Tensor`s in place of tensor
    records. Raises UnsafeCheckpointError for a forbidden global, CheckpointError for anything malformed."""
    stream = io.BytesIO(data)
    # One unpickler for all five pickles: it sees every global, and it collects the storage records.
    unpickler = RestrictedUnpickler(stream, source)
    magic = _load_one(unpickler, source, "header")
    if magic != LEGACY_MAGIC_NUMBER:
        raise UnsupportedCheckpointError(
            f"{source}: a plain pickle, not a torch checkpoint; save the weights with torch.save or as .safetensors"
        )
    protocol = _load_one(unpickler, source, "header")
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise UnsupportedCheckpointError(f"{source}: legacy torch protocol {protocol!r} is not supported (only 1001)")
    sys_info = _load_one(unpickler, source, "header")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise UnsupportedCheckpointError(f"{source}: only little-endian legacy checkpoints are supported")
    obj = _load_one(unpickler, source, "object")
    keys = _load_one(unpickler, source, "storage list")
    storages = unpickler.storages
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise CheckpointError(f"{source}: the storage list does not match the storages the object uses; file is corrupt")
    for key in keys:
        record = storages[key]
        header = stream.read(8)
        if len(header) < 8:
            raise CheckpointError(f"{source}: truncated file (storage {key} is missing); download it again")
        (numel,) = struct.unpack("<q", header)
        if numel < 0 or numel != record.numel:
            raise CheckpointError(f"{source}: storage {key} holds {numel} elements, the pickle says {record.numel}")
        itemsize = torch.empty((), dtype=record.storage_type.dtype).element_size()
        raw = stream.read(numel * itemsize)
        if len(raw) < numel * itemsize:
            raise CheckpointError(f"{source}: truncated file (inside storage {key}); download it again")
        record.data = torch.frombuffer(bytearray(raw), dtype=record.storage_type.dtype) if numel else \
            torch.empty(0, dtype=record.storage_type.dtype)
    if stream.read(1):
        raise CheckpointError(f"{source}: unexpected bytes after the last storage; the file is corrupt")
    _check_allocation(obj, source, len(data))
    return _materialize(obj, source, depth=0)


def _check_allocation(obj: Any, source: str, file_bytes: int) -> None:
    """Before any tensor is copied out of its storage: each view within its storage, all within the file's
    bytes (`allocation`), so a few hundred bytes cannot make us allocate gigabytes."""
    total = 0
    for name, record in _tensor_records(obj, "", 0):
        storage = record.storage.data
        elements = check_view(source, name or "(top level)", record.size, record.stride,
                              storage.numel() if storage is not None else 0)
        total += elements * torch.empty((), dtype=record.storage.storage_type.dtype).element_size()
    check_total(source, total, file_bytes)


def _tensor_records(obj: Any, name: str, depth: int) -> Iterator[tuple[str, TensorRecord]]:
    """Every tensor record in the object, with a dotted name for messages (the walk `_materialize` does)."""
    if depth > 200:
        return  # _materialize refuses the tree before it gets there
    if isinstance(obj, TensorRecord):
        yield name, obj
    elif isinstance(obj, ParameterStandIn):
        yield from _tensor_records(obj.data, name, depth + 1)
    elif isinstance(obj, ModuleStandIn):
        yield from _tensor_records(getattr(obj, "state", {}), name, depth + 1)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensor_records(value, f"{name}.{key}" if name else str(key), depth + 1)
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _tensor_records(value, f"{name}.{index}" if name else str(index), depth + 1)


def _materialize(obj: Any, source: str, depth: int) -> Any:
    """Replace tensor records (and parameters) by real tensors throughout the object."""
    if depth > 200:
        raise CheckpointError(f"{source}: module tree nested more than 200 levels deep")
    if isinstance(obj, TensorRecord):
        return obj.materialize(source)
    if isinstance(obj, ParameterStandIn):
        return _materialize(obj.data, source, depth + 1)
    if isinstance(obj, ModuleStandIn):
        obj.state = {k: _materialize(v, source, depth + 1) for k, v in getattr(obj, "state", {}).items()}
        return obj
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _materialize(v, source, depth + 1)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v, source, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, source, depth + 1) for v in obj)
    return obj


def module_state_dict(module: ModuleStandIn, source: str) -> OrderedDict[str, Tensor]:
    """Flatten a stand-in module tree the way nn.Module.state_dict() does (_parameters, _buffers, _modules)."""
    out: OrderedDict[str, Tensor] = OrderedDict()

    def walk(m: ModuleStandIn, prefix: str) -> None:
        state = getattr(m, "state", {})
        for slot in ("_parameters", "_buffers"):
            for name, value in (state.get(slot) or {}).items():
                if value is None:
                    continue
                if not isinstance(value, Tensor):
                    raise CheckpointError(f"{source}: {prefix}{name} is a {type(value).__name__}, not a tensor")
                out[prefix + name] = value
        for name, child in (state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, ModuleStandIn):
                raise CheckpointError(f"{source}: submodule {prefix}{name} is not a module")
            walk(child, f"{prefix}{name}.")

    walk(module, "")
    return out


@dataclass
class LegacyContents:
    """The object a legacy file held, with every pickled module replaced by its flat state dict."""

    obj: Any
    module_classes: list[str] = field(default_factory=list)  # e.g. ["vdsr.Net"] when it pickled a whole module


def read_legacy_checkpoint(path: Path) -> LegacyContents:
    """Read a legacy torch file (or refuse a plain pickle) without executing anything from it."""
    source = str(path)
    obj = read_legacy_objects(read_regular(path, "a weights file"), source)
    classes: list[str] = []

    def flatten(value: Any) -> Any:
        if isinstance(value, ModuleStandIn):
            classes.append(value.qualified_name)
            return module_state_dict(value, source)
        if isinstance(value, dict):
            return type(value)((k, flatten(v)) for k, v in value.items())
        return value

    return LegacyContents(flatten(obj), classes)

"""ncnn models (`NAME.param` + `NAME.bin`, as realesrgan-ncnn-vulkan and upscayl ship them), read natively.

`read_ncnn` parses both files exactly (`ncnn_format`: nothing executed, no size trusted), matches the
graph against the families sr knows and places the weights in the canonical layout (`ncnn_graph`).
`convert_ncnn` writes the result as an sr .safetensors whose metadata names the source files and their
sha256 -- deterministically, so the bundled models regenerate byte for byte (scripts/make_bundled.py).
"""
from __future__ import annotations

import secrets
from pathlib import Path

from sr_cli.errors import (
    CheckpointError,
    ChecksumError,
    InputError,
    OutputError,
    UsageError,
)
from sr_cli.files.digest import sha256_of
from sr_cli.weights.bundled import bundled_file
from sr_cli.weights.cache import partial_dir, store_verified
from sr_cli.weights.manifest import ManifestEntry, load_manifest
from sr_cli.weights.ncnn_format import (
    MAX_PARAM_BYTES,
    PARAM_MAGIC,
    is_ncnn_param,
    parse_param,
    read_weights,
)
from sr_cli.weights.ncnn_graph import NcnnModel, place
from sr_cli.weights.safetensors_io import (
    META_OUTPUT_SCALE,
    save_safetensors,
    sr_metadata,
)

NCNN_PARAM_SHA256 = "ncnn.param_sha256"
NCNN_BIN_SHA256 = "ncnn.bin_sha256"

__all__ = ["NcnnModel", "convert_ncnn", "import_ncnn", "is_ncnn_param", "ncnn_metadata", "ncnn_pair", "read_ncnn"]


# --- locating the pair ---------------------------------------------------------------------------------


def ncnn_pair(path: Path) -> tuple[Path, Path] | None:
    """(param, bin) when `path` is an ncnn .param, or a .bin with its .param beside it; else None."""
    path = Path(path)
    if path.suffix.lower() == ".bin":
        param = path.with_suffix(".param")
        return (param, path) if param.is_file() and _head_is_param(param) else None
    if _head_is_param(path):
        return path, path.with_suffix(".bin")
    return None


def _head_is_param(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return is_ncnn_param(handle.read(32))
    except OSError:
        return False


def read_ncnn(path: Path) -> NcnnModel:
    """Read an ncnn pair from its .param (or its .bin) and place it; see the module doc for every check."""
    pair = ncnn_pair(path)
    if pair is None:
        raise CheckpointError(f"{path}: not an ncnn model (NAME.param starting with {PARAM_MAGIC}, NAME.bin beside it)")
    param_path, bin_path = pair
    if not bin_path.is_file():
        raise InputError(f"{param_path}: its weights {bin_path.name} are not beside it; put NAME.bin next to NAME.param")
    try:
        size = param_path.stat().st_size
        if size > MAX_PARAM_BYTES:
            raise CheckpointError(f"{param_path}: {size} bytes is far too large for an ncnn .param; check the file")
        raw = param_path.read_bytes()
    except OSError as error:
        raise InputError(f"{param_path}: cannot read ({error.strerror or error}); check its permissions") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CheckpointError(f"{param_path}: not a text ncnn .param (non-ASCII bytes); the binary .param.bin form is not read") from None
    layers = parse_param(text, param_path)
    weights = read_weights(layers, bin_path)
    return place(layers, weights, param_path, bin_path)


def ncnn_metadata(model: NcnnModel) -> dict[str, str]:
    """What `sr weights inspect` shows about an ncnn pair (and `sr.output_scale` for detection)."""
    meta = {"ncnn.param": model.param_path.name, NCNN_PARAM_SHA256: sha256_of(model.param_path),
            "ncnn.bin": model.bin_path.name, NCNN_BIN_SHA256: sha256_of(model.bin_path),
            "ncnn.layers": str(model.layer_count), "ncnn.storage": f"{model.storage} (computed in fp32)"}
    if model.output_scale is not None:
        meta[META_OUTPUT_SCALE] = str(model.output_scale)
    return meta


def convert_ncnn(param_path: Path, target: Path, *, origin: str) -> NcnnModel:
    """Write an ncnn pair as an sr .safetensors (weights as stored: fp16 stays fp16), atomically.

    The metadata names both source files with their size and sha256 and `origin` (where they came from);
    it holds nothing that varies between runs or sr versions, so the output is byte-identical every time."""
    model = read_ncnn(param_path)
    extra = {
        "source": f"ncnn export {model.param_path.name} + {model.bin_path.name} ({origin})",
        "source_param_sha256": sha256_of(model.param_path),
        "source_param_size": str(model.param_path.stat().st_size),
        "source_bin_sha256": sha256_of(model.bin_path),
        "source_bin_size": str(model.bin_path.stat().st_size),
        "storage": f"conv weights {model.storage} exactly as in the .bin, biases and PReLU slopes fp32; "
                   f"computed in fp32",
        "converted_by": "sr_cli.weights.ncnn (scripts/make_bundled.py regenerates the bundled files)",
    }
    if model.output_scale is not None:
        extra["output_scale"] = str(model.output_scale)
    save_safetensors(target, model.state_dict, sr_metadata(model.family, model.params, **extra))
    return model


def import_ncnn(entry: ManifestEntry, param_path: Path, bin_path: Path) -> Path:
    """`sr weights import NAME FILE.param`: check both files against the entry's ncnn source, convert them,
    and store the result in the cache once it hashes to the entry's sha256; returns the stored path (or the
    bundled copy, when the conversion is byte-identical to it: nothing to store)."""
    source = entry.ncnn
    if source is None:
        listed = ", ".join(e.name for e in load_manifest().entries if e.ncnn is not None)
        raise UsageError(f"{param_path}: an ncnn model, but the manifest lists no ncnn export for {entry.name} "
                         f"(it does for {listed}); run the file with --weights {param_path} instead")
    for path, expected in ((param_path, source.param_sha256), (bin_path, source.bin_sha256)):
        if not path.is_file():
            raise InputError(f"{path}: not found; put {param_path.stem}.bin beside {param_path.name}")
        digest = sha256_of(path)
        if digest != expected:
            raise ChecksumError(f"{path}: sha256 {digest} is not that of {entry.name}'s ncnn export "
                                f"({source.param_filename} and its .bin: {expected}); nothing was imported")
    partial = partial_dir()
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{partial}: cannot create the cache folder ({error.strerror}); set SR_CACHE_DIR") from error
    converted = partial / f"{entry.filename}.{secrets.token_hex(4)}.import"
    try:
        convert_ncnn(param_path, converted, origin=source.origin)
        digest = sha256_of(converted)
        bundled = entry.bundled
        if bundled is not None and digest == bundled.sha256:
            shipped = bundled_file(entry)
            if shipped is not None:
                return shipped  # already inside the package, verified by the same sha256
        if digest != entry.sha256:
            raise ChecksumError(f"{param_path}: converted to sha256 {digest}, not {entry.name}'s {entry.sha256}; "
                                f"nothing was imported (report this: the conversion should be deterministic)")
        return store_verified(converted, digest, entry.filename, how="move")
    finally:
        converted.unlink(missing_ok=True)

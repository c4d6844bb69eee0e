"""The weights shipped inside the package (`sr_cli/bundled/`), found and sha256-checked like a download.

A bundled file is used only after its bytes hash to the sha256 its manifest source lists; a damaged or
edited copy is refused (reinstall sr), never run. The hash is computed once per process and file.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sr_cli.errors import ChecksumError
from sr_cli.files.digest import sha256_of
from sr_cli.weights.manifest import ManifestEntry

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled"


def bundled_dir() -> Path:
    return BUNDLED_DIR


def bundled_file(entry: ManifestEntry) -> Path | None:
    """The bundled copy of `entry` if the manifest lists one and the package holds it (not yet verified)."""
    source = entry.bundled
    if source is None:
        return None
    path = bundled_dir() / source.filename
    return path if path.is_file() else None


def verified_bundled_file(entry: ManifestEntry) -> Path | None:
    """The bundled copy of `entry`, after checking its size and sha256; None when there is none."""
    path = bundled_file(entry)
    if path is None:
        return None
    source = entry.bundled
    assert source is not None
    stat = path.stat()
    digest = _digest(str(path), stat.st_size, stat.st_mtime_ns)
    if stat.st_size != source.size or digest != source.sha256:
        raise ChecksumError(f"{path}: the bundled copy of {entry.name} is damaged (sha256 {digest[:16]}..., expected "
                            f"{source.sha256[:16]}...); reinstall sr")
    return path


@lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    return sha256_of(Path(path))

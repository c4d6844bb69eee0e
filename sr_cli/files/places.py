"""Where sr keeps what it downloads and derives: one cache root for weights, datasets and training data."""
from __future__ import annotations

import os
from pathlib import Path

from sr_cli.errors import UsageError


def cache_root() -> Path:
    """SR_CACHE_DIR > $XDG_CACHE_HOME/sr > ~/.cache/sr (read on every call, so tests and users can switch).

    UsageError when that path exists and is not a folder: a cache "empty" because it is a file would mislead."""
    explicit = os.environ.get("SR_CACHE_DIR")
    if explicit:
        return folder_or_absent(Path(explicit).expanduser(), f"SR_CACHE_DIR={explicit}")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return folder_or_absent(Path(xdg).expanduser() / "sr", f"the cache folder from XDG_CACHE_HOME={xdg}")
    return folder_or_absent(Path.home() / ".cache" / "sr", "the cache folder")


def folder_or_absent(path: Path, what: str) -> Path:
    """`path` unless it exists and is not a folder (UsageError naming `what`)."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what}: {path} is a file, not a folder; point SR_CACHE_DIR at a folder "
                         f"(it is created when missing)")
    return path


__all__ = ["cache_root", "folder_or_absent"]

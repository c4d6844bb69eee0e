"""Where sr keeps what it downloads and derives: one cache root for weights, datasets and training data."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """SR_CACHE_DIR > $XDG_CACHE_HOME/sr > ~/.cache/sr (read on every call, so tests and users can switch)."""
    explicit = os.environ.get("SR_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "sr"
    return Path.home() / ".cache" / "sr"


__all__ = ["cache_root"]

"""Paths that are not regular files, built for tests of every reader (images: test_odd_image_inputs,
weights: test_odd_weights_paths). Each reader must name what the path really is, without ever opening a
FIFO (open() blocks until a writer comes) or reading a device (/dev/zero never ends)."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def fifo(folder: Path, name: str) -> Path:
    os.mkfifo(folder / name)
    return folder / name


def dev_zero_link(folder: Path, name: str) -> Path:
    (folder / name).symlink_to("/dev/zero")
    return folder / name


def subfolder(folder: Path, name: str) -> Path:
    (folder / name).mkdir()
    return folder / name


def symlink_loop(folder: Path, name: str) -> Path:
    """Two links pointing at each other (a link to itself is the one-link case of the same ELOOP)."""
    other = folder / f"other-{name}"
    (folder / name).symlink_to(other)
    other.symlink_to(folder / name)
    return folder / name


def dangling_link(folder: Path, name: str) -> Path:
    """A link to `gone-<name>`, which does not exist."""
    (folder / name).symlink_to(folder / f"gone-{name}")
    return folder / name


OddPathMaker = Callable[[Path, str], Path]
ODD_PATHS: dict[str, OddPathMaker] = {
    "fifo": fifo,
    "dev_zero_link": dev_zero_link,
    "folder": subfolder,
    "symlink_loop": symlink_loop,
    "dangling_link": dangling_link,
}

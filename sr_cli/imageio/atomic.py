"""Atomic file writes: a temporary file in the target folder, fsync, then os.replace.

A reader of the target path sees either the old file (or nothing) or the complete new one, never a
partial image, whatever happens in between (exception, Ctrl-C, crash after the replace).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from sr_cli.errors import OutputError


def temporary_path_for(target: Path) -> Path:
    """`<name>.<random>.tmp` beside the target (same filesystem, so the final rename is atomic)."""
    return target.with_name(f"{target.name}.{secrets.token_hex(4)}.tmp")


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically; on any exception (KeyboardInterrupt included) no
    temporary file stays behind and ``target`` is untouched."""
    target = Path(target)
    if not target.parent.is_dir():
        raise OutputError(f"{target}: folder {target.parent} does not exist; create it or choose another -o")
    temporary = temporary_path_for(target)
    try:
        # O_EXCL: never write through a file (or link) that someone else put there.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        raise OutputError(f"{target}: cannot create a file in {target.parent} ({error.strerror}); check permissions") from error
    try:
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as error:
            raise OutputError(f"{target}: write failed ({error.strerror}); check free space and permissions") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open folders, and does not need it."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

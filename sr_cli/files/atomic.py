"""The one atomic writer: `with atomic_write(target, overwrite=...) as handle: ...`.

Every file sr creates goes through it (images, CSV, safetensors, training checkpoints, the training cache,
downloads, cache entries), so every one gets the same guarantees:

- the bytes go to `<name>.<random>.tmp` in the target's folder (same filesystem: the last step is atomic),
  created exclusively (never through a file or link someone else put there) and with the user's umask;
- on success the file is flushed and fsynced, published, and the folder fsynced (the rename is durable);
- on any exception, KeyboardInterrupt included, the temporary is removed and the target is untouched;
- without `overwrite`, publishing never replaces a file: the temporary is hard-linked to the target name,
  which fails when the name exists, so a file that appeared after the caller checked (another program,
  a second `sr` run into the same folder) is kept and this write fails with a one-line OutputError.

A reader of the target path sees the old file (or nothing) or the complete new one, never a part.
"""
from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from sr_cli.errors import OutputError

TEMPORARY_SUFFIX = ".tmp"
DEFAULT_ADVICE = "check free space and permissions"


def temporary_path_for(target: Path) -> Path:
    """`<name>.<random>.tmp` beside the target (same filesystem, so the final rename is atomic)."""
    return target.with_name(f"{target.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


@contextmanager
def atomic_write(target: Path, *, overwrite: bool, advice: str = DEFAULT_ADVICE) -> Iterator[BinaryIO]:
    """A binary handle whose bytes become `target` when the block ends without an exception.

    `overwrite=False` refuses to replace a file that exists when the write is published (OutputError);
    `advice` ends the message of a failed write (e.g. where else the user can point the output).
    Writers that need a path instead of a handle get it as `handle.name`.
    """
    target = Path(target)
    if not target.parent.is_dir():
        raise OutputError(f"{target}: folder {target.parent} does not exist; create it or choose another output")
    temporary = temporary_path_for(target)
    try:
        # "x": O_EXCL, and mode 0o666 minus the umask, like any file the user's programs create.
        handle = open(temporary, "xb")
    except OSError as error:
        raise _write_error(target, error, advice) from error
    try:
        try:
            with handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            _publish(temporary, target, overwrite=overwrite)
        except OSError as error:
            raise _write_error(target, error, advice) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def write_bytes_atomic(target: Path, data: bytes, *, overwrite: bool, advice: str = DEFAULT_ADVICE) -> None:
    """Write `data` to `target` with `atomic_write`'s guarantees."""
    with atomic_write(target, overwrite=overwrite, advice=advice) as handle:
        handle.write(data)


def publish_file(source: Path, target: Path, *, overwrite: bool, advice: str = DEFAULT_ADVICE) -> None:
    """Move a finished, fsynced file of ours (a verified download) to `target` with the same rules."""
    try:
        _publish(source, target, overwrite=overwrite)
    except OSError as error:
        raise _write_error(target, error, advice) from error
    _fsync_directory(target.parent)


def _publish(temporary: Path, target: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)  # fails with EEXIST instead of replacing: the no-clobber step
    except FileExistsError:
        raise _appeared_meanwhile(target) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        _publish_without_links(temporary, target)
        return
    os.unlink(temporary)


def _publish_without_links(temporary: Path, target: Path) -> None:
    """Filesystems without hard links (FAT, some network shares): Windows' rename already refuses an
    existing target; elsewhere check just before the rename (the window is microseconds, not a batch)."""
    if os.name != "nt" and os.path.lexists(target):
        raise _appeared_meanwhile(target)
    try:
        os.rename(temporary, target)
    except FileExistsError:
        raise _appeared_meanwhile(target) from None


def _appeared_meanwhile(target: Path) -> OutputError:
    return OutputError(f"{target}: exists (another program or run may have created it meanwhile); it was kept, "
                       f"pass --overwrite to replace it or choose another output")


def _write_error(target: Path, error: OSError, advice: str) -> OutputError:
    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC and advice == DEFAULT_ADVICE:
        advice = "free some disk space"
    return OutputError(f"{target}: cannot write ({reason}); {advice}")


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open folders, and does not need it."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = ["atomic_write", "publish_file", "temporary_path_for", "write_bytes_atomic"]

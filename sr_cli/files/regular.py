"""Open user files only when they are regular files, and say exactly what they are otherwise.

A FIFO blocks `open()` forever, `/dev/zero` (or a link to it) reads until memory runs out, and a folder, a
dangling link or a link loop deserve a better answer than "no such file". Every reader of user files
(images, weights) goes through `check_regular` / `open_regular` / `read_regular`, which look at what the
path *is* (following links, as `open` would) before opening it, and open without blocking so that a FIFO
swapped in between the look and the open is caught by `fstat` instead of hanging.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from sr_cli.errors import InputError

_NON_BLOCKING = getattr(os, "O_NONBLOCK", 0)  # absent on Windows, where FIFOs are no file-system objects
_NO_INHERIT = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def check_regular(path: Path, what: str) -> int:
    """The size in bytes of `path` if it is (a link to) a regular file; InputError saying what it is
    otherwise. `what` names the expected kind in messages, e.g. "an image" or "a weights file"."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise _stat_error(path, what, error) from None
    _refuse_non_regular(path, what, info.st_mode)
    return info.st_size


def open_regular(path: Path, what: str) -> BinaryIO:
    """`path` opened for binary reading, guaranteed a regular file (see `check_regular`)."""
    check_regular(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | _NON_BLOCKING | _NO_INHERIT | _BINARY)
    except OSError as error:
        raise _stat_error(path, what, error) from None
    try:
        _refuse_non_regular(path, what, os.fstat(fd).st_mode)  # replaced between stat and open
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_regular(path: Path, what: str, max_bytes: int | None = None) -> bytes:
    """The whole content of a regular file; InputError when it is larger than `max_bytes`."""
    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise InputError(f"{path}: {size / 1e9:.2f} GB is larger than {what} within sr's limits can be "
                             f"({max_bytes / 1e9:.2f} GB); check the file")
        try:
            return handle.read()
        except OSError as error:
            raise InputError(f"{path}: cannot read ({error.strerror or error}); check the file and its disk") from None


def special_kind(mode: int) -> str:
    """What a path that is neither a regular file nor a folder is, in words (the one table of them)."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def path_kind(path: Path) -> str:
    """'file', 'folder' or what else the path is ('a named pipe (FIFO)', 'a broken link', ...),
    from stat alone: nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if os.path.islink(path):
            return "a symlink loop" if error.errno == errno.ELOOP else "a broken link"
        return f"cannot be examined: {error.strerror or error}"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return special_kind(mode)


def _refuse_non_regular(path: Path, what: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not {what}; pass a file")
    kind = special_kind(mode)
    resolved = Path(os.path.realpath(path))
    via = f" ({resolved}, through a link)" if resolved != Path(os.path.abspath(path)) else ""
    raise InputError(f"{path}: is {kind}{via}, not {what}; sr reads only regular files, pass the file itself")


def _stat_error(path: Path, what: str, error: OSError) -> InputError:
    if error.errno == errno.ELOOP:
        return InputError(f"{path}: a symbolic link loop (following its links leads back to itself); fix the link")
    if error.errno == errno.ENOENT:
        if os.path.islink(path):
            return InputError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist; fix the link")
        return InputError(f"{path}: no such file; check the path")
    if error.errno == errno.ENOTDIR:
        return InputError(f"{path}: a part of the path is a file, not a folder; check the path")
    if error.errno in (errno.EACCES, errno.EPERM):
        return InputError(f"{path}: cannot read ({error.strerror}); check its permissions")
    if error.errno == errno.ENAMETOOLONG:
        return InputError(f"{path}: the name is too long for the file system; check the path")
    return InputError(f"{path}: cannot read {what} ({error.strerror or error}); check the path")

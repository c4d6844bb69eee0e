"""sr's own weights cache: `<cache>/weights/<sha256>/<filename>`.

A file only ever reaches `weights/<sha256>/` by an atomic rename after its bytes hashed to that
sha256, so the directory name is the proof of what the file is: `verify_all` re-hashes and compares
with it, without needing the manifest. Partial downloads live in `weights/.partial/` and are never
looked at as entries.

The cache root is `SR_CACHE_DIR`, else `$XDG_CACHE_HOME/sr`, else `~/.cache/sr` (design.md, "Caches").
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sr_cli.errors import ChecksumError, InputError, OutputError
from sr_cli.files.atomic import atomic_write, publish_file, temporary_path_for
from sr_cli.files.digest import HASH_CHUNK, sha256_of
from sr_cli.files.places import cache_root, folder_or_absent
from sr_cli.files.regular import check_regular
from sr_cli.weights.manifest import ManifestEntry

_SHA256_DIR = re.compile(r"[0-9a-f]{64}")
_CACHE_ADVICE = "free some space or point SR_CACHE_DIR at a writable folder"


def weights_dir() -> Path:
    return folder_or_absent(cache_root() / "weights", "the weights cache")


def partial_dir() -> Path:
    """Where downloads in progress live (`<filename>.<digest>.part`); never a cache entry."""
    return weights_dir() / ".partial"


def entry_path(sha256: str, filename: str) -> Path:
    return weights_dir() / sha256 / filename


@dataclass(frozen=True)
class CachedFile:
    sha256: str  # the directory name: what the file hashed to when it was stored
    filename: str
    path: Path
    size: int


def cached_files() -> list[CachedFile]:
    """Every stored file, sorted by file name."""
    root = weights_dir()
    if not root.is_dir():
        return []
    found: list[CachedFile] = []
    for folder in root.iterdir():
        if not folder.is_dir() or not _SHA256_DIR.fullmatch(folder.name):
            continue
        for path in folder.iterdir():
            if path.is_file() and not path.name.endswith(".tmp"):
                found.append(CachedFile(sha256=folder.name, filename=path.name, path=path, size=path.stat().st_size))
    return sorted(found, key=lambda item: (item.filename, item.sha256))


def find_damaged(entry: ManifestEntry) -> CachedFile | None:
    """A cached file for `entry` whose size is wrong (truncated or damaged), when there is one and no good one."""
    if entry.size is None or find_cached(entry) is not None:
        return None
    for path in _candidates(entry):
        size = path.stat().st_size
        if size != entry.size:
            return CachedFile(sha256=path.parent.name, filename=path.name, path=path, size=size)
    return None


def damaged_message(entry: ManifestEntry, damaged: CachedFile) -> str:
    return (f"{entry.name}: the cached {damaged.path} is damaged ({damaged.size} bytes, the published file has "
            f"{entry.size}); run `sr weights download {entry.name}` to replace it")


def find_cached(entry: ManifestEntry) -> Path | None:
    """The cached file for `entry`, if one is there and passes the cheap check (its size, where known).

    The full sha256 was checked when the file was stored; `sr weights verify` re-hashes everything.
    """
    candidates = _candidates(entry)
    for path in candidates:
        if entry.size is None or path.stat().st_size == entry.size:
            return path
    return None


def _candidates(entry: ManifestEntry) -> Iterator[Path]:
    if entry.sha256 is not None:
        path = entry_path(entry.sha256, entry.filename)
        if path.is_file():
            yield path
        return
    # Prefix-only entries are stored under the full sha256 measured at download time.
    for item in cached_files():
        if item.filename == entry.filename and entry.digest_matches(item.sha256):
            yield item.path


def store_verified(source: Path, sha256: str, filename: str, *, how: Literal["move", "link", "copy"]) -> Path:
    """Put a file whose sha256 was just computed into the cache, atomically; returns its cache path.

    "move" renames `source` (a finished download in the cache's own .partial folder); "link" hard-links
    it when the filesystem allows (the Hugging Face cache: no second copy of big files) and copies
    otherwise; "copy" always copies (a user's file, which they might later edit in place).
    """
    target = entry_path(sha256, filename)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{target.parent}: cannot write to the weights cache ({error.strerror}); {_CACHE_ADVICE}") from error
    # overwrite=True: the folder name is the content's sha256, so an entry already there holds the same bytes.
    if how == "move":
        publish_file(source, target, overwrite=True, advice=_CACHE_ADVICE)
        return target
    source = source.resolve()  # a hub snapshot entry is a symlink: link/copy the blob it points to
    if how == "link" and _hard_link(source, target):
        return target
    with atomic_write(target, overwrite=True, advice=_CACHE_ADVICE) as handle, source.open("rb") as original:
        shutil.copyfileobj(original, handle, HASH_CHUNK)
    return target


def _hard_link(source: Path, target: Path) -> bool:
    """No second copy of a big file where the filesystem allows; False (copy instead) where it does not."""
    temporary = temporary_path_for(target)
    try:
        os.link(source, temporary)
    except OSError:  # another filesystem, or links not allowed
        return False
    try:
        publish_file(temporary, target, overwrite=True, advice=_CACHE_ADVICE)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return True


def import_file(entry: ManifestEntry, source: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """`sr weights import`: check a file obtained elsewhere against the manifest and copy it into the cache.
    An ncnn pair (NAME.param or NAME.bin) is checked against the entry's ncnn source and converted."""
    if not os.path.lexists(source):
        raise InputError(f"{source}: no such file; pass the path of the downloaded {entry.filename}")
    check_regular(source, f"a downloaded {entry.filename}")
    # Imported here: the ncnn importer stores its conversion through this module (an import cycle otherwise).
    from sr_cli.weights.ncnn import import_ncnn, ncnn_pair

    pair = ncnn_pair(source)
    if pair is not None:
        return import_ncnn(entry, *pair)
    digest = sha256_of(source, progress)
    if not entry.digest_matches(digest):
        expected = entry.sha256 or f"{entry.sha256_prefix}..."
        raise ChecksumError(f"{source}: sha256 {digest} is not that of {entry.name} ({expected}); "
                            f"this is not the published {entry.filename}, nothing was imported")
    size = source.stat().st_size
    if entry.size is not None and size != entry.size:  # cannot happen with a matching full sha256; prefix-only guard
        raise ChecksumError(f"{source}: {size} bytes, but {entry.name} has {entry.size}; nothing was imported")
    return store_verified(source, digest, entry.filename, how="copy")


@dataclass(frozen=True)
class VerifyResult:
    file: CachedFile
    actual_sha256: str

    @property
    def ok(self) -> bool:
        return self.actual_sha256 == self.file.sha256


def verify_all(progress: Callable[[int, int], None] | None = None,
               *, remove_bad: bool = False) -> list[VerifyResult]:
    """Re-hash every cached file against the sha256 it was stored under; optionally delete the bad ones."""
    files = cached_files()
    total = sum(item.size for item in files)
    done = 0
    results: list[VerifyResult] = []
    for item in files:
        offset = done
        report = None if progress is None else (lambda d, _t, o=offset: progress(o + d, total))
        results.append(VerifyResult(file=item, actual_sha256=sha256_of(item.path, report)))
        done += item.size
        if remove_bad and not results[-1].ok:
            item.path.unlink()
            _remove_if_empty(item.path.parent)
    return results


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another file of the same hash) or already gone: both fine



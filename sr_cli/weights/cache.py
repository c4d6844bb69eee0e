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
import time
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


def part_path(entry: ManifestEntry) -> Path:
    """The stable name of an in-progress download, so a later attempt (any source) can resume it."""
    return partial_dir() / f"{entry.filename}.{entry.expected_digest}.part"


def lock_path(part: Path) -> Path:
    """The lock a download holds while it writes `part` (download.fetch takes it; removal checks it)."""
    return part.with_suffix(".lock")


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




# --- removal: `sr weights rm` and `sr weights prune` ---------------------------------------------------

TEMPORARY_MIN_AGE_S = 60.0  # a younger *.tmp may be a running sr's write in progress


@dataclass(frozen=True)
class Removable:
    """A file in sr's weights cache that `rm` / `prune` would delete, and why."""

    path: Path
    size: int
    reason: Literal["cached", "damaged", "partial download", "not in the manifest", "temporary"]
    name: str | None  # the manifest entry it belongs to, when it belongs to one
    shared: bool  # hard-linked from the Hugging Face cache: deleting it frees no space while that copy stays


def files_of(entry: ManifestEntry) -> list[Removable]:
    """Every file sr's cache holds for `entry`: its stored copies (good or damaged) and its partial download.
    The bundled copy lives inside the package, not in the cache, so it is never among them."""
    found = [_removable(path, "cached" if entry.size is None or path.stat().st_size == entry.size else "damaged",
                        entry.name) for path in _candidates(entry)]
    part = part_path(entry)
    if part.is_file() and not _in_use(lock_path(part)):
        found.append(_removable(part, "partial download", entry.name))
    return found


def prune_candidates(entries: tuple[ManifestEntry, ...], *, everything: bool) -> list[Removable]:
    """What `sr weights prune` removes: partial downloads nobody is writing, files of the wrong size, files
    no manifest entry names (an older sr's, an edited manifest), temporaries older than a minute left by a
    killed process; with `everything`, every cached weight file as well. Nothing outside sr's weights folder
    (the Hugging Face cache, datasets, the bundled files) is ever a candidate."""
    found: list[Removable] = []
    for item in cached_files():
        owner = next((entry for entry in entries
                      if entry.filename == item.filename and entry.accepts(item.sha256)), None)
        if owner is None:
            found.append(_removable(item.path, "not in the manifest", None))
        elif owner.size is not None and item.size != owner.size and owner.digest_matches(item.sha256):
            found.append(_removable(item.path, "damaged", owner.name))
        elif everything:
            found.append(_removable(item.path, "cached", owner.name))
    root = weights_dir()
    partial = partial_dir()
    if partial.is_dir():
        by_part = {part_path(entry).name: entry.name for entry in entries}
        for path in sorted(partial.glob("*.part")):
            if path.is_file() and not _in_use(lock_path(path)):
                found.append(_removable(path, "partial download", by_part.get(path.name)))
    if root.is_dir():
        now = time.time()
        for path in sorted(root.glob("*/*.tmp")):
            if path.is_file() and now - path.stat().st_mtime > TEMPORARY_MIN_AGE_S:
                found.append(_removable(path, "temporary", None))
    return found


def remove_files(items: list[Removable]) -> int:
    """Delete `items` (and the hash folders they leave empty); returns the bytes freed on disk."""
    freed = 0
    for item in items:
        try:
            item.path.unlink()
        except FileNotFoundError:
            continue  # removed meanwhile (another prune): the goal is reached
        except OSError as error:
            raise OutputError(f"{item.path}: cannot remove it ({error.strerror}); check the folder's permissions") from error
        freed += 0 if item.shared else item.size
        if item.path.parent != partial_dir():
            _remove_if_empty(item.path.parent)
        else:
            lock_path(item.path).unlink(missing_ok=True)
    return freed


def _removable(path: Path, reason: Literal["cached", "damaged", "partial download", "not in the manifest", "temporary"],
               name: str | None) -> Removable:
    info = path.stat()
    return Removable(path=path, size=info.st_size, reason=reason, name=name, shared=info.st_nlink > 1)


def _in_use(lock: Path) -> bool:
    """Is a download writing the part file of this lock right now? (It holds the lock: try it, do not wait.)"""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; a partial file is only removed on request there anyway
        return False
    if not lock.exists():
        return False
    try:
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False

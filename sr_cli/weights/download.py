"""Get a manifest entry's file into the cache, verified: `fetch(entry) -> Path`.

Order: sr's cache (cheap size check) -> each source in manifest order. Hub sources go through
huggingface_hub (its cache, HF_HOME/HF_ENDPOINT/HF_HUB_OFFLINE) and are then sha256-checked here,
because huggingface_hub checks only sizes. URL sources stream into `weights/.partial/<name>.<digest>.part`
with sha256 computed on the fly, resume an existing .part with a Range request when the server
honours it (and restart otherwise), and are renamed into `weights/<sha256>/` only after the size and
hash match. A file with the wrong hash is deleted, never cached. A .part interrupted by a network
error or Ctrl-C stays for the next attempt to resume; it is never taken for a cache entry.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sr_cli import __version__
from sr_cli.errors import ChecksumError, DownloadError, OfflineError, OutputError
from sr_cli.weights.cache import (
    HASH_CHUNK,
    find_cached,
    partial_dir,
    sha256_of,
    store_verified,
)
from sr_cli.weights.hub import HubUnavailable, evict_from_hub_cache, fetch_from_hub
from sr_cli.weights.manifest import HubSource, ManifestEntry, Source, UrlSource

Progress = Callable[[int, int], None]  # (bytes done, bytes total; 0 when the total is unknown)

DEFAULT_TIMEOUT_S = 30.0  # per connect / per read: bounds a silent server, not a slow steady transfer
_TRUE = {"1", "true", "yes", "on"}


def offline_mode() -> bool:
    """SR_OFFLINE or HF_HUB_OFFLINE set to a true value: no network at all."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("SR_OFFLINE", "HF_HUB_OFFLINE"))


def offline_message(entry: ManifestEntry) -> str:
    return (f"{entry.name} is not in the cache; run `sr weights download {entry.name}` where there is network, "
            f"or pass --weights FILE")


class _SourceFailed(Exception):
    """One source could not deliver a verified file; `str()` is the one-line reason."""

    def __init__(self, reason: str, *, checksum: bool = False) -> None:
        super().__init__(reason)
        self.checksum = checksum


def fetch(entry: ManifestEntry, *, progress: Progress | None = None, offline: bool | None = None,
          timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """The verified local file of `entry`, downloading it if needed.

    Raises OfflineError (offline and not cached), ChecksumError (every source served wrong bytes)
    or DownloadError (every source failed; the message lists each source and why).
    """
    cached = find_cached(entry)
    if cached is not None:
        return cached
    if offline_mode() if offline is None else offline:
        return _from_hub_cache_only(entry)
    with _download_lock(entry):
        cached = find_cached(entry)  # another process may have finished it while we waited
        if cached is not None:
            return cached
        failures: list[_SourceFailed] = []
        described: list[str] = []
        for source in entry.sources:
            try:
                return _from_source(entry, source, progress, timeout)
            except _SourceFailed as failure:
                failures.append(failure)
                described.append(f"{source.describe()}: {failure}")
    summary = f"{entry.name}: every source failed: " + "; ".join(described)
    if all(failure.checksum for failure in failures):
        raise ChecksumError(summary + "; the files were deleted, nothing was cached")
    raise DownloadError(summary + "; check the network (or HF_ENDPOINT), or get the file elsewhere "
                        f"and run `sr weights import {entry.name} FILE`")


def _from_hub_cache_only(entry: ManifestEntry) -> Path:
    """Offline: a hub source already in the Hugging Face cache still counts (after the sha256 check)."""
    for source in entry.sources:
        if isinstance(source, HubSource):
            try:
                path = fetch_from_hub(source, local_only=True, timeout=DEFAULT_TIMEOUT_S)
            except HubUnavailable:
                continue  # not in the hub cache under this mirror; the next one may be
            try:
                return _keep_hub_file(entry, path)
            except _SourceFailed:
                continue  # a bad file was evicted; offline there is nothing else to try for it
    raise OfflineError(offline_message(entry))


def _from_source(entry: ManifestEntry, source: Source, progress: Progress | None, timeout: float) -> Path:
    if isinstance(source, HubSource):
        try:
            path = fetch_from_hub(source, local_only=False, timeout=timeout, progress=progress)
        except HubUnavailable as error:
            raise _SourceFailed(str(error)) from error
        return _keep_hub_file(entry, path)
    assert isinstance(source, UrlSource)
    return _from_url(entry, source.url, progress, timeout)


def _keep_hub_file(entry: ManifestEntry, path: Path) -> Path:
    digest = sha256_of(path)
    if not entry.digest_matches(digest):
        evict_from_hub_cache(path)
        raise _SourceFailed(_mismatch(entry, digest), checksum=True)
    return store_verified(path, digest, entry.filename, how="link")


def _mismatch(entry: ManifestEntry, digest: str) -> str:
    return f"sha256 {digest[:16]}... is not the expected {entry.expected_digest[:16]}... (deleted)"


# --- plain HTTP(S) -----------------------------------------------------------------------------------


def part_path(entry: ManifestEntry) -> Path:
    """The stable name of an in-progress download, so a later attempt (any source) can resume it."""
    return partial_dir() / f"{entry.filename}.{entry.expected_digest}.part"


def _from_url(entry: ManifestEntry, url: str, progress: Progress | None, timeout: float) -> Path:
    part = part_path(entry)
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cache_write_error(part, error) from error
    if entry.size is not None and part.is_file() and part.stat().st_size == entry.size:
        # Interrupted between the last byte and the rename: the data may be all there already.
        digest = sha256_of(part)
        if entry.digest_matches(digest):
            return store_verified(part, digest, entry.filename, how="move")
    result = _stream(url, part, entry.size, progress, timeout)
    if not entry.digest_matches(result.sha256) and result.resumed:
        # The kept prefix may be what is wrong (e.g. an earlier server sent other bytes): one clean restart.
        part.unlink(missing_ok=True)
        result = _stream(url, part, entry.size, progress, timeout)
    if entry.size is not None and result.size != entry.size:
        part.unlink(missing_ok=True)
        raise _SourceFailed(f"{result.size} bytes, expected {entry.size} (deleted)", checksum=True)
    if not entry.digest_matches(result.sha256):
        part.unlink(missing_ok=True)
        raise _SourceFailed(_mismatch(entry, result.sha256), checksum=True)
    return store_verified(part, result.sha256, entry.filename, how="move")


@dataclass(frozen=True)
class _Streamed:
    sha256: str
    size: int
    resumed: bool


def _stream(url: str, part: Path, expected_size: int | None, progress: Progress | None, timeout: float) -> _Streamed:
    """Download `url` into `part` (resuming it when possible); the .part is kept on a network error."""
    existing = part.stat().st_size if part.exists() else 0
    if expected_size is not None and existing >= expected_size:
        existing = 0  # complete or over-long leftovers: cheaper to refetch than to trust
    headers = {"User-Agent": f"sr-cli/{__version__}", "Accept-Encoding": "identity"}
    if existing:
        headers["Range"] = f"bytes={existing}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and existing:  # our offset is past the file: the .part is not a prefix of it
            part.unlink(missing_ok=True)
            return _stream(url, part, expected_size, progress, timeout)
        raise _SourceFailed(f"HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _SourceFailed(_network_reason(error, timeout)) from error
    if response.status == 206 and not (response.headers.get("Content-Range") or "").startswith(f"bytes {existing}-"):
        # A range we did not ask for (or a 206 to a plain GET): its body is not what we need. Start clean.
        response.close()
        if not existing:
            raise _SourceFailed(f"the server answered a plain request with a partial body "
                                f"({response.headers.get('Content-Range')})")
        part.unlink(missing_ok=True)
        return _stream(url, part, expected_size, progress, timeout)
    with response:
        resumed = bool(existing) and response.status == 206
        if not resumed:
            existing = 0  # the server ignored Range (200): the body is the whole file, start over
        hasher = _hash_prefix(part, existing)
        length = _int_or_none(response.headers.get("Content-Length"))
        total = existing + length if length is not None else (expected_size or 0)
        done = existing
        try:
            handle = part.open("r+b" if existing else "wb")
        except OSError as error:
            raise _cache_write_error(part, error) from error
        with handle:
            handle.seek(existing)
            handle.truncate()
            while True:
                try:
                    chunk = response.read(HASH_CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    handle.flush()
                    raise _SourceFailed(f"connection lost after {done} of {total or '?'} bytes: "
                                        f"{_network_reason(error, timeout)} (partial file kept to resume)") from error
                if not chunk:
                    break
                if expected_size is not None and done + len(chunk) > expected_size:
                    handle.close()
                    part.unlink(missing_ok=True)
                    raise _SourceFailed(f"sent more than the expected {expected_size} bytes (deleted)", checksum=True)
                try:
                    handle.write(chunk)
                except OSError as error:  # disk full, quota: not the source's fault, so no next source
                    raise _cache_write_error(part, error) from error
                hasher.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as error:
                raise _cache_write_error(part, error) from error
    if length is not None and done != existing + length:
        raise _SourceFailed(f"truncated: got {done} of {existing + length} bytes (partial file kept to resume)")
    return _Streamed(sha256=hasher.hexdigest(), size=done, resumed=resumed)


def _cache_write_error(part: Path, error: OSError) -> OutputError:
    return OutputError(f"{part}: cannot write the download ({error.strerror or error}); free some space "
                       f"or point SR_CACHE_DIR at a writable folder with room")


def _hash_prefix(part: Path, length: int) -> hashlib._Hash:
    hasher = hashlib.sha256()
    if length:
        with part.open("rb") as handle:
            remaining = length
            while remaining and (chunk := handle.read(min(HASH_CHUNK, remaining))):
                hasher.update(chunk)
                remaining -= len(chunk)
    return hasher


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _network_reason(error: BaseException, timeout: float) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no response within {timeout:g} s"
    if isinstance(reason, http.client.IncompleteRead):
        return "the server closed the connection early"
    text = str(reason).strip()
    return text.splitlines()[0] if text else type(reason).__name__


# --- one download per file at a time ----------------------------------------------------------------


@contextmanager
def _download_lock(entry: ManifestEntry) -> Iterator[None]:
    """Serialise downloads of the same file across processes (POSIX flock), so two `sr` runs never
    write the same .part at once; the second waits, then finds the first one's result in the cache."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the sha256 check still refuses a mangled file
        yield
        return
    lock_path = part_path(entry).with_suffix(".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("a")
    except OSError as error:
        raise _cache_write_error(lock_path, error) from error
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

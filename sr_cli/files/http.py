"""The one verified HTTP download stream, for weights, benchmark sets, DIV2K and VGG19 alike.

`fetch_url(url, part, expected, size)` leaves in `part` bytes whose sha256 matches `expected` (a full
digest or a published prefix, `files.digest.ExpectedSha256`) and returns their full sha256:

- the hash is computed while the bytes stream in (no second pass over a 3.5 GB archive);
- an existing `part` is resumed with a Range request; the answer must be 206 with a Content-Range that
  starts at our offset (anything else restarts cleanly), a 416 means the part is not a prefix of the
  file (restart), a server that ignores Range (200) restarts from zero, and a resumed file whose hash
  fails is fetched once more from scratch (the kept prefix may be what was wrong);
- a body longer than the known size, or one that ends short of its Content-Length, is refused;
- the free space of the target folder is checked against what is still to come before writing;
- a network or server problem is `SourceFailed` (the caller may try the next source; a partial file is
  kept to resume), our own disk failing is `OutputError` (no other source would help).

`download_to(url, dest, expected, size)` is the whole job for a file with one source (datasets, VGG):
cache hit, offline refusal, a lock so that two processes never write one part file, the stream above,
the atomic publish. Weights (several sources, the hub, a content-addressed cache) call `fetch_url`
under `download_lock` themselves (weights/download.py).
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sr_cli import __version__
from sr_cli.errors import ChecksumError, DownloadError, OfflineError, OutputError
from sr_cli.files.atomic import publish_file
from sr_cli.files.digest import HASH_CHUNK, ExpectedSha256, sha256_of

Progress = Callable[[int, int], None]  # (bytes done, bytes total; 0 when the total is unknown)

DEFAULT_TIMEOUT_S = 30.0  # per connect / per read: bounds a silent server, not a slow steady transfer
DISK_MARGIN = 64 << 20  # keep this much free beyond the file itself
_TRUE = {"1", "true", "yes", "on"}
_DISK_ADVICE = "free some space or point SR_CACHE_DIR at a writable folder with room"


def offline_mode() -> bool:
    """SR_OFFLINE or HF_HUB_OFFLINE set to a true value: no network at all."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("SR_OFFLINE", "HF_HUB_OFFLINE"))


class SourceFailed(Exception):
    """One source could not deliver verified bytes; `str()` is the one-line reason. `checksum`: it
    delivered wrong bytes (as opposed to none). `unreachable`: its host could not be reached at all (the
    name does not resolve, the connection is refused, no route): no network there, so no retry."""

    def __init__(self, reason: str, *, checksum: bool = False, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.checksum = checksum
        self.unreachable = unreachable


_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL}


def host_of(url: str) -> str:
    """`host:port` of a URL (the default port for its scheme): the unit that is reachable or not."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname or ''}:{port}"


def no_network_reason(error: BaseException, host: str) -> str | None:
    """The one-line reason when `error` says `host` cannot be reached at all, else None (slow, HTTP, ...)."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve {host.rsplit(':', 1)[0]} (no network or no DNS)"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(reason, OSError) and reason.errno in _NO_ROUTE:
        return f"no route to {host} ({reason.strerror})"
    return None


def check_reachable(url: str, timeout: float) -> None:
    """One TCP connection to where a request for `url` would go (its proxy, where one applies), so that a
    client with its own retry policy (huggingface_hub: 5 tries with backoff, about 25 s per mirror) is not
    started against a network that is not there. SourceFailed(unreachable=True) when it is not; a slow
    answer is left to the real request, which has its own timeout."""
    parts = urllib.parse.urlsplit(url)
    target = url
    proxies = urllib.request.getproxies()  # the *_proxy variables, as urllib and httpx read them
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        target = proxy if "://" in proxy else f"http://{proxy}"
    host = host_of(target)
    name, port = host.rsplit(":", 1)
    try:
        with socket.create_connection((name, int(port)), timeout=min(timeout, 10.0)):
            pass
    except OSError as error:
        reason = no_network_reason(error, host)
        if reason is not None:
            raise SourceFailed(reason, unreachable=True) from error


def mismatch_reason(expected: ExpectedSha256, actual: str) -> str:
    return f"sha256 {actual[:16]}... does not match the expected {expected.short()} (deleted)"


def fetch_url(url: str, part: Path, expected: ExpectedSha256, size: int | None, *,
              progress: Progress | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> str:
    """Leave the verified bytes of `url` in `part` (resuming it) and return their full sha256."""
    try:
        part.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _disk_error(part, error) from error
    if size is not None and part.is_file() and part.stat().st_size == size:
        # Interrupted between the last byte and the rename: the data may be all there already.
        digest = sha256_of(part)
        if expected.matches(digest):
            return digest
    result = _stream(url, part, size, progress, timeout)
    if not expected.matches(result.sha256) and result.resumed:
        part.unlink(missing_ok=True)  # the kept prefix may be what is wrong: one clean restart
        result = _stream(url, part, size, progress, timeout)
    if size is not None and result.size != size:
        part.unlink(missing_ok=True)
        raise SourceFailed(f"{result.size} bytes, expected {size} (deleted)", checksum=True)
    if not expected.matches(result.sha256):
        part.unlink(missing_ok=True)
        raise SourceFailed(mismatch_reason(expected, result.sha256), checksum=True)
    return result.sha256


def download_to(url: str, dest: Path, expected: ExpectedSha256, size: int | None, *,
                progress: Progress | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """`dest`, downloaded (or resumed from `<dest>.part`) and verified; returned at once if present.

    A file at `dest` was verified when it was put there (only this function puts it there).
    Raises OfflineError, DownloadError (network/server; the part file is kept to resume),
    ChecksumError (wrong bytes, deleted) or OutputError (our disk).
    """
    if dest.is_file():
        return dest
    if offline_mode():
        raise OfflineError(f"{dest.name} is not in {dest.parent} and SR_OFFLINE/HF_HUB_OFFLINE forbids the network; "
                           f"put the file there or unset the variable")
    part = dest.with_name(dest.name + ".part")
    with download_lock(part.with_name(part.name + ".lock"), remove=True):
        if dest.is_file():  # another process finished it while we waited
            return dest
        try:
            fetch_url(url, part, expected, size, progress=progress, timeout=timeout)
        except SourceFailed as failure:
            if failure.checksum:
                raise ChecksumError(f"{url}: {failure}; the file was not kept") from None
            kept = f"; the partial file {part} is kept and resumed" if part.is_file() else ""
            if failure.unreachable:
                raise DownloadError(f"{url}: {failure}; run again where there is network, or put {dest.name} "
                                    f"in {dest.parent} yourself{kept}") from None
            raise DownloadError(f"{url}: {failure}; check the network and run again{kept}") from None
        # overwrite=True: under the lock nobody else writes `dest`, and what is there was verified too.
        publish_file(part, dest, overwrite=True, advice=_DISK_ADVICE)
    return dest


# --- the stream ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Streamed:
    sha256: str
    size: int
    resumed: bool


def _stream(url: str, part: Path, expected_size: int | None, progress: Progress | None, timeout: float) -> _Streamed:
    """Download `url` into `part` (resuming it when possible); the part is kept on a network error."""
    existing = part.stat().st_size if part.exists() else 0
    if expected_size is not None and existing >= expected_size:
        existing = 0  # complete or over-long leftovers: cheaper to refetch than to trust
    if expected_size is not None:
        _check_free_space(part, expected_size - existing, url)  # before a single byte is asked for
    headers = {"User-Agent": f"sr-cli/{__version__}", "Accept-Encoding": "identity"}
    if existing:
        headers["Range"] = f"bytes={existing}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and existing:  # our offset is past the file: the part is not a prefix of it
            part.unlink(missing_ok=True)
            return _stream(url, part, expected_size, progress, timeout)
        raise SourceFailed(f"HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        unreachable = no_network_reason(error, host_of(url))
        if unreachable is not None:
            raise SourceFailed(unreachable, unreachable=True) from error
        raise SourceFailed(_network_reason(error, timeout)) from error
    if response.status == 206 and not (response.headers.get("Content-Range") or "").startswith(f"bytes {existing}-"):
        # A range we did not ask for (or a 206 to a plain GET): its body is not what we need. Start clean.
        response.close()
        if not existing:
            raise SourceFailed(f"the server answered a plain request with a partial body "
                               f"({response.headers.get('Content-Range')})")
        part.unlink(missing_ok=True)
        return _stream(url, part, expected_size, progress, timeout)
    with response:
        resumed = bool(existing) and response.status == 206
        if not resumed:
            existing = 0  # the server ignored Range (200): the body is the whole file, start over
        length = _int_or_none(response.headers.get("Content-Length"))
        if expected_size is None and length is not None:
            _check_free_space(part, length, url)
        hasher = _hash_prefix(part, existing)
        total = existing + length if length is not None else (expected_size or 0)
        done = _copy_body(response, part, existing, expected_size, total, hasher, progress, timeout)
    if length is not None and done != existing + length:
        raise SourceFailed(f"truncated: got {done} of {existing + length} bytes (partial file kept to resume)")
    return _Streamed(sha256=hasher.hexdigest(), size=done, resumed=resumed)


def _copy_body(response: http.client.HTTPResponse, part: Path, existing: int, expected_size: int | None, total: int,
               hasher: hashlib._Hash, progress: Progress | None, timeout: float) -> int:
    """Append the body to `part` after `existing` bytes, hashing as it goes; returns the bytes in `part`."""
    done = existing
    try:
        handle = part.open("r+b" if existing else "wb")
    except OSError as error:
        raise _disk_error(part, error) from error
    with handle:
        handle.seek(existing)
        handle.truncate()
        while True:
            try:
                chunk = response.read(HASH_CHUNK)
            except (OSError, http.client.HTTPException) as error:
                handle.flush()
                raise SourceFailed(f"connection lost after {done} of {total or '?'} bytes: "
                                   f"{_network_reason(error, timeout)} (partial file kept to resume)") from error
            if not chunk:
                break
            if expected_size is not None and done + len(chunk) > expected_size:
                handle.close()
                part.unlink(missing_ok=True)
                raise SourceFailed(f"sent more than the expected {expected_size} bytes (deleted)", checksum=True)
            try:
                handle.write(chunk)
            except OSError as error:  # disk full, quota: not the source's fault, so no next source
                raise _disk_error(part, error) from error
            hasher.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        try:
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as error:
            raise _disk_error(part, error) from error
    return done


def _check_free_space(part: Path, needed: int, url: str) -> None:
    try:
        free = shutil.disk_usage(part.parent).free
    except OSError:
        return  # cannot tell (some network filesystems): the write itself will say if it fails
    if free < needed + DISK_MARGIN:
        raise OutputError(f"{part.parent}: {needed / 1e9:.2f} GB still to download from {url} but only "
                          f"{free / 1e9:.2f} GB free; free space or set SR_CACHE_DIR to a larger disk")


def _disk_error(part: Path, error: OSError) -> OutputError:
    return OutputError(f"{part}: cannot write the download ({error.strerror or error}); {_DISK_ADVICE}")


def _hash_prefix(part: Path, length: int) -> hashlib._Hash:
    """The hash state after the kept prefix of a resumed part (the only bytes read back from disk)."""
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
def download_lock(lock_path: Path, *, remove: bool = False) -> Iterator[None]:
    """Serialise downloads of the same file across processes (POSIX flock), so two `sr` runs never
    write the same part file at once; the second waits, then finds the first one's result.

    `remove`: delete the lock file when done (it sits beside a user-visible file, e.g. in a dataset
    folder). A waiter that then holds a lock on the deleted file notices (the path no longer names the
    file it locked) and locks again, so two holders never overlap."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the sha256 check still refuses a mangled file
        yield
        return
    while True:
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a")
        except OSError as error:
            raise _disk_error(lock_path, error) from error
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        if not remove or _same_file(handle.fileno(), lock_path):
            break
        handle.close()  # the holder before us deleted this lock file: take the current one
    with handle:
        try:
            yield
        finally:
            if remove:
                lock_path.unlink(missing_ok=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), path.stat())
    except FileNotFoundError:
        return False


__all__ = ["DEFAULT_TIMEOUT_S", "Progress", "SourceFailed", "check_reachable", "download_lock", "download_to",
           "fetch_url", "host_of", "mismatch_reason", "no_network_reason", "offline_mode"]

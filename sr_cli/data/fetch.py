"""Resumable HTTP download with a size and sha256 check, for training assets (DIV2K, VGG19).

- The bytes go to `<dest>.part` beside the destination; an interrupted download continues from
  there with an HTTP Range request (a server that ignores Range restarts it from zero).
- Before writing, the free space of the target folder is compared with what is still to come.
- The finished file is checked (size, then full sha256 or, where only that is published, its
  prefix) before it is renamed into place; a mismatch deletes the partial file and raises.
- SR_OFFLINE=1 or HF_HUB_OFFLINE=1: no network at all (OfflineError).
"""
from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sr_cli.errors import ChecksumError, DownloadError, OfflineError, OutputError
from sr_cli.weights import cache as weights_cache
from sr_cli.weights.download import offline_mode

Progress = Callable[[int, int], None]
CHUNK = 1 << 20
DISK_MARGIN = 64 << 20  # keep this much free beyond the file itself


@dataclass(frozen=True)
class RemoteFile:
    url: str
    size: int | None  # bytes, when published
    sha256: str  # full hex digest, or a prefix of it (torchvision publishes 8 digits)

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


# One cache root, one offline switch and one hasher for all of sr (weights and data alike).
cache_root = weights_cache.cache_root
offline = offline_mode


def sha256_file(path: Path) -> str:
    return weights_cache.sha256_of(path)


def _check_space(folder: Path, needed: int, url: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        raise OutputError(f"{folder}: {needed / 1e9:.2f} GB still to download from {url} but only "
                          f"{free / 1e9:.2f} GB free; free space or set SR_CACHE_DIR to a larger disk")


def download(remote: RemoteFile, dest: Path, progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """`dest`, downloaded (or continued) from `remote.url` and verified; returns it at once if present."""
    if dest.is_file():
        return dest
    if offline():
        raise OfflineError(f"{dest.name} is not in the cache ({dest.parent}) and SR_OFFLINE/HF_HUB_OFFLINE forbids "
                           f"the network; put the file there or unset the variable")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if remote.size is not None:
        if have > remote.size:
            part.unlink()
            have = 0
        _check_space(dest.parent, remote.size - have, remote.url)
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - https/http URLs we pin
            if have and response.status != 206:
                have = 0  # the server ignored Range: start over
            length = response.headers.get("Content-Length")
            total = remote.size or (have + int(length) if length else 0)
            if remote.size is None and length:
                _check_space(dest.parent, int(length), remote.url)
            with part.open("ab" if have else "wb") as handle:
                done = have
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    handle.write(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
                handle.flush()
                os.fsync(handle.fileno())
    except urllib.error.HTTPError as error:
        if error.code == 416 and remote.size is not None and have == remote.size:
            pass  # already complete: verify below
        else:
            raise DownloadError(f"{remote.url}: HTTP {error.code} {error.reason}; try again later "
                                f"(the partial file {part} is kept and resumed)") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{remote.url}: {reason}; check the network and run again "
                            f"(the partial file {part} is kept and resumed)") from None
    except OSError as error:
        raise OutputError(f"{part}: cannot write ({error.strerror or error}); check free space and permissions") from None
    size = part.stat().st_size
    if remote.size is not None and size != remote.size:
        if size < remote.size:
            raise DownloadError(f"{remote.url}: connection ended at {size} of {remote.size} bytes; run again to resume")
        part.unlink()
        raise ChecksumError(f"{remote.url}: got {size} bytes, expected {remote.size}; the file was not kept")
    digest = sha256_file(part)
    if not digest.startswith(remote.sha256.lower()):
        part.unlink()
        raise ChecksumError(f"{remote.url}: sha256 {digest} does not match the expected {remote.sha256}; "
                            f"the file was not kept")
    os.replace(part, dest)
    return dest

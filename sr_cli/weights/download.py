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

from pathlib import Path

from sr_cli.errors import ChecksumError, DownloadError, OfflineError
from sr_cli.files.digest import sha256_of
from sr_cli.files.http import (
    DEFAULT_TIMEOUT_S,
    Progress,
    SourceFailed,
    check_reachable,
    download_lock,
    fetch_url,
    host_of,
    mismatch_reason,
    offline_mode,
)
from sr_cli.weights.bundled import verified_bundled_file
from sr_cli.weights.cache import find_cached, find_damaged, lock_path, part_path, store_verified
from sr_cli.weights.hub import HubUnavailable, evict_from_hub_cache, fetch_from_hub, hub_endpoint
from sr_cli.weights.manifest import HubSource, ManifestEntry, Source, UrlSource


def offline_message(entry: ManifestEntry) -> str:
    damaged = find_damaged(entry)
    if damaged is not None:  # "not in the cache" would send the user looking for a file that is there
        return (f"{entry.name}: the cached {damaged.path} is damaged ({damaged.size} bytes, the published file has "
                f"{entry.size}) and the network is off; run `sr weights download {entry.name}` where there is "
                f"network to replace it, or pass --weights FILE")
    return (f"{entry.name} is not in the cache; run `sr weights download {entry.name}` where there is network, "
            f"or pass --weights FILE")


def not_downloadable_message(entry: ManifestEntry) -> str:
    ncnn = entry.ncnn
    if ncnn is None:
        return f"{entry.name} has no download source and its bundled file is missing; reinstall sr"
    param = ncnn.param_filename
    return (f"{entry.name} is converted from the authors' ncnn export, which sr does not download: get "
            f"{param} and its .bin ({ncnn.origin}), then run `sr weights import {entry.name} {param}` "
            f"(or pass --weights {param})")


def fetch(entry: ManifestEntry, *, progress: Progress | None = None, offline: bool | None = None,
          timeout: float = DEFAULT_TIMEOUT_S, bundled: bool = True) -> Path:
    """The verified local file of `entry`, downloading it if needed.

    Order: the entry's own file in sr's cache; then, with `bundled` (the default), the copy shipped inside
    the package (verified; no network); then the downloadable sources. `bundled=False` (`sr weights
    download`) skips the bundled copy, unless the entry has nothing to download.
    Raises OfflineError (offline and not cached), ChecksumError (every source served wrong bytes)
    or DownloadError (every source failed; the message lists each source and why).
    """
    cached = find_cached(entry)
    if cached is not None:
        return cached
    if bundled or not entry.downloadable:
        shipped = verified_bundled_file(entry)
        if shipped is not None:
            return shipped
    if not entry.downloadable:
        raise DownloadError(not_downloadable_message(entry))
    if offline_mode() if offline is None else offline:
        return _from_hub_cache_only(entry)
    with download_lock(lock_path(part_path(entry))):
        cached = find_cached(entry)  # another process may have finished it while we waited
        if cached is not None:
            return cached
        failures: list[SourceFailed] = []
        described: list[str] = []
        unreachable: dict[str, SourceFailed] = {}  # host -> why: a host that cannot be reached is not asked twice
        for source in entry.sources:
            if not isinstance(source, (HubSource, UrlSource)):
                continue  # bundled (handled above) and ncnn (`sr weights import`) are not downloads
            host = host_of(_request_url(source))
            try:
                if host in unreachable:
                    raise unreachable[host]
                return _from_source(entry, source, progress, timeout)
            except SourceFailed as failure:
                failures.append(failure)
                described.append(f"{source.describe()}: {failure}")
                if failure.unreachable:
                    unreachable[host] = failure
    if failures and all(failure.unreachable for failure in failures):
        raise DownloadError(no_network_message(entry, failures))
    summary = f"{entry.name}: every source failed: " + "; ".join(described)
    if all(failure.checksum for failure in failures):
        raise ChecksumError(summary + "; the files were deleted, nothing was cached")
    raise DownloadError(summary + "; check the network (or HF_ENDPOINT), or get the file elsewhere "
                        f"and run `sr weights import {entry.name} FILE`")


def no_network_message(entry: ManifestEntry, failures: list[SourceFailed]) -> str:
    """One line for "there is no network": which hosts, and the two ways on (offline mode, import)."""
    reasons = ", ".join(dict.fromkeys(str(failure) for failure in failures))
    return (f"{entry.name}: not cached and no network ({reasons}); set SR_OFFLINE=1 to use only cached and "
            f"bundled weights, or get {entry.filename} elsewhere and run `sr weights import {entry.name} FILE`")


def _request_url(source: HubSource | UrlSource) -> str:
    return hub_endpoint() if isinstance(source, HubSource) else source.url


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
            except SourceFailed:
                continue  # a bad file was evicted; offline there is nothing else to try for it
    raise OfflineError(offline_message(entry))


def _from_source(entry: ManifestEntry, source: Source, progress: Progress | None, timeout: float) -> Path:
    if isinstance(source, HubSource):
        check_reachable(hub_endpoint(), timeout)  # huggingface_hub would retry a dead network for ~25 s
        try:
            path = fetch_from_hub(source, local_only=False, timeout=timeout, progress=progress)
        except HubUnavailable as error:
            raise SourceFailed(str(error)) from error
        return _keep_hub_file(entry, path)
    assert isinstance(source, UrlSource)
    return _from_url(entry, source.url, progress, timeout)


def _keep_hub_file(entry: ManifestEntry, path: Path) -> Path:
    digest = sha256_of(path)
    if not entry.digest.matches(digest):
        evict_from_hub_cache(path)
        raise SourceFailed(mismatch_reason(entry.digest, digest), checksum=True)
    return store_verified(path, digest, entry.filename, how="link")


# --- plain HTTP(S): the shared verified stream (sr_cli.files.http) into the cache's .partial folder ----------


def _from_url(entry: ManifestEntry, url: str, progress: Progress | None, timeout: float) -> Path:
    part = part_path(entry)
    digest = fetch_url(url, part, entry.digest, entry.size, progress=progress, timeout=timeout)
    return store_verified(part, digest, entry.filename, how="move")

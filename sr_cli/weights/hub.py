"""The one place sr imports huggingface_hub: fetch a pinned file into the Hugging Face cache.

Environment is read on every call, not at import, so a change of HF_ENDPOINT / HF_HOME /
HF_HUB_CACHE after startup (tests, long-lived API users) is honoured: huggingface_hub itself
freezes those values into its constants when it is first imported.

huggingface_hub checks sizes, not sha256: the caller (download.py) hashes what this returns.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from huggingface_hub.utils import tqdm as hf_tqdm

from sr_cli.weights.manifest import HubSource

DEFAULT_HUB_ENDPOINT = "https://huggingface.co"


class HubUnavailable(Exception):
    """This hub source could not deliver the file; `str()` is a one-line reason for the DownloadError summary."""


def hub_cache_dir() -> Path | None:
    """HF_HUB_CACHE, else $HF_HOME/hub, else None (huggingface_hub's own default, ~/.cache/huggingface/hub)."""
    explicit = os.environ.get("HF_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    return None


def effective_hub_cache_dir() -> Path:
    """Where hub downloads land: hub_cache_dir(), else huggingface_hub's default (`sr env` reports it)."""
    return hub_cache_dir() or Path(hf_constants.HF_HUB_CACHE).expanduser()


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT


def fetch_from_hub(source: HubSource, *, local_only: bool, timeout: float,
                   progress: Callable[[int, int], None] | None = None) -> Path:
    """Path of `source` inside the Hugging Face cache, downloading it unless `local_only`.

    Raises HubUnavailable with the reason on any failure (not found, HTTP error, network down,
    timeout, truncated transfer, not in the local cache while offline). `timeout` bounds the first
    metadata request; huggingface_hub itself retries a timed-out one once with 60 s and resumes a
    broken transfer a few times (its policy, kept: mirrors are usually right and only slow).
    """
    try:
        with _library_quiet():
            path = hf_hub_download(
                repo_id=source.repo,
                filename=source.filename,
                revision=source.revision,
                repo_type=source.repo_type,
                cache_dir=hub_cache_dir(),
                endpoint=hub_endpoint(),
                local_files_only=local_only,
                etag_timeout=timeout,
                tqdm_class=_forwarding_tqdm(progress),
                library_name="sr-cli",
            )
    except HfHubHTTPError as error:  # first: a remote 404 is both an HTTP error and an EntryNotFoundError
        status = error.response.status_code if error.response is not None else "?"
        raise HubUnavailable(f"HTTP {status}") from error
    except EntryNotFoundError as error:  # LocalEntryNotFoundError: not in the hub cache, or the hub unreachable
        raise HubUnavailable("not in the Hugging Face cache" if local_only else _first_line(error)) from error
    except httpx2.TimeoutException as error:
        raise HubUnavailable(f"timed out after {timeout:g} s") from error
    except (httpx2.HTTPError, OSError) as error:  # network down, connection reset, size mismatch (OSError)
        raise HubUnavailable(_first_line(error) or type(error).__name__) from error
    return Path(str(path))


@contextlib.contextmanager
def _library_quiet() -> Iterator[None]:
    """huggingface_hub logs each retry ("Retrying in 8s [Retry 4/5]") to stderr: the one-line reason we raise
    says what went wrong, so its warnings are held back during our call (its errors still show)."""
    logger = logging.getLogger("huggingface_hub")
    previous = logger.level
    logger.setLevel(max(previous, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(previous)


def evict_from_hub_cache(path: Path) -> None:
    """Remove a file that failed sha256 from the hub cache: the snapshot link and the blob it points to.

    Otherwise the next (possibly offline) run would find the same wrong bytes again.
    """
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _forwarding_tqdm(progress: Callable[[int, int], None] | None) -> type[hf_tqdm] | None:
    """A silent tqdm class that forwards (done, total) to `progress`; the CLI draws its own bar."""
    if progress is None:
        return None
    report = progress  # narrowed to not-None for the class body below

    class _Forward(hf_tqdm):
        # tqdm's constructor takes many keyword options; huggingface_hub passes them through, we only read two.
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._sr_done = int(kwargs.get("initial") or 0)
            self._sr_total = int(kwargs.get("total") or 0)

        def update(self, n: float | None = 1) -> bool | None:
            self._sr_done += int(n or 0)
            report(self._sr_done, self._sr_total)
            return None

    return _Forward

"""Published PSNR/SSIM figures, kept as data (``published_results.json``) with their sources.

``published_for(method, dataset, scale)`` answers "what did the authors publish for this row?", where
``method`` is the label a result is shown under (``Bicubic``, ``VDSR``, ``EDSR+``, ...). The data file
is package data; each row names a source whose full citation is in the file's ``sources`` table.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from sr_cli.errors import ManifestError

__all__ = ["PublishedResult", "Source", "published_for", "published_table", "sources"]

_DATA_FILE = "published_results.json"


@dataclass(frozen=True)
class Source:
    key: str
    citation: str
    notes: str


@dataclass(frozen=True)
class PublishedResult:
    method: str
    dataset: str
    scale: int
    psnr: float
    ssim: float | None
    source: Source


@dataclass(frozen=True)
class _Table:
    rows: dict[tuple[str, str, int], PublishedResult]
    sources: dict[str, Source]


@lru_cache(maxsize=1)
def _load() -> _Table:
    origin = f"sr_cli/data/{_DATA_FILE}"
    try:
        raw = json.loads(resources.files("sr_cli.data").joinpath(_DATA_FILE).read_text(encoding="utf-8"))
        source_table = {
            key: Source(key=key, citation=str(value["citation"]), notes=str(value.get("notes", "")))
            for key, value in raw["sources"].items()
        }
        rows: dict[tuple[str, str, int], PublishedResult] = {}
        for row in raw["results"]:
            key = (str(row["method"]).lower(), str(row["dataset"]).lower(), int(row["scale"]))
            if key in rows:
                raise ManifestError(f"{origin}: duplicate row {key}; keep one row per (method, dataset, scale)")
            ssim = row["ssim"]
            rows[key] = PublishedResult(
                method=str(row["method"]),
                dataset=str(row["dataset"]),
                scale=int(row["scale"]),
                psnr=float(row["psnr"]),
                ssim=None if ssim is None else float(ssim),
                source=source_table[row["source"]],
            )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ManifestError(f"{origin} is unreadable or malformed ({error!r}); reinstall sr") from error
    return _Table(rows=rows, sources=source_table)


def published_for(method: str, dataset: str, scale: int) -> PublishedResult | None:
    """The published row for a method label (case-insensitive), a dataset key and a scale, or None."""
    return _load().rows.get((method.lower(), dataset.lower(), int(scale)))


def published_table() -> tuple[PublishedResult, ...]:
    """Every published row, in file order."""
    return tuple(_load().rows.values())


def sources() -> dict[str, Source]:
    """The sources cited by the rows, by key."""
    return dict(_load().sources)

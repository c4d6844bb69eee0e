"""`sr weights`: list, download, verify, path, inspect and import the published weights.

Results go to stdout (tables, paths, JSON); progress bars and notes to stderr. Library modules (and
torch) are imported inside the commands so `sr --help` stays fast.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from sr_cli.cli.console import note, print_table, stderr
from sr_cli.cli.options import EntryScale, ResScale
from sr_cli.cli.progress import progress_bar
from sr_cli.errors import ChecksumError, DownloadError, SRError, UsageError

if TYPE_CHECKING:
    from sr_cli.zoo import FileReport, ModelStatus


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def scales_text(scales: tuple[int, ...] | list[int] | None) -> str:
    return "any" if scales is None else "/".join(f"x{s}" for s in scales)


@contextmanager
def byte_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A byte bar on stderr (size, speed, ETA); yields the (done, total) callback the library calls."""
    with progress_bar(label, kind="bytes") as update:
        yield update


def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array on stdout instead of a table.")] = False,
) -> None:
    """Every model in the manifest: family, scales, size, licence and whether it is cached or bundled."""
    from sr_cli.weights.cache import damaged_message
    from sr_cli.zoo import catalogue

    rows = catalogue()
    if as_json:
        typer.echo(json.dumps([_status_json(row) for row in rows], indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("name", "family", "scales", "size", "cached", "licence"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    for row in rows:
        entry = row.entry
        # a truncated cached file is neither "yes" nor "no": the user would look for or re-fetch the wrong thing
        available = "yes" if row.cached else ", ".join(
            word for word, present in (("damaged", row.damaged), ("bundled", row.bundled)) if present) or "no"
        table.add_row(entry.name, entry.family, scales_text(entry.scales), human_size(entry.size),
                      available, entry.license)
    print_table(table)
    for row in rows:
        if row.damaged is not None:
            note(damaged_message(row.entry, row.damaged))
    prefix_only = [row.entry.name for row in rows if row.entry.verification == "prefix"]
    if prefix_only:
        note(f"{', '.join(prefix_only)}: only a sha256 prefix is published, so only that is checked "
             f"(docs/models.md, \"Verification\")")


def download(
    names: Annotated[Optional[list[str]], typer.Argument(help="Model names (sr weights list).", show_default=False)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model in the manifest.")] = False,
    scale: EntryScale = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds a silent server gets before the next source is tried "
                                                              "(hub mirrors: huggingface_hub retries once with 60 s).")] = 30.0,
) -> None:
    """Download (or find in the cache) and verify weights; prints `NAME<TAB>PATH` per model."""
    from sr_cli.weights.download import fetch
    from sr_cli.weights.manifest import load_manifest
    from sr_cli.zoo import resolve

    if all_models == bool(names):
        raise UsageError("give model names or --all, not both and not neither")
    entries = list(load_manifest().entries) if all_models else [resolve(name, scale) for name in names or []]
    failed: list[tuple[str, SRError]] = []
    for entry in entries:
        try:
            with byte_progress(entry.name) as progress:
                # the entry's own file (realesrgan-x4plus: the fp32 .pth), not its bundled copy
                path = fetch(entry, progress=progress, timeout=timeout, bundled=False)
        except DownloadError as error:  # keep going: one dead host must not stop --all
            if len(entries) == 1:
                raise
            stderr.print(f"error: {error}", markup=False)
            failed.append((entry.name, error))
            continue
        if entry.sha256 is None:
            note(f"{entry.name}: checked against the published sha256 prefix {entry.sha256_prefix} only; "
                 f"this file's full sha256 is {path.parent.name}")
        typer.echo(f"{entry.name}\t{path}")
    if failed:
        first = failed[0][1]
        summary = f"{len(failed)} of {len(entries)} downloads failed: {', '.join(name for name, _ in failed)}"
        raise (ChecksumError if isinstance(first, ChecksumError) else DownloadError)(
            summary + " (reasons above)")


def verify(
    remove_bad: Annotated[bool, typer.Option("--remove-bad", help="Delete files whose sha256 is wrong.")] = False,
) -> None:
    """Re-hash every cached file; exits non-zero if any is damaged."""
    from sr_cli.weights.cache import cached_files, verify_all
    from sr_cli.weights.manifest import load_manifest

    if not cached_files():
        note("the weights cache is empty")
        return
    with byte_progress("verifying") as progress:
        results = verify_all(progress, remove_bad=remove_bad)
    entries = load_manifest().entries
    bad = []
    for result in results:
        item = result.file
        name = next((e.name for e in entries if e.filename == item.filename and e.digest_matches(item.sha256)),
                    "(not in the manifest)")
        status = "ok" if result.ok else ("REMOVED" if remove_bad else "BAD")
        typer.echo(f"{status}\t{name}\t{item.path}")
        if not result.ok:
            bad.append(item.path)
    if bad:
        fix = "they were deleted; download them again" if remove_bad else \
            "run `sr weights verify --remove-bad`, then download them again"
        raise ChecksumError(f"{len(bad)} cached file(s) do not match their sha256: "
                            f"{', '.join(str(p) for p in bad)}; {fix}")


def cached_path(
    name: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    scale: EntryScale = None,
) -> None:
    """Print the file `--model NAME` runs: the cached one, else the bundled copy (error if neither)."""
    from sr_cli.errors import InputError
    from sr_cli.weights.bundled import bundled_file
    from sr_cli.weights.cache import damaged_message, find_cached, find_damaged
    from sr_cli.zoo import resolve

    entry = resolve(name, scale)
    found = find_cached(entry) or bundled_file(entry)
    damaged = find_damaged(entry) if found is None else None
    if damaged is not None:  # "not in the cache" would send the user looking for a file that is there
        raise InputError(damaged_message(entry, damaged))
    if found is None:
        raise InputError(f"{entry.name} is not in the cache ({entry.filename}); run `sr weights download {entry.name}`")
    typer.echo(str(found))


def inspect_checkpoint(
    file: Annotated[Path, typer.Argument(help="A checkpoint (.pt, .pth, .safetensors, ncnn .param/.bin).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="A JSON object on stdout.")] = False,
    res_scale: ResScale = None,
) -> None:
    """Detect family, layout, hyperparameters and scales of a checkpoint (nothing in it is executed)."""
    from sr_cli.zoo import describe_file

    report = describe_file(file, res_scale=res_scale)
    record = inspect_json(report)
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    for key in ("file", "family", "layout", "scales", "num_params", "container", "serialization", "size",
                "sha256", "manifest_name", "res_scale_source"):
        value = record[key]
        shown = scales_text(value) if key == "scales" else human_size(value) if key == "size" else value
        typer.echo(f"{key:<16} {shown if shown is not None else '-'}")
    for key, value in record["hyperparameters"].items():
        typer.echo(f"  {key:<14} {value}")
    for key, value in sorted(record["metadata"].items()):
        typer.echo(f"metadata {key:<16} {value}")
    for line in record["notes"]:
        typer.echo(f"note: {line}")


def import_checkpoint(
    name: Annotated[str, typer.Argument(help="Model name the file is for.", show_default=False)],
    file: Annotated[Path, typer.Argument(help="The file you obtained elsewhere.", show_default=False)],
    scale: EntryScale = None,
) -> None:
    """Put a file obtained elsewhere into the cache after checking its sha256 against the manifest."""
    from sr_cli.weights.cache import import_file
    from sr_cli.zoo import resolve

    entry = resolve(name, scale)
    with byte_progress(f"hashing {file.name}") as progress:
        stored = import_file(entry, file, progress)
    if entry.sha256 is None:
        note(f"{entry.name}: checked against the published sha256 prefix {entry.sha256_prefix} only")
    typer.echo(f"{entry.name}\t{stored}")


def _status_json(row: ModelStatus) -> dict[str, Any]:
    entry, cached, bundled = row.entry, row.cached, row.bundled
    return {
        "name": entry.name, "aliases": list(entry.aliases), "family": entry.family,
        "scales": list(entry.scales) if entry.scales is not None else None, "variant": entry.variant,
        "size": entry.size, "num_params": entry.num_params, "sha256": entry.sha256,
        "sha256_prefix": entry.sha256_prefix, "verification": entry.verification, "license": entry.license,
        "pair": asdict(entry.pair) if entry.pair is not None else None,
        "cached": cached is not None, "path": str(cached) if cached is not None else None,
        # a cached file of the wrong size (truncated), when there is no good one: `sr weights download` replaces it
        "damaged": str(row.damaged.path) if row.damaged is not None else None,
        # available: runs with no download; `file` is what `--model NAME` runs (sr's cache first, then bundled)
        "bundled": str(bundled) if bundled is not None else None,
        "available": cached is not None or bundled is not None,
        "file": str(cached or bundled) if (cached or bundled) is not None else None,
        "sources": [source.describe() for source in entry.sources],
    }


def inspect_json(report: FileReport) -> dict[str, Any]:
    """The `sr weights inspect --json` object: family, layout, scales, hyperparameters, num_params (+ extras)."""
    detected = report.detected
    params = asdict(detected.params)  # every family's params are a dataclass (archs/descriptor.py)
    return {
        "family": detected.family,
        "layout": detected.layout,
        "scales": list(detected.scales) if detected.scales is not None else None,
        "hyperparameters": {key: list(value) if isinstance(value, tuple) else value for key, value in params.items()},
        "num_params": detected.num_params,
        "file": str(report.path),
        "size": report.size,
        "sha256": report.sha256,
        "container": report.container,
        "serialization": report.serialization,
        "manifest_name": report.manifest_name,
        "res_scale_source": detected.res_scale_source,
        "notes": list(detected.notes),
        "metadata": dict(report.metadata),
    }

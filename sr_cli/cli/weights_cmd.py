"""`sr weights`: list, download, verify, path, inspect, import, rm and prune the published weights.

Results go to stdout (tables, paths, or with --json one JSON record per line with "command" and
"status"); progress bars and notes to stderr. Library modules (and torch) are imported inside the
commands so `sr --help` stays fast.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from sr_cli.cli.console import detail, json_line, note, print_table, stderr
from sr_cli.cli.options import EntryScale, Json, Quiet, ResScale, Verbose
from sr_cli.cli.progress import progress_bar
from sr_cli.errors import ChecksumError, DownloadError, SRError, UsageError

if TYPE_CHECKING:
    from sr_cli.weights.cache import Removable
    from sr_cli.weights.manifest import ManifestEntry
    from sr_cli.zoo import FileReport, ModelStatus

SELECT = "Which weights"
ACTION = "What to do"


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


def list_models(as_json: Json = False, quiet: Quiet = False, verbose: Verbose = False) -> None:
    """Every model in the manifest: aliases, family, scales, size, whether it is cached or bundled, licence.

    Sizes come from the manifest, else from the cached file; a `~` size is estimated from the parameter
    count (4 bytes each) where the authors publish no size. Nothing here uses the network.

    Examples:
      sr weights list
      sr weights list --json | grep '"cached": true'
    """
    from sr_cli.weights.cache import damaged_message, weights_dir
    from sr_cli.zoo import catalogue

    rows = catalogue()
    if as_json:
        for row in rows:
            json_line({"command": "weights list", "status": availability(row), **_status_json(row)})
        return
    table = Table(box=None, pad_edge=False)
    for column in ("name", "aliases", "family", "scales", "size", "cached", "licence"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    for row in rows:
        entry = row.entry
        table.add_row(entry.name, ", ".join(entry.aliases) or "-", entry.family, scales_text(entry.scales),
                      size_text(row), availability(row, short=True), entry.license)
    print_table(table)
    known = [size_bytes(row) for row in rows]
    estimated = any(row.entry.size is None and row.cached is None for row in rows)
    cached = [row for row in rows if row.cached is not None]
    on_disk = sum(row.cached.stat().st_size for row in cached if row.cached is not None)
    bundled = sum(1 for row in rows if row.bundled is not None)
    typer.echo(f"total: {len(rows)} models, {'~' if estimated else ''}{human_size(sum(known))} to download them all; "
               f"{len(cached)} cached ({human_size(on_disk)} in {weights_dir()}), {bundled} bundled with sr")
    for row in rows:
        if row.damaged is not None:
            note(damaged_message(row.entry, row.damaged))
    prefix_only = [row.entry.name for row in rows if row.entry.verification == "prefix"]
    if prefix_only:
        note(f"{', '.join(prefix_only)}: only a sha256 prefix is published, so only that is checked "
             f"(docs/models.md, \"Verification\")")


def availability(row: ModelStatus, *, short: bool = False) -> str:
    """cached / bundled / damaged / not cached: what `--model NAME` would find without a download.
    A truncated cached file is neither "yes" nor "no": the user would look for or re-fetch the wrong thing."""
    if row.cached is not None:
        return "yes" if short else "cached"
    words = [word for word, present in (("damaged", row.damaged), ("bundled", row.bundled)) if present]
    return ", ".join(words) if words else ("no" if short else "not cached")


def size_bytes(row: ModelStatus) -> int:
    """The file's size: the manifest's, else the cached file's, else the estimate from its parameter count."""
    if row.entry.size is not None:
        return row.entry.size
    if row.cached is not None:
        return row.cached.stat().st_size
    return estimated_size(row.entry) or 0


def estimated_size(entry: ManifestEntry) -> int | None:
    """fp32 parameters, 4 bytes each: what a checkpoint of this network holds, give or take its keys."""
    return entry.num_params * 4 if entry.num_params is not None else None


def size_text(row: ModelStatus) -> str:
    if row.entry.size is not None or row.cached is not None:
        return human_size(size_bytes(row))
    estimate = estimated_size(row.entry)
    return f"~{human_size(estimate)}" if estimate is not None else "unpublished"


def download(
    names: Annotated[Optional[list[str]], typer.Argument(help="Model names or aliases (sr weights list).", show_default=False)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model in the manifest.", rich_help_panel=SELECT)] = False,
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help="Picks the entry for aliases such as `edsr`.",
                                                   rich_help_panel=SELECT)] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds a silent server gets before the next source is tried "
                                                              "(hub mirrors: huggingface_hub retries once with 60 s).",
                                                         rich_help_panel="Network")] = 30.0,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Download (or find in the cache) and verify weights; prints `NAME<TAB>PATH` per model.

    A host that does not resolve or refuses the connection counts as no network: the command stops at once
    (set SR_OFFLINE=1 to say so up front, or `sr weights import` a file you got elsewhere).

    Examples:
      sr weights download esrgan realesr-general
      sr weights download edsr --scale 4
      sr weights download --all --json
    """
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
            if as_json:
                json_line({"command": "weights download", "status": "failed", "name": entry.name, "error": str(error)})
            failed.append((entry.name, error))
            continue
        if entry.sha256 is None:
            note(f"{entry.name}: checked against the published sha256 prefix {entry.sha256_prefix} only; "
                 f"this file's full sha256 is {path.parent.name}")
        detail(f"{entry.name}: {path} ({human_size(path.stat().st_size)})")
        if as_json:
            json_line({"command": "weights download", "status": "ok", "name": entry.name, "path": str(path),
                       "size": path.stat().st_size, "sha256": path.parent.name})
        else:
            typer.echo(f"{entry.name}\t{path}")
    if failed:
        first = failed[0][1]
        summary = f"{len(failed)} of {len(entries)} downloads failed: {', '.join(name for name, _ in failed)}"
        raise (ChecksumError if isinstance(first, ChecksumError) else DownloadError)(
            summary + " (reasons above)")


def verify(
    remove_bad: Annotated[bool, typer.Option("--remove-bad", help="Delete files whose sha256 is wrong.")] = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Re-hash every cached file; exits non-zero if any is damaged.

    Examples:
      sr weights verify
      sr weights verify --remove-bad
    """
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
        if as_json:
            json_line({"command": "weights verify", "status": status.lower(), "name": name, "path": str(item.path),
                       "sha256": result.actual_sha256, "expected_sha256": item.sha256})
        else:
            typer.echo(f"{status}\t{name}\t{item.path}")
        if not result.ok:
            bad.append(item.path)
    if bad:
        fix = "they were deleted; download them again" if remove_bad else \
            "run `sr weights verify --remove-bad`, then download them again"
        raise ChecksumError(f"{len(bad)} cached file(s) do not match their sha256: "
                            f"{', '.join(str(p) for p in bad)}; {fix}")


def cached_path(
    name: Annotated[str, typer.Argument(help="Model name or alias.", show_default=False)],
    scale: EntryScale = None,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Print the file `--model NAME` runs: the cached one, else the bundled copy (error if neither).

    Examples:
      sr weights path realesrgan-x4plus
      cp "$(sr weights path vdsr)" /mnt/usb/
    """
    from sr_cli.errors import InputError
    from sr_cli.weights.bundled import bundled_file
    from sr_cli.weights.cache import damaged_message, find_cached, find_damaged
    from sr_cli.zoo import resolve

    entry = resolve(name, scale)
    cached = find_cached(entry)
    found = cached or bundled_file(entry)
    damaged = find_damaged(entry) if found is None else None
    if damaged is not None:  # "not in the cache" would send the user looking for a file that is there
        raise InputError(damaged_message(entry, damaged))
    if found is None:
        raise InputError(f"{entry.name} is not in the cache ({entry.filename}); run `sr weights download {entry.name}`")
    source = "cached" if cached is not None else "bundled"
    detail(f"{entry.name}: the {source} file")
    if as_json:
        json_line({"command": "weights path", "status": "ok", "name": entry.name, "path": str(found), "source": source})
    else:
        typer.echo(str(found))


def inspect_checkpoint(
    file: Annotated[Path, typer.Argument(help="A checkpoint (.pt, .pth, .safetensors, ncnn .param/.bin).", show_default=False)],
    as_json: Json = False,
    res_scale: ResScale = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Detect family, layout, hyperparameters and scales of a checkpoint (nothing in it is executed).

    Examples:
      sr weights inspect model.pth
      sr weights inspect blended.safetensors --json
    """
    from sr_cli.zoo import describe_file

    report = describe_file(file, res_scale=res_scale)
    record = inspect_json(report)
    if as_json:
        json_line({"command": "weights inspect", "status": "ok", **record})
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
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Put a file obtained elsewhere into the cache after checking its sha256 against the manifest.

    Examples:
      sr weights import esrgan ~/Downloads/RRDB_ESRGAN_x4.pth
      sr weights import realesrgan-x4plus-anime realesrgan-x4plus-anime.param
    """
    from sr_cli.weights.cache import import_file
    from sr_cli.zoo import resolve

    entry = resolve(name, scale)
    with byte_progress(f"hashing {file.name}") as progress:
        stored = import_file(entry, file, progress)
    if entry.sha256 is None:
        note(f"{entry.name}: checked against the published sha256 prefix {entry.sha256_prefix} only")
    if as_json:
        json_line({"command": "weights import", "status": "ok", "name": entry.name, "path": str(stored),
                   "source": str(file)})
    else:
        typer.echo(f"{entry.name}\t{stored}")


DryRun = Annotated[bool, typer.Option("--dry-run", "-n", help="Only say what would be removed.", rich_help_panel=ACTION)]


def remove(
    names: Annotated[list[str], typer.Argument(help="Model names or aliases (sr weights list).", show_default=False)],
    scale: Annotated[Optional[float], typer.Option("--scale", "-s", help="Picks the entry for aliases such as `edsr`.",
                                                   rich_help_panel=SELECT)] = None,
    dry_run: DryRun = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Remove models from sr's cache: their files and partial downloads (never the bundled copies).

    Prints `removed<TAB>NAME<TAB>PATH` per file. A model downloaded from the hub also stays in the Hugging
    Face cache, which sr leaves alone; the next `sr weights download` takes it from there.

    Examples:
      sr weights rm esrgan
      sr weights rm edsr --scale 4 --dry-run
    """
    from sr_cli.weights.bundled import bundled_file
    from sr_cli.weights.cache import files_of
    from sr_cli.zoo import resolve

    entries = list(dict.fromkeys(resolve(name, scale) for name in names))
    items: list[Removable] = []
    for entry in entries:
        found = files_of(entry)
        if not found:
            shipped = " (its bundled copy is part of sr and stays)" if bundled_file(entry) is not None else ""
            note(f"{entry.name}: not in the cache, nothing to remove{shipped}")
            if as_json:
                json_line({"command": "weights rm", "status": "absent", "name": entry.name})
        items += found
    _remove_and_report("weights rm", items, dry_run=dry_run, as_json=as_json)


def prune(
    everything: Annotated[bool, typer.Option("--all", help="Also every cached model file (downloaded again when needed).",
                                             rich_help_panel=SELECT)] = False,
    dry_run: DryRun = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before removing everything (--all).",
                                      rich_help_panel=ACTION)] = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Free space in sr's weights cache: partial downloads, damaged files, files no manifest entry names.

    Partial downloads a running `sr` is writing, temporaries younger than a minute, the bundled files and
    the Hugging Face cache are never touched. `--all` also removes every cached model (it asks first on a
    terminal; pass --yes in scripts). Prints `removed<TAB>NAME<TAB>PATH` per file.

    Examples:
      sr weights prune --dry-run
      sr weights prune
      sr weights prune --all --yes
    """
    import sys

    from sr_cli.weights.cache import prune_candidates
    from sr_cli.weights.manifest import load_manifest

    items = prune_candidates(load_manifest().entries, everything=everything)
    if everything and items and not dry_run and not yes:
        total = human_size(sum(item.size for item in items))
        if not sys.stdin.isatty():
            raise UsageError(f"--all would remove {len(items)} files ({total}); pass --yes to confirm, or "
                             f"--dry-run to see them")
        if not typer.confirm(f"remove {len(items)} files ({total}) from the weights cache?", err=True):
            raise typer.Abort()
    if not items:
        note("nothing to prune" + ("" if everything else " (--all would also remove the cached models)"))
        return
    _remove_and_report("weights prune", items, dry_run=dry_run, as_json=as_json)


def _remove_and_report(command: str, items: list[Removable], *, dry_run: bool, as_json: bool) -> None:
    from sr_cli.weights.cache import remove_files

    freed = 0 if dry_run else remove_files(items)
    status = "would remove" if dry_run else "removed"
    for item in items:
        name = item.name or "-"
        detail(f"{item.path}: {item.reason}, {human_size(item.size)}")
        if as_json:
            json_line({"command": command, "status": "dry-run" if dry_run else "removed", "name": item.name,
                       "path": str(item.path), "size": item.size, "reason": item.reason, "shared": item.shared})
        else:
            typer.echo(f"{status}\t{name}\t{item.path}")
    total = sum(item.size for item in items)
    shared = [item for item in items if item.shared]
    if dry_run:
        note(f"would remove {len(items)} files ({human_size(total)}); run again without --dry-run to remove them")
    elif items:
        note(f"removed {len(items)} files, {human_size(freed)} freed")
    if shared:
        note(f"{len(shared)} of them are hard links to the Hugging Face cache, which sr leaves alone: their space "
             f"is freed only when that copy goes too (huggingface_hub's `hf cache` commands)")


def _status_json(row: ModelStatus) -> dict[str, Any]:
    entry, cached, bundled = row.entry, row.cached, row.bundled
    return {
        "name": entry.name, "aliases": list(entry.aliases), "family": entry.family,
        "scales": list(entry.scales) if entry.scales is not None else None, "variant": entry.variant,
        # size: the published size (null where none is); size_bytes: that, else the cached file's, else the
        # estimate from the parameter count (size_estimated: true)
        "size": entry.size, "size_bytes": size_bytes(row),
        "size_estimated": entry.size is None and cached is None, "num_params": entry.num_params, "sha256": entry.sha256,
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

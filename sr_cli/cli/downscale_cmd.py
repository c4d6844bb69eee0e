"""`sr downscale`: make LR images exactly as the benchmark LR files were made (MATLAB bicubic).

Results on stdout (each written path, or with --json one record per file); failures, the -v details and
the closing summary on stderr."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from sr_cli.cli.console import detail, error_line, json_line, note, result_path, warn
from sr_cli.cli.options import Json, MaxPixels, Overwrite, Quiet, Verbose, in_panel
from sr_cli.errors import OutputError, SRError, UsageError

if TYPE_CHECKING:  # numpy and the image readers load only when the command runs
    from sr_cli.data.benchmarks import Downscaled


def plan(inputs: list[Path], output: Path, *, overwrite: bool) -> list[tuple[Path, Path]]:
    """(input, output) pairs, decided before anything is written: the same input rules as `sr upscale`
    (special files refused, non-images passed over with a warning), two inputs never onto one name, an
    output never onto its input, and existing outputs refused all at once unless ``overwrite``."""
    from sr_cli.batch import MAX_LISTED, expand_inputs, same_file

    files, ignored = expand_inputs(inputs, recursive=False)
    for passed_over in ignored:
        warn(f"{passed_over.path}: skipped, {passed_over.reason}")
    pairs: list[tuple[Path, Path]] = []
    stems: dict[str, Path] = {}
    for item in files:
        path = item.path
        key = path.stem.casefold()  # a.png and A.png would be one file on macOS/Windows
        if key in stems:
            raise UsageError(f"{path} and {stems[key]} would both be written as {path.stem}.png; rename one")
        stems[key] = path
        target = output / f"{path.stem}.png"
        if same_file(target, path):
            raise UsageError(f"{target} is the input itself; inputs are never overwritten, choose another -o folder")
        pairs.append((path, target))
    existing = [target for _, target in pairs if os.path.lexists(target)]
    if existing and not overwrite:
        named = ", ".join(map(str, existing[:MAX_LISTED])) + (", ..." if len(existing) > MAX_LISTED else "")
        raise OutputError(f"{len(existing)} output(s) already exist ({named}); pass --overwrite to replace them or choose another -o")
    return pairs


INPUT_OUTPUT, REPORTING = "Input/Output", "Reporting"


def downscale(
    inputs: Annotated[list[Path], typer.Argument(help="HR image files or folders.", show_default=False)],
    scale: Annotated[int, typer.Option("--scale", "-s", help=(
        "Integer factor: crop to a multiple of it, then shrink by it."))],
    output: Annotated[Path, typer.Option("--output", "-o", rich_help_panel=INPUT_OUTPUT, help=(
        "Output folder (created if missing); files are <stem>.png."))],
    overwrite: Annotated[bool, in_panel(Overwrite, INPUT_OUTPUT)] = False,
    max_pixels: Annotated[Optional[str], in_panel(MaxPixels, INPUT_OUTPUT)] = None,
    json_records: Annotated[bool, in_panel(Json, REPORTING)] = False,
    quiet: Annotated[bool, in_panel(Quiet, REPORTING)] = False,
    verbose: Annotated[bool, in_panel(Verbose, REPORTING)] = False,
) -> None:
    """Mod-crop and MATLAB-bicubic downscale (the EDSR benchmark recipe), bit-exact.

    Written paths go to stdout, one per line; failures and a closing summary
    go to stderr.

    Examples:

      sr downscale hr/ --scale 4 -o lr/

      sr downscale photo.png -s 2 -o small/ --json
    """
    from sr_cli.data.benchmarks import downscale_file
    from sr_cli.imageio.budget import pixel_budget

    started = time.perf_counter()
    if scale < 2:
        raise UsageError(f"--scale {scale}: give an integer factor of 2 or more")
    budget = pixel_budget(max_pixels)  # a bad --max-pixels is refused before any folder is made
    pairs = plan(inputs, output, overwrite=overwrite)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output}: cannot create the folder ({error.strerror}); choose another -o") from error
    failures: list[SRError] = []
    done = 0
    try:
        for path, target in pairs:
            file_started = time.perf_counter()
            try:
                made = downscale_file(path, output, scale, overwrite=overwrite, budget=budget)
            except SRError as error:  # reported now and in the exit code; the other files still get done
                failures.append(error)
                error_line(str(error))
                _report(json_records, path, target, scale, file_started, error=error)
                continue
            done += 1
            detail(f"{path}: {_size(made.input_size)} -> {_size(made.output_size)}"
                   f"{_cropped(made.input_size, scale)}, {time.perf_counter() - file_started:.2f} s")
            _report(json_records, path, made.path, scale, file_started, made=made)
    except KeyboardInterrupt:
        note(f"stopped: done {done}, failed {len(failures)}, not started {len(pairs) - done - len(failures)}; "
             "the files written are complete")
        raise
    note(f"done {done}, failed {len(failures)} in {time.perf_counter() - started:.1f} s "
         f"(x{scale}, MATLAB bicubic, into {output})")
    if failures:
        raise typer.Exit(max(error.exit_code for error in failures))


def _report(json_records: bool, source: Path, target: Path, scale: int, started: float, *,
            made: Downscaled | None = None, error: SRError | None = None) -> None:
    """One result: the written path on stdout, or with --json its record (one shape for every command)."""
    if not json_records:
        if made is not None:
            result_path(made.path)
        return
    json_line({
        "command": "downscale", "status": "done" if error is None else "failed",
        "input": str(source), "output": str(target),
        "reason": str(error) if error is not None else None,
        "exit_code": error.exit_code if error is not None else 0,
        "input_size": list(made.input_size) if made else None,
        "output_size": list(made.output_size) if made else None,
        "scale": scale, "format": "png",
        "seconds": round(time.perf_counter() - started, 3),
    })


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _cropped(size: tuple[int, int], scale: int) -> str:
    width, height = size
    if width % scale == 0 and height % scale == 0:
        return ""
    return f" (mod-cropped to {width - width % scale}x{height - height % scale})"

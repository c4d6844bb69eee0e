"""`sr downscale`: make LR images exactly as the benchmark LR files were made (MATLAB bicubic)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sr_cli.cli.console import note, stderr, warn
from sr_cli.cli.options import MaxPixels, Overwrite
from sr_cli.errors import OutputError, SRError, UsageError


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


def downscale(
    inputs: Annotated[list[Path], typer.Argument(help="HR image files or folders.", show_default=False)],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Integer factor: crop to a multiple of it, then shrink by it.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created if missing); files are <stem>.png.")],
    overwrite: Overwrite = False,
    max_pixels: MaxPixels = None,
) -> None:
    """Mod-crop and MATLAB-bicubic downscale (the EDSR benchmark recipe), bit-exact."""
    from sr_cli.data.benchmarks import downscale_file
    from sr_cli.imageio.budget import pixel_budget

    if scale < 2:
        raise UsageError(f"--scale {scale}: give an integer factor of 2 or more")
    budget = pixel_budget(max_pixels)  # a bad --max-pixels is refused before any folder is made
    pairs = plan(inputs, output, overwrite=overwrite)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output}: cannot create the folder ({error.strerror}); choose another -o") from error
    failures: list[SRError] = []
    for path, _ in pairs:
        try:
            target = downscale_file(path, output, scale, overwrite=overwrite, budget=budget)
        except SRError as error:  # reported below; the other files still get done
            failures.append(error)
            stderr.print(f"error: {escape(str(error))}")
            continue
        note(f"{path} -> {target}")
    if failures:
        stderr.print(f"{len(failures)} of {len(pairs)} files failed")
        raise typer.Exit(max(error.exit_code for error in failures))

"""`sr downscale`: make LR images exactly as the benchmark LR files were made (MATLAB bicubic)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sr_cli.cli.console import note, stderr
from sr_cli.cli.options import Overwrite
from sr_cli.errors import InputError, OutputError, SRError, UsageError


def expand(inputs: list[Path]) -> list[Path]:
    """Files as given; a folder contributes its image files (not recursive), sorted."""
    from sr_cli.imageio import is_readable_suffix

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and is_readable_suffix(p.suffix))
            if not found:
                raise InputError(f"{item}: the folder holds no images; pass image files or another folder")
            files.extend(found)
        else:
            files.append(item)
    return files


def downscale(
    inputs: Annotated[list[Path], typer.Argument(help="HR image files or folders.", show_default=False)],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Integer factor: crop to a multiple of it, then shrink by it.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created if missing); files are <stem>.png.")],
    overwrite: Overwrite = False,
) -> None:
    """Mod-crop and MATLAB-bicubic downscale (the EDSR benchmark recipe), bit-exact."""
    from sr_cli.data.benchmarks import downscale_file

    if scale < 2:
        raise UsageError(f"--scale {scale}: give an integer factor of 2 or more")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output}: cannot create the folder ({error.strerror}); choose another -o") from error
    files = expand(inputs)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise UsageError(f"{path} and {stems[path.stem]} would both be written as {path.stem}.png; rename one")
        stems[path.stem] = path
    failures: list[SRError] = []
    for path in files:
        try:
            target = downscale_file(path, output, scale, overwrite=overwrite)
        except SRError as error:  # reported below; the other files still get done
            failures.append(error)
            stderr.print(f"error: {escape(str(error))}")
            continue
        note(f"{path} -> {target}")
    if failures:
        stderr.print(f"{len(failures)} of {len(files)} files failed")
        raise typer.Exit(max(error.exit_code for error in failures))

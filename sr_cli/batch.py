"""Batch planning for `sr upscale`: which files are inputs, where each output goes, what already exists.

Pure functions over paths (the filesystem is only listed, never written), so every rule is unit-tested:

- Inputs are files, folders (their images; `recursive` walks sub-folders) and glob patterns. Files
  with a suffix we cannot read are returned as `Ignored` with the reason; hidden files and folders
  (names starting with ".") are passed over silently.
- An output is named `<stem>_x<factor>[_<model>].<ext>`, beside its input, in `-o DIR` (mirroring the
  tree under each folder argument with `recursive`), or exactly `-o FILE` for a single input.
- Two inputs never get the same output (the later one gets `-2`, `-3`, ...) and an output never
  lands on an input. Files inside input folders that are this run's outputs (a resumed run beside
  its inputs) are not taken as inputs.
- An output that exists is an error, unless `existing` says overwrite or skip.
"""
from __future__ import annotations

import glob
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sr_cli.errors import InputError, OutputError, UsageError
from sr_cli.imageio.model import (
    FORMAT_ALIASES,
    FORMATS_WITH_16_BIT,
    SUFFIX_BY_WRITE_FORMAT,
    format_for_write_suffix,
    is_readable_suffix,
)

GLOB_CHARACTERS = re.compile(r"[*?\[]")
MAX_LISTED = 3  # existing outputs named in the error message


class ExistingPolicy(str, Enum):
    """What to do with an output that already exists."""

    ERROR = "error"
    OVERWRITE = "overwrite"
    SKIP = "skip"


@dataclass(frozen=True)
class InputFile:
    """An image to process; ``root`` is the folder argument it was found in (None: named directly)."""

    path: Path
    root: Path | None = None


@dataclass(frozen=True)
class Ignored:
    """A path given (or found) that will not be processed, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Job:
    """One input -> one output. ``skip``: the output exists and --skip-existing keeps it."""

    source: Path
    output: Path
    format: str  # png | jpeg | webp | tiff | bmp
    skip: bool = False


def expand_inputs(arguments: Sequence[str | Path], *, recursive: bool) -> tuple[list[InputFile], list[Ignored]]:
    """Files, folders and glob patterns -> image files in a stable order (arguments in order, each
    folder sorted by path), duplicates removed, plus what was passed over. InputError for a path that
    does not exist, a pattern that matches nothing, or when no image is left at all."""
    inputs: list[InputFile] = []
    ignored: list[Ignored] = []
    seen: set[Path] = set()

    def add(path: Path, root: Path | None) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        if is_readable_suffix(path.suffix):
            inputs.append(InputFile(path, root))
        else:
            ignored.append(Ignored(path, f"not an image suffix ({path.suffix or 'none'})"))

    for argument in arguments:
        for path in _paths_for_argument(str(argument)):
            if path.is_dir():
                files, subfolders = _folder_files(path, recursive)
                for file in files:
                    add(file, path)
                if subfolders:
                    ignored.append(Ignored(path, f"{subfolders} sub-folder(s) not entered; pass --recursive to include them"))
            else:
                add(path, None)
    if not inputs:
        raise InputError(f"no images found in {', '.join(map(str, arguments))}; give image files or folders that hold some")
    return inputs, ignored


def _paths_for_argument(argument: str) -> list[Path]:
    path = Path(argument)
    if path.exists():
        return [path]
    if GLOB_CHARACTERS.search(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        if not matches:
            raise InputError(f"{argument}: the pattern matches nothing; check it (and quote it so the shell leaves it alone)")
        return [Path(match) for match in matches]
    raise InputError(f"{argument}: no such file or folder; check the path")


def _folder_files(folder: Path, recursive: bool) -> tuple[list[Path], int]:
    """Visible files under a folder (sorted) and how many visible sub-folders were not entered."""
    if recursive:
        files = [
            path for path in folder.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        ]
        return sorted(files), 0
    entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    return sorted(entry for entry in entries if entry.is_file()), sum(entry.is_dir() for entry in entries)


def scale_label(factor: float) -> str:
    """'x4', 'x3.5': the factor as the shortest decimal that reads back the same."""
    return f"x{factor:g}"


def model_label(name: str | Path) -> str:
    """A file-name-safe label for a model name or a weights file (its stem)."""
    text = Path(name).stem if Path(name).suffix else str(name)
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "model"


def normalize_format(name: str) -> str:
    """--format value -> our format name; UsageError for anything else."""
    chosen = FORMAT_ALIASES.get(name.lower())
    if chosen is None:
        raise UsageError(f"--format {name}: unknown format; use png, jpg, webp or tiff")
    return chosen


def output_is_single_file(output: Path | None, is_dir: Callable[[Path], bool] = Path.is_dir) -> bool:
    """`-o` names a file when it is not an existing folder and ends with an image suffix."""
    return output is not None and not is_dir(output) and format_for_write_suffix(output.suffix) is not None


def plan_jobs(
    inputs: Sequence[InputFile],
    *,
    output: Path | None,
    factor: float,
    model: str | None,
    out_format: str | None,
    existing: ExistingPolicy,
    recursive: bool,
    exists: Callable[[Path], bool] = Path.exists,
    is_dir: Callable[[Path], bool] = Path.is_dir,
) -> tuple[list[Job], list[Ignored]]:
    """Decide every output path. Returns the jobs (input order) and inputs dropped because they are
    outputs of this run. Raises UsageError for a contradictory -o/--format, OutputError when outputs
    exist under ExistingPolicy.ERROR (all of them counted, a few named)."""
    chosen_format = normalize_format(out_format) if out_format else None
    if output is not None and not is_dir(output) and output.suffix and format_for_write_suffix(output.suffix) is None and is_readable_suffix(output.suffix):
        raise UsageError(f"-o {output}: cannot write {output.suffix} files; use .png, .jpg, .webp or .tiff")
    if output is not None and exists(output) and not is_dir(output) and not output_is_single_file(output, is_dir):
        raise UsageError(f"-o {output} exists and is not a folder or an image file name; give a folder or a .png/.jpg/.webp/.tiff name")
    if output_is_single_file(output, is_dir):
        assert output is not None
        return [_single_file_job(inputs, output, chosen_format, existing, exists)], []

    label = scale_label(factor) + (f"_{model_label(model)}" if model else "")
    dropped: list[Ignored] = []
    kept = list(inputs)
    while True:
        naming = [_primary_output(item, output, label, chosen_format, recursive) for item in kept]
        own_output = _find_own_outputs(kept, naming)
        if not own_output:
            break
        dropped += [Ignored(kept[index].path, f"it is this run's output for {kept[owner].path}") for index, owner in own_output.items()]
        kept = [item for index, item in enumerate(kept) if index not in own_output]

    taken = {_key(item.path) for item in kept}  # an output never lands on an input
    jobs: list[Job] = []
    existing_outputs: list[Path] = []
    for item, (folder, stem, suffix, fmt) in zip(kept, naming, strict=True):
        target = folder / f"{stem}{suffix}"
        counter = 2
        while _key(target) in taken:
            target = folder / f"{stem}-{counter}{suffix}"
            counter += 1
        taken.add(_key(target))
        skip = False
        if exists(target):
            if existing is ExistingPolicy.ERROR:
                existing_outputs.append(target)
            skip = existing is ExistingPolicy.SKIP
        jobs.append(Job(item.path, target, fmt, skip))
    _raise_if_existing(existing_outputs)
    return jobs, dropped


def _single_file_job(inputs: Sequence[InputFile], output: Path, chosen_format: str | None, existing: ExistingPolicy, exists: Callable[[Path], bool]) -> Job:
    if len(inputs) != 1:
        raise UsageError(f"-o {output} names one file but there are {len(inputs)} inputs; give a folder to -o")
    suffix_format = format_for_write_suffix(output.suffix)
    assert suffix_format is not None
    if chosen_format and chosen_format != suffix_format:
        raise UsageError(f"-o {output} says {suffix_format} but --format says {chosen_format}; make them agree")
    if _key(output) == _key(inputs[0].path):
        raise UsageError(f"-o {output} is the input itself; inputs are never overwritten, choose another name")
    skip = False
    if exists(output):
        if existing is ExistingPolicy.ERROR:
            _raise_if_existing([output])
        skip = existing is ExistingPolicy.SKIP
    return Job(inputs[0].path, output, suffix_format, skip)


def _primary_output(item: InputFile, output: Path | None, label: str, chosen_format: str | None, recursive: bool) -> tuple[Path, str, str, str]:
    """(folder, name stem, suffix, format) before collisions are resolved."""
    if output is None:
        folder = item.path.parent
    elif recursive and item.root is not None:
        folder = output / item.path.parent.relative_to(item.root)
    else:
        folder = output
    if chosen_format:
        fmt, suffix = chosen_format, SUFFIX_BY_WRITE_FORMAT[chosen_format]
    else:
        same = format_for_write_suffix(item.path.suffix)
        fmt, suffix = (same, item.path.suffix.lower()) if same else ("png", ".png")  # e.g. GIF in, PNG out
    return folder, f"{item.path.stem}_{label}", suffix, fmt


def _find_own_outputs(items: Sequence[InputFile], naming: Sequence[tuple[Path, str, str, str]]) -> dict[int, int]:
    """Inputs found in folders (not named by the user) that look like another input's output here
    (`<stem>_x4_model.png` or a `-N` variant): index -> index of the input it belongs to."""
    patterns: dict[str, list[tuple[re.Pattern[str], int]]] = {}
    for owner, (folder, stem, suffix, _) in enumerate(naming):
        pattern = re.compile(re.escape(stem) + r"(-\d+)?" + re.escape(suffix), re.IGNORECASE)
        patterns.setdefault(_key(folder), []).append((pattern, owner))
    own: dict[int, int] = {}
    for index, item in enumerate(items):
        if item.root is None:
            continue  # named explicitly: the user means it
        for pattern, owner in patterns.get(_key(item.path.parent), []):
            if owner != index and pattern.fullmatch(item.path.name):
                own[index] = owner
                break
    return own


def _raise_if_existing(paths: Sequence[Path]) -> None:
    if not paths:
        return
    named = ", ".join(map(str, paths[:MAX_LISTED])) + (", ..." if len(paths) > MAX_LISTED else "")
    raise OutputError(f"{len(paths)} output(s) already exist ({named}); pass --overwrite to replace them or --skip-existing to keep them")


def output_bit_depth(requested: int | None, source_bit_depth: int, fmt: str) -> tuple[int, str | None]:
    """The bit depth to write and a note when it differs from the source's. 16 bits in -> 16 out where
    the format holds it; an explicit 16 for an 8-bit-only format is a UsageError."""
    if requested is not None:
        if requested == 16 and fmt not in FORMATS_WITH_16_BIT:
            raise UsageError(f"--bit-depth 16: {fmt.upper()} holds 8 bits per channel only; use --format png or tiff")
        return requested, None
    if source_bit_depth == 16 and fmt not in FORMATS_WITH_16_BIT:
        return 8, f"16-bit input written as 8-bit ({fmt.upper()} has no 16-bit mode)"
    return source_bit_depth, None


def _key(path: Path) -> str:
    """Comparison key: resolved (links, ..), case-folded (two names differing only in case collide on macOS/Windows)."""
    return str(path.resolve()).casefold()

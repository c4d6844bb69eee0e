"""Batch planning for `sr upscale`: which files are inputs, where each output goes, what already exists.

Pure functions over paths (the filesystem is only listed, never written), so every rule is unit-tested:

- Inputs are files, folders (their images; `recursive` walks sub-folders) and glob patterns. Files
  with a suffix we cannot read are returned as `Ignored` with the reason; hidden files and folders
  (names starting with ".") are passed over silently. Only regular files are inputs: a FIFO, a device
  or a broken link named directly is an InputError (nothing is ever opened to find out), one found in
  a folder is `Ignored` with the reason. A folder that cannot be listed is an InputError when named,
  an `Ignored` marked as a failure when found under --recursive (the run reports it and fails).
- An output is named `<stem>_x<factor>[_<model>].<ext>`, or `<stem>_<suffix>.<ext>` with a suffix
  (`<stem>.<ext>` with an empty one), beside its input, in `-o DIR` (mirroring the tree under each
  folder argument with `recursive`), or exactly `-o FILE` for a single input (no suffix then). A
  suffix with a path separator, or an empty one that names an input itself, is a UsageError.
- Two inputs never get the same output and an output never lands on an input: every input of a
  colliding group gets `-<tag>`, 8 hex digits of a hash of its own resolved path. The names are
  therefore a function of the input set, never of argument order, and --skip-existing cannot take
  one input's output for another's. The job carries a note saying so. A name over the 255-byte
  limit of file names is shortened the same way (stem cut, tag added). Files inside input folders
  that are this run's outputs (a resumed run beside its inputs) are not taken as inputs.
- An output that exists is an error, unless `existing` says overwrite or skip.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sr_cli.errors import InputError, OutputError, UsageError
from sr_cli.files.atomic import TEMPORARY_SUFFIX
from sr_cli.files.regular import path_kind
from sr_cli.imageio.model import (
    FORMAT_ALIASES,
    FORMATS_WITH_16_BIT,
    SUFFIX_BY_WRITE_FORMAT,
    format_for_write_suffix,
    is_readable_suffix,
)

GLOB_CHARACTERS = re.compile(r"[*?\[]")
MAX_LISTED = 3  # existing outputs named in the error message
FILE_NAME_MAX_BYTES = 255  # the file-name limit of ext4, XFS, APFS, NTFS (UTF-16 units there; bytes is stricter)
# The atomic writer's temporary is `<name>.<8 hex>.tmp`: the output name must leave room for it.
NAME_MAX_BYTES = FILE_NAME_MAX_BYTES - len(f".{'0' * 8}{TEMPORARY_SUFFIX}")
TAG_HEX_DIGITS = 8  # collisions in one run's outputs need ~65000 same-named inputs to become likely
LEGACY_COUNTER = r"-\d+"  # how versions before the tags disambiguated (-2, -3): still recognised on rerun


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
    """A path given (or found) that will not be processed, and why. ``failed``: the run must report
    it as a failure (a folder it could not list), not just warn."""

    path: Path
    reason: str
    failed: bool = False


@dataclass(frozen=True)
class Job:
    """One input -> one output. ``skip``: the output exists and --skip-existing keeps it."""

    source: Path
    output: Path
    format: str  # png | jpeg | webp | tiff | bmp
    skip: bool = False
    note: str | None = None  # why the name differs from the plain <stem>_x<factor>[_<model>]


def expand_inputs(arguments: Sequence[str | Path], *, recursive: bool) -> tuple[list[InputFile], list[Ignored]]:
    """Files, folders and glob patterns -> image files in a stable order (arguments in order, each
    folder sorted by path), duplicates removed, plus what was passed over. InputError for a path that
    does not exist, is not a regular file or folder, a folder that cannot be listed, a pattern that
    matches nothing, or when no image is left at all."""
    inputs: list[InputFile] = []
    ignored: list[Ignored] = []
    seen: set[str] = set()

    def add(path: Path, root: Path | None) -> None:
        key = os.path.realpath(path)
        if key in seen:
            return
        seen.add(key)
        if is_readable_suffix(path.suffix):
            inputs.append(InputFile(path, root))
        else:
            ignored.append(Ignored(path, f"not an image suffix ({path.suffix or 'none'})"))

    for argument in arguments:
        for path in _paths_for_argument(str(argument)):
            kind = path_kind(path)
            if kind == "folder":
                files, passed_over = _folder_files(path, recursive)
                for file in files:
                    add(file, path)
                ignored += passed_over
            elif kind == "file":
                add(path, None)
            elif kind.startswith("cannot"):
                raise InputError(f"{path}: {kind}; check the path and its permissions")
            else:  # refused by its type, before anything could open it (a FIFO would block forever)
                raise InputError(f"{path}: is {kind}, not a regular file; give an image file or a folder")
    if not inputs:
        raise InputError(f"no images found in {', '.join(map(str, arguments))}; give image files or folders that hold some")
    return inputs, ignored


def _paths_for_argument(argument: str) -> list[Path]:
    path = Path(argument)
    if os.path.lexists(path):  # a broken link or a loop is reported by what it is, not as missing
        return [path]
    if GLOB_CHARACTERS.search(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        if not matches:
            raise InputError(f"{argument}: the pattern matches nothing; check it (and quote it so the shell leaves it alone)")
        return [Path(match) for match in matches]
    if len(path.name.encode()) > FILE_NAME_MAX_BYTES:
        raise InputError(f"{argument}: no such file (the name is longer than {FILE_NAME_MAX_BYTES} bytes); check the path")
    raise InputError(f"{argument}: no such file or folder; check the path")


def _list(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return sorted((entry for entry in entries if not entry.name.startswith(".")), key=lambda entry: entry.name)


def _folder_files(folder: Path, recursive: bool) -> tuple[list[Path], list[Ignored]]:
    """Visible regular files under a folder (sorted by path) and what was passed over: special
    files, sub-folders not entered, sub-folders that could not be listed (``failed``). The folder
    itself must be listable (InputError otherwise); with ``recursive``, links to folders already
    visited are not entered twice (no loops)."""
    try:
        top = _list(folder)
    except OSError as error:
        raise InputError(f"{folder}: cannot list the folder ({error.strerror or error}); check its permissions") from None
    files: list[Path] = []
    ignored: list[Ignored] = []
    not_entered = 0
    visited = {os.path.realpath(folder)}
    pending: list[tuple[Path, list[os.DirEntry[str]]]] = [(folder, top)]
    while pending:
        current, entries = pending.pop(0)
        for entry in entries:
            path = current / entry.name
            kind = path_kind(path)
            if kind == "file":
                files.append(path)
            elif kind == "folder":
                if not recursive:
                    not_entered += 1
                    continue
                real = os.path.realpath(path)
                if real in visited:
                    continue
                visited.add(real)
                try:
                    pending.append((path, _list(path)))
                except OSError as error:
                    ignored.append(Ignored(path, f"cannot list the folder ({error.strerror or error}); check its permissions", failed=True))
            else:
                ignored.append(Ignored(path, f"not a regular file: {kind}"))
    if not_entered:
        ignored.append(Ignored(folder, f"{not_entered} sub-folder(s) not entered; pass --recursive to include them"))
    return sorted(files), ignored


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


def name_ending(factor: float, model: str | None, suffix: str | None) -> str:
    """What follows the input's stem in an output name: `_x4_edsr` by default, `_<suffix>` with a suffix,
    nothing with an empty one. UsageError for a suffix that is not part of a file name."""
    if suffix is None:
        return f"_{scale_label(factor)}" + (f"_{model_label(model)}" if model else "")
    bad = [character for character in suffix if character in "/\\" or not character.isprintable()]
    if bad:
        raise UsageError(f"--suffix {suffix!r}: {bad[0]!r} cannot be part of a file name; use letters, digits, . _ + -")
    return f"_{suffix}" if suffix else ""


def plan_jobs(
    inputs: Sequence[InputFile],
    *,
    output: Path | None,
    factor: float,
    model: str | None,
    out_format: str | None,
    existing: ExistingPolicy,
    recursive: bool,
    suffix: str | None = None,
    exists: Callable[[Path], bool] = Path.exists,
    is_dir: Callable[[Path], bool] = Path.is_dir,
) -> tuple[list[Job], list[Ignored]]:
    """Decide every output path. Returns the jobs (input order) and inputs dropped because they are
    outputs of this run. ``suffix``: names are `<stem>_<suffix>.<ext>` (`<stem>.<ext>` when empty)
    instead of `<stem>_x<factor>[_<model>].<ext>`. Raises UsageError for a contradictory
    -o/--format/--suffix or an empty suffix that names an input, OutputError when outputs exist under
    ExistingPolicy.ERROR (all of them counted, a few named)."""
    chosen_format = normalize_format(out_format) if out_format else None
    ending = name_ending(factor, model, suffix)
    if output is not None and not is_dir(output) and output.suffix and format_for_write_suffix(output.suffix) is None and is_readable_suffix(output.suffix):
        raise UsageError(f"-o {output}: cannot write {output.suffix} files; use .png, .jpg, .webp or .tiff")
    if output is not None and exists(output) and not is_dir(output) and not output_is_single_file(output, is_dir):
        raise UsageError(f"-o {output} exists and is not a folder or an image file name; give a folder or a .png/.jpg/.webp/.tiff name")
    if output_is_single_file(output, is_dir):
        assert output is not None
        if suffix is not None:
            raise UsageError(f"-o {output} names the output file itself; --suffix names outputs sr makes up: drop one of them")
        return [_single_file_job(inputs, output, chosen_format, existing, exists)], []

    dropped: list[Ignored] = []
    kept = list(inputs)
    while True:  # dropping an input can change the names of the others: repeat until nothing drops
        primaries = [_primary_output(item, output, ending, chosen_format, recursive) for item in kept]
        naming = _final_names(kept, primaries)
        own_output = _find_own_outputs(kept, naming)
        if not own_output:
            break
        dropped += [Ignored(kept[index].path, f"it is this run's output for {kept[owner].path}") for index, owner in own_output.items()]
        kept = [item for index, item in enumerate(kept) if index not in own_output]
    if not ending:
        _refuse_outputs_onto_inputs(kept, primaries)

    jobs: list[Job] = []
    existing_outputs: list[Path] = []
    taken = {_key(item.path) for item in kept}
    for item, name in zip(kept, naming, strict=True):
        if _key(name.target) in taken:  # only a hash collision, or an input named exactly like a tagged output
            raise UsageError(f"{item.path}: its output {name.target} collides with another input or output; rename one of them")
        taken.add(_key(name.target))
        skip = False
        if _exists(name.target, exists):
            if existing is ExistingPolicy.ERROR:
                existing_outputs.append(name.target)
            skip = existing is ExistingPolicy.SKIP
        jobs.append(Job(item.path, name.target, name.format, skip, name.note))
    _raise_if_existing(existing_outputs)
    return jobs, dropped


@dataclass(frozen=True)
class _Primary:
    """An output name before collisions are resolved."""

    folder: Path
    base: str  # the input's stem
    ending: str  # `_x4_model`, `_<suffix>`, or empty
    suffix: str
    format: str

    @property
    def stem(self) -> str:
        return f"{self.base}{self.ending}"


@dataclass(frozen=True)
class _Name:
    target: Path
    format: str
    note: str | None
    plain: _Primary  # what it was before any tag (a rerun recognises both)


def _final_names(items: Sequence[InputFile], primaries: Sequence[_Primary]) -> list[_Name]:
    """Resolve collisions without looking at argument order: every member of a group of inputs that
    would share an output, and every input whose output would land on an input, is tagged with a
    hash of its own path. Names over NAME_MAX_BYTES are cut and tagged the same way."""
    input_keys = {_key(item.path) for item in items}
    plain_keys = [_key(primary.folder / (primary.stem + primary.suffix)) for primary in primaries]
    group: dict[str, list[int]] = {}
    for index, key in enumerate(plain_keys):
        group.setdefault(key, []).append(index)
    names: list[_Name] = []
    for index, (item, primary) in enumerate(zip(items, primaries, strict=True)):
        members = group[plain_keys[index]]
        plain = primary.stem + primary.suffix
        tag = note = None
        if len(members) > 1:
            tag = _tag(item.path)
            others = ", ".join(str(items[other].path) for other in members if other != index)
            note = f"named with -{tag} (from its own path): {others} would get the same output name"
        elif plain_keys[index] in input_keys:
            tag = _tag(item.path)
            note = f"named with -{tag} (from its own path): {plain} is an input of this run"
        elif not _fits(plain):
            tag = _tag(item.path)
        name = _tagged(primary, tag) if tag else plain
        if note is None and tag:
            note = f"name shortened to {name}: {plain} is over the {NAME_MAX_BYTES} bytes an output name can have"
        names.append(_Name(primary.folder / name, primary.format, note, primary))
    return names


def _tag(path: Path) -> str:
    """8 hex digits of a hash of the input's resolved path: the same input always gets the same tag."""
    return hashlib.sha256(os.path.realpath(path).encode("utf-8", "surrogateescape")).hexdigest()[:TAG_HEX_DIGITS]


def _fits(name: str) -> bool:
    return len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX_BYTES


def _tagged(primary: _Primary, tag: str) -> str:
    """`<stem>_<label>-<tag><suffix>`, the input's stem cut at a character boundary where needed to
    fit NAME_MAX_BYTES (and the label too, when it alone leaves no room)."""
    for head, tail in ((primary.base, f"{primary.ending}-{tag}{primary.suffix}"), (primary.stem, f"-{tag}{primary.suffix}")):
        room = NAME_MAX_BYTES - len(tail.encode("utf-8", "surrogateescape"))
        if room > 0:
            return head.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore") + tail
    raise AssertionError("an image suffix and a tag fit in any file name")


def _exists(path: Path, exists: Callable[[Path], bool]) -> bool:
    try:
        return exists(path)
    except OSError as error:  # e.g. ENAMETOOLONG for a path over PATH_MAX, a folder we may not search
        raise OutputError(f"{path}: cannot check the output ({error.strerror or error}); choose a shorter or another -o") from None


def _single_file_job(inputs: Sequence[InputFile], output: Path, chosen_format: str | None, existing: ExistingPolicy, exists: Callable[[Path], bool]) -> Job:
    if len(inputs) != 1:
        raise UsageError(f"-o {output} names one file but there are {len(inputs)} inputs; give a folder to -o")
    suffix_format = format_for_write_suffix(output.suffix)
    assert suffix_format is not None
    if chosen_format and chosen_format != suffix_format:
        raise UsageError(f"-o {output} says {suffix_format} but --format says {chosen_format}; make them agree")
    if same_file(output, inputs[0].path):
        raise UsageError(f"-o {output} is the input itself; inputs are never overwritten, choose another name")
    skip = False
    if _exists(output, exists):
        if existing is ExistingPolicy.ERROR:
            _raise_if_existing([output])
        skip = existing is ExistingPolicy.SKIP
    return Job(inputs[0].path, output, suffix_format, skip)


def _refuse_outputs_onto_inputs(items: Sequence[InputFile], primaries: Sequence[_Primary]) -> None:
    """An empty --suffix keeps the input's name: refuse it where the output would be that very input
    (beside it, same format), which the usual tagging would otherwise turn into a name nobody asked for."""
    for item, primary in zip(items, primaries, strict=True):
        target = primary.folder / (primary.stem + primary.suffix)
        if _key(target) == _key(item.path):
            raise UsageError(f"--suffix '': the output for {item.path} would be {target}, the input itself; inputs are "
                             f"never overwritten: give -o DIR (another folder), a non-empty --suffix, or another --format")


def _primary_output(item: InputFile, output: Path | None, ending: str, chosen_format: str | None, recursive: bool) -> _Primary:
    """The output's folder, stem, suffix and format before collisions are resolved."""
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
    return _Primary(folder, item.path.stem, ending, suffix, fmt)


def _find_own_outputs(items: Sequence[InputFile], naming: Sequence[_Name]) -> dict[int, int]:
    """Inputs found in folders (not named by the user) that are another input's output here: its
    name in this run, its plain name, or a plain name with a `-N` counter of older versions.
    index -> index of the input it belongs to."""
    patterns: dict[str, list[tuple[re.Pattern[str], int]]] = {}
    for owner, name in enumerate(naming):
        plain = name.plain
        # `-N` counters were added to the default names only; `photo-2.png` beside `photo.png` is no output
        counter = f"({LEGACY_COUNTER})?" if plain.ending else ""
        pattern = re.compile("|".join((
            re.escape(name.target.name),
            re.escape(plain.stem) + counter + re.escape(plain.suffix),
        )), re.IGNORECASE)
        patterns.setdefault(_key(plain.folder), []).append((pattern, owner))
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
    """Comparison key of outputs: resolved (links, ..), case-folded (two names differing only in case
    collide on macOS/Windows, so they are kept apart everywhere)."""
    return os.path.realpath(path).casefold()


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths are one file, as the filesystem says: `GOOD.png` is not `good.png` on a
    case-sensitive one and is on a case-insensitive one. A path that does not exist is no file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False

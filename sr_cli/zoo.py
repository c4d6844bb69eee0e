"""Model name (+ scale) -> manifest entry -> verified file -> SRNet; or a weights file -> SRNet.

Names. Every manifest entry has a canonical name (`edsr-baseline-x2`, `mdsr`, `esrgan`, `vdsr`, ...).
Some entries also answer to a family alias that the scale disambiguates:

- `edsr` -> `edsr-x2|x3|x4`: the paper's "EDSR" is the full model (32 blocks, 256 features);
  the small one is asked for explicitly, `edsr-baseline` -> `edsr-baseline-x2|x3|x4`.
- `realesrgan` -> `realesrgan-x4plus` or `realesrgan-x2plus`; `realesrnet`, `realesr-general`, `rrdb-psnr`
  are single-entry aliases.
- `mdsr` / `mdsr-baseline` are one file each serving x2, x3 and x4; `esrgan` is x4 only;
  `vdsr` serves any scale > 1 (it runs on a bicubic-upscaled input).

Case and `_`/`-` do not matter. A value with a path separator is a file; a bare word is a name or
alias first (write ./vdsr for a file called vdsr), else a file if it exists or ends in .pt/.pth/...
An alias without a scale that fits several entries, a scale an entry does not serve, or an unknown
name raise UnknownModelError listing the choices (with "did you mean").
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sr_cli.archs.runtime import SRNet
from sr_cli.defaults import DEFAULT_MODEL as DEFAULT_MODEL  # re-exported: the name used without --model
from sr_cli.errors import (
    CheckpointError,
    ChecksumError,
    InputError,
    ScaleMismatchError,
    SRError,
    UnknownModelError,
    UsageError,
)
from sr_cli.files.digest import sha256_of
from sr_cli.files.regular import check_regular
from sr_cli.weights.bundled import bundled_dir, bundled_file
from sr_cli.weights.cache import CachedFile, find_cached, find_damaged
from sr_cli.weights.detect import DetectedCheckpoint, detect
from sr_cli.weights.download import fetch
from sr_cli.weights.loading import LoadedCheckpoint, load_checkpoint, srnet_for
from sr_cli.weights.manifest import ManifestEntry, load_manifest
from sr_cli.weights.ncnn import NCNN_BIN_SHA256, NCNN_PARAM_SHA256
from sr_cli.weights.reading import WEIGHTS_FILE, read_checkpoint

_WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".param")
# Where the file that runs came from: shipped inside the package, sr's (or Hugging Face's) cache, a path given.
WeightsSource = Literal["bundled", "cache", "file"]


@dataclass(frozen=True)
class LoadedModel:
    name: str  # the manifest name, or the file path as given
    entry: ManifestEntry | None  # None for a file given by path
    srnet: SRNet
    checkpoint: LoadedCheckpoint

    @property
    def source(self) -> WeightsSource:
        if self.entry is None:
            return "file"
        return "bundled" if Path(self.checkpoint.path).resolve().is_relative_to(bundled_dir().resolve()) else "cache"


def model_names() -> list[str]:
    """Canonical names, in manifest order."""
    return load_manifest().names()


def normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def resolve(model: str, scale: float | None = None) -> ManifestEntry:
    """The manifest entry for a name or alias at `scale` (None: only unambiguous names resolve)."""
    if scale is not None and not scale > 0:
        raise UsageError(f"--scale {scale:g} is not a positive factor")
    manifest = load_manifest()
    key = normalise(model)
    entry = manifest.get(key)
    if entry is not None:
        if scale is not None and not entry.serves(scale):
            raise UnknownModelError(f"{entry.name} serves {_scales_text(entry)}, not x{scale:g}; {_alternatives(scale)}")
        return entry
    group = [candidate for candidate in manifest.entries if key in candidate.aliases]
    if not group:
        raise UnknownModelError(unknown_model_message(model))
    if scale is not None:
        fitting = [candidate for candidate in group if candidate.serves(scale)]
        if len(fitting) == 1:
            return fitting[0]
        if not fitting:
            listed = ", ".join(f"{c.name} ({_scales_text(c)})" for c in group)
            raise UnknownModelError(f"{model!r} has no x{scale:g} weights (it means {listed}); {_alternatives(scale)}")
        group = fitting
    if len(group) == 1:
        return group[0]
    listed = ", ".join(f"{c.name} ({_scales_text(c)})" for c in group)
    raise UnknownModelError(f"{model!r} is ambiguous: it means one of {listed}; pass --scale or the full name")


def default_scale(model_or_path: str | Path) -> int:
    """The scale to run when none is given: the only one the model or file serves.

    A name is answered from the manifest (nothing is downloaded); a file is read safely and placed. A model
    serving several scales (MDSR) or any (VDSR), or an alias the scale would decide, is a UsageError
    listing the choices.
    """
    if looks_like_path(model_or_path):
        path = Path(model_or_path).expanduser()
        _check_weights_file(path)
        raw = read_checkpoint(path)
        scales = detect(raw.tensors, metadata=raw.metadata, source=str(path)).scales
        what = str(model_or_path)
    else:
        entry = resolve(str(model_or_path))
        scales = list(entry.scales) if entry.scales is not None else None
        what = entry.name
    return _only_scale(scales, what)


def _check_weights_file(path: Path) -> None:
    """InputError unless `path` is (a link to) a regular file: missing, with the model names as the other way;
    a folder, FIFO, device, link loop or dangling link, said as what it is (never opened)."""
    if not os.path.lexists(path):
        raise InputError(f"{path}: no such weights file; pass an existing file or a model name "
                         f"({', '.join(model_names())})")
    check_regular(path, WEIGHTS_FILE)


def _only_scale(scales: list[int] | None, what: str) -> int:
    if scales is None or not scales:
        raise UsageError(f"{what} serves any scale above 1; pass --scale (e.g. --scale 2) or --outscale")
    if len(scales) > 1:
        listed = ", ".join(f"x{s}" for s in scales)
        choices = ", ".join(str(s) for s in scales[:-1]) + f" or {scales[-1]}"
        raise UsageError(f"{what} serves {listed}; pass --scale {choices}")
    return int(scales[0])


def pair_of(entry: ManifestEntry) -> ManifestEntry | None:
    """The interpolation/denoise partner of `entry` (validated to exist and share the architecture)."""
    if entry.pair is None:
        return None
    partner = load_manifest().get(entry.pair.name)
    assert partner is not None, "the manifest validation guarantees pairs exist"
    return partner


def interpolation_partner_of(entry: ManifestEntry) -> ManifestEntry | None:
    """The PSNR/GAN partner whose weights `entry` may be blended with (`--alpha`, `sr blend`), or None.
    The one place that decides what a blendable pair is."""
    if entry.pair is None or entry.pair.kind != "interpolation":
        return None
    return pair_of(entry)


def denoise_partner_of(entry: ManifestEntry) -> ManifestEntry | None:
    """The denoise-strength partner of `entry` (Real-ESRGAN's realesr-general-x4v3 <-> its wdn "weak denoise"
    model) for `--denoise`, or None. The one place that decides what a denoise pair is."""
    if entry.pair is None or entry.pair.kind != "denoise":
        return None
    return pair_of(entry)


def looks_like_path(model: str | Path) -> bool:
    """A --model value is a file when it is a Path or has a path separator; otherwise a manifest name or
    alias wins (write ./vdsr for a file of that name), and anything else is a file if it exists or ends
    like a weights file."""
    if isinstance(model, Path):
        return True
    if "/" in model or "\\" in model:
        return True
    manifest = load_manifest()
    key = normalise(model)
    if manifest.get(key) is not None or any(key in entry.aliases for entry in manifest.entries):
        return False
    return Path(model).is_file() or model.lower().endswith(_WEIGHT_SUFFIXES)


def load(model_or_path: str | Path, scale: float, *, res_scale: float | None = None,
         progress: Callable[[int, int], None] | None = None, offline: bool | None = None) -> LoadedModel:
    """A ready SRNet at `scale` from a manifest name (downloaded and verified as needed) or a weights file.

    res_scale: EDSR/MDSR residual scaling, which a checkpoint's shapes cannot show; for names the
    manifest gives it, for files detection uses the full-EDSR shape rule unless you pass it.
    """
    return ModelSession().load_first_served(model_or_path, (scale,), res_scale=res_scale, progress=progress,
                                            offline=offline)


class ModelSession:
    """Reads each weights file once however many scales or datasets ask for it (`sr eval` over several
    sets and scales, `load_model(..., outscale=)` trying scales). The SRNets it returns for one file share
    one module: use a session for one run on one device (`zoo.load` makes a fresh one per call)."""

    def __init__(self) -> None:
        self._checkpoints: dict[tuple[str, float | None], tuple[ManifestEntry | None, LoadedCheckpoint]] = {}

    def checkpoint(self, model_or_path: str | Path, scale: float | None = None, *, res_scale: float | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   offline: bool | None = None) -> tuple[ManifestEntry | None, LoadedCheckpoint]:
        """The verified, strictly loaded checkpoint behind a name (for `scale`, where the name needs one to
        pick an entry) or a file, with its manifest entry (None for a file): the one loader path."""
        if looks_like_path(model_or_path):
            path = Path(model_or_path).expanduser()
            _check_weights_file(path)
            key = (str(path.resolve()), res_scale)
            if key not in self._checkpoints:
                self._checkpoints[key] = (None, load_checkpoint(path, res_scale=res_scale))
            return self._checkpoints[key]
        entry = resolve(str(model_or_path), scale)
        effective_res_scale = res_scale if res_scale is not None else entry.res_scale
        key = (f"manifest:{entry.name}", effective_res_scale)
        if key not in self._checkpoints:
            path = fetch(entry, progress=progress, offline=offline)
            checkpoint = load_checkpoint(path, res_scale=effective_res_scale)
            _check_matches_manifest(entry, checkpoint)
            self._checkpoints[key] = (entry, checkpoint)
        return self._checkpoints[key]

    def default_scale(self, model_or_path: str | Path, *, res_scale: float | None = None) -> int:
        """Like `zoo.default_scale`, but a file is read (once) into this session for the load that follows."""
        if not looks_like_path(model_or_path):
            return default_scale(model_or_path)  # the manifest answers; nothing to read
        _, checkpoint = self.checkpoint(model_or_path, res_scale=res_scale)
        return _only_scale(checkpoint.detected.scales, str(model_or_path))

    def load(self, model_or_path: str | Path, scale: float, *, res_scale: float | None = None,
             progress: Callable[[int, int], None] | None = None, offline: bool | None = None) -> LoadedModel:
        """Like `zoo.load`, reusing what this session has read."""
        return self.load_first_served(model_or_path, (scale,), res_scale=res_scale, progress=progress, offline=offline)

    def load_first_served(self, model_or_path: str | Path, scales: Sequence[float], *,
                          res_scale: float | None = None, progress: Callable[[int, int], None] | None = None,
                          offline: bool | None = None) -> LoadedModel:
        """The SRNet for the first of `scales` the model serves (the one place a scale is chosen); raises
        the first scale's error when none is served. A file is read once whatever the number of scales."""
        first_error: SRError | None = None
        for scale in scales:
            try:
                entry, checkpoint = self.checkpoint(model_or_path, scale, res_scale=res_scale, progress=progress,
                                                    offline=offline)
                srnet = srnet_for(checkpoint, scale)
            except (ScaleMismatchError, UnknownModelError) as error:  # this scale is not served; try the next
                first_error = first_error or error
                continue
            name = entry.name if entry is not None else str(model_or_path)
            return LoadedModel(name=name, entry=entry, srnet=srnet, checkpoint=checkpoint)
        assert first_error is not None, "scales must not be empty"
        raise first_error


def _check_matches_manifest(entry: ManifestEntry, checkpoint: LoadedCheckpoint) -> None:
    """The file hashed right when cached; make sure it still does and is the architecture the manifest says."""
    if not entry.accepts(checkpoint.sha256):
        raise ChecksumError(f"{checkpoint.path}: sha256 {checkpoint.sha256} no longer matches {entry.name}; "
                            f"the cached file changed since it was verified: run `sr weights verify --remove-bad` "
                            f"and download it again")
    detected = checkpoint.detected
    scales = list(entry.scales) if entry.scales is not None else None
    if detected.family != entry.family or detected.scales != scales or \
            (entry.num_params is not None and detected.num_params != entry.num_params):
        raise CheckpointError(
            f"{checkpoint.path}: holds a {detected.family} model (scales {detected.scales}, {detected.num_params} "
            f"parameters) but the manifest's {entry.name} is {entry.family} (scales {scales}, {entry.num_params}); "
            f"report this manifest bug, or pass the file with --weights to use what it holds")


def _scales_text(entry: ManifestEntry) -> str:
    if entry.scales is None:
        return "any scale"
    return "/".join(f"x{s}" for s in entry.scales)


def _alternatives(scale: float) -> str:
    fitting = [entry.name for entry in load_manifest().entries if entry.serves(scale)]
    if not fitting:
        return "no model serves that scale"
    return f"models for x{scale:g}: {', '.join(fitting)}"


def is_known(model: str) -> bool:
    """Whether `model` is a manifest name or alias (at some scale)."""
    manifest = load_manifest()
    key = normalise(model)
    return manifest.get(key) is not None or any(key in entry.aliases for entry in manifest.entries)


def unknown_model_message(model: str, also: tuple[str, ...] = ()) -> str:
    """One short line: the closest names (``also``: names a command knows besides the manifest's, like
    eval's bicubic) and where the whole list is; the list itself is too long for an error line."""
    manifest = load_manifest()
    known = [*also, *manifest.names(), *sorted({alias for entry in manifest.entries for alias in entry.aliases})]
    guesses = difflib.get_close_matches(normalise(model), known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(guesses)}? " if guesses else ""
    builtin = f"{', '.join(also)}, " if also else ""
    return (f"unknown model {model!r}; {hint}give {builtin}a model name (`sr weights list` shows all "
            f"{len(manifest.names())}) or a weights file")


# --- what `sr weights list` / `sr weights inspect` show ------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    entry: ManifestEntry
    cached: Path | None  # the verified file in sr's cache, if there
    bundled: Path | None = None  # the copy shipped inside the package, if any (sha256-checked when used)
    damaged: CachedFile | None = None  # a cached file of the wrong size (truncated), when there is no good one

    @property
    def available(self) -> Path | None:
        """The file `--model NAME` would run without any download (sr's cache first, then the bundled copy)."""
        return self.cached or self.bundled


def catalogue() -> list[ModelStatus]:
    """Every manifest entry with its cached file (cheap check: presence and size), bundled copy, damaged file."""
    rows = []
    for entry in load_manifest().entries:
        rows.append(ModelStatus(entry=entry, cached=find_cached(entry), bundled=bundled_file(entry),
                                damaged=find_damaged(entry)))
    return rows


@dataclass(frozen=True)
class FileReport:
    """What a weights file holds: detection results plus identity (for `sr weights inspect`)."""

    path: Path
    size: int
    sha256: str
    container: str
    serialization: str
    detected: DetectedCheckpoint
    manifest_name: str | None  # the manifest entry whose published file this is, if any
    metadata: dict[str, str]  # the file's own header metadata (safetensors), e.g. a blend's sr.alpha and sr.sources


def describe_file(path: Path, *, res_scale: float | None = None) -> FileReport:
    """Read a checkpoint safely and place it (family, layout, hyperparameters); nothing is executed.

    When the file is a published one (its sha256 matches a manifest entry), that entry's res_scale
    applies unless `res_scale` is given.
    """
    check_regular(path, WEIGHTS_FILE)
    digest = sha256_of(path)
    raw = read_checkpoint(path)
    known = _published_entry(path, digest, raw.metadata)
    if res_scale is None and known is not None:
        res_scale = known.res_scale
    detected = detect(raw.tensors, res_scale=res_scale, metadata=raw.metadata, source=str(path))
    return FileReport(path=path, size=path.stat().st_size, sha256=digest, container=raw.container,
                      serialization=raw.serialization, detected=detected,
                      manifest_name=known.name if known is not None else None, metadata=dict(raw.metadata))


def _published_entry(path: Path, digest: str, metadata: dict[str, str]) -> ManifestEntry | None:
    """The manifest entry whose published file (or bundled copy, or ncnn pair: both files) this is."""
    param_digest, bin_digest = metadata.get(NCNN_PARAM_SHA256), metadata.get(NCNN_BIN_SHA256)
    for entry in load_manifest().entries:
        # A full sha256 identifies a file whatever its name; a published prefix only together with the name.
        if entry.sha256 == digest or (entry.filename == path.name and entry.digest_matches(digest)) \
                or entry.accepts(digest):
            return entry
        ncnn = entry.ncnn
        if ncnn is not None and (ncnn.param_sha256, ncnn.bin_sha256) == (param_digest, bin_digest):
            return entry
    return None

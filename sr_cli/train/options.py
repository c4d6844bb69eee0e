"""`sr train` options: command-line flags over an optional TOML file over the recipe's defaults.

No config framework: `TrainOverrides` is the one declaration of what a user may set (the CLI fills it
from flags, `read_toml` from the file, checked against the same fields and types); None = not given. A
flag the user typed wins over the file, the file wins over the recipe (recipes.py). `resolve_options`
turns them into `TrainOptions`, every value decided and validated. Unknown keys and wrong types are usage
errors that name the file and the key.
"""
from __future__ import annotations

import math
import os
import stat
import tomllib
import types
import typing
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from sr_cli.archs.descriptor import TrainSizes
from sr_cli.archs.families import descriptor_for
from sr_cli.errors import UsageError
from sr_cli.train.recipes import Recipe, default_patch, recipe_for

AmpMode = Literal["off", "bf16", "fp16"]
_AMP_MODES: dict[str, AmpMode] = {"off": "off", "bf16": "bf16", "fp16": "fp16"}
_T = TypeVar("_T")


@dataclass(frozen=True)
class TrainOverrides:
    """What the user set, on the command line or in the --config file; None = not given.

    The CLI flag of a field is its name with "_" -> "-"; the TOML key may use either spelling.
    """

    model: str | None = None
    scale: int | None = None
    data: str | None = None  # a folder of HR images or "div2k"
    out: Path | None = None
    val: str | None = None  # a benchmark name, a folder of HR images, or "none"
    data_dir: Path | None = None  # where benchmark sets are found first (sr eval's --data-dir)
    steps: int | None = None
    batch: int | None = None
    patch: int | None = None
    lr: float | None = None
    init: str | None = None
    resume: bool | None = None
    amp: str | None = None
    ema: float | None = None
    seed: int | None = None
    workers: int | None = None
    val_every: int | None = None
    save_every: int | None = None
    log_every: int | None = None
    device: str | None = None
    blocks: int | None = None
    features: int | None = None
    clip_theta: float | None = None
    vgg_weights: Path | None = None
    random_vgg: bool | None = None

    def __post_init__(self) -> None:
        # Python callers (tests, bench/) get a clear error for out="runs/x" instead of a failure deep in the loop.
        for name, value_type in _VALUE_TYPES.items():
            value = getattr(self, name)
            if value is not None and not _is_instance(value, value_type):
                raise TypeError(f"TrainOverrides.{name} must be {value_type.__name__} or None, got {value!r}")

    def over(self, base: TrainOverrides) -> TrainOverrides:
        """`base` with every value given here put over it (flags over the file)."""
        given = {field.name: getattr(self, field.name) for field in fields(self) if getattr(self, field.name) is not None}
        return replace(base, **given)


OPTION_KEYS: tuple[str, ...] = tuple(field.name for field in fields(TrainOverrides))


def _value_type(name: str) -> type:
    """The type a TrainOverrides field holds when given: `int | None` -> int."""
    annotation = typing.get_type_hints(TrainOverrides)[name]
    given = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    assert isinstance(annotation, types.UnionType) and len(given) == 1, f"{name}: declare it as `T | None`"
    value_type = given[0]
    assert isinstance(value_type, type)
    return value_type


_VALUE_TYPES: dict[str, type] = {name: _value_type(name) for name in OPTION_KEYS}


def _is_instance(value: object, value_type: type) -> bool:
    """isinstance without Python's two surprises for options: bool is not an int, an int is a fine float."""
    if isinstance(value, bool) and value_type is not bool:
        return False
    return isinstance(value, value_type) or (value_type is float and isinstance(value, int))


@dataclass(frozen=True)
class TrainOptions:
    """Everything one run needs, resolved and validated."""

    model: str
    scales: tuple[int, ...]  # trained scales: one, or MDSR/VDSR's several
    data: str  # a folder of HR images or "div2k"
    out: Path  # runs/NAME
    val: str | None  # a benchmark name (set5, set14, b100), a folder of HR images, or None
    data_dir: Path | None  # a folder holding Set5/HR ... (EDSR benchmark layout), looked in before the cache
    steps: int | None  # None: the recipe's epochs, counted by `loop` once the patch grid is known (VDSR)
    batch: int  # global batch: split across torchrun processes
    patch: int
    lr: float
    init: str | None
    resume: bool
    amp: AmpMode
    ema: float | None
    seed: int
    workers: int
    val_every: int
    save_every: int
    log_every: int
    device: str  # "auto", "cpu", "cuda", "cuda:N"
    blocks: int
    features: int
    clip_theta: float
    vgg_weights: Path | None  # a local vgg19-dcbb9e9d.pth instead of the download
    random_vgg: bool  # test only: random VGG19 weights for the perceptual loss (said in the log)

    @property
    def recipe(self) -> Recipe:
        return recipe_for(self.model)

    @property
    def scale(self) -> int:
        """The scale of a single-scale run (EDSR, ESRGAN); UsageError for MDSR/VDSR runs."""
        if len(self.scales) != 1:
            raise UsageError(f"--model {self.model} trains scales {list(self.scales)} at once")
        return self.scales[0]


MAX_CONFIG_BYTES = 1024 * 1024  # a real options file is a few hundred bytes


def read_toml(path: Path) -> TrainOverrides:
    """The options of a TOML file (top level, or a [train] table), checked against TrainOverrides' fields."""
    document = _parse_toml(path)
    table = document.get("train", document)
    if not isinstance(table, dict):
        raise UsageError(f"--config {path}: [train] must be a table of options")
    values: dict[str, object] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key not in _VALUE_TYPES:
            raise UsageError(f"--config {path}: unknown option {raw_key!r}; known: {', '.join(OPTION_KEYS)}")
        values[key] = _toml_value(path, raw_key, value, _VALUE_TYPES[key])
    # Each value was checked against its field's type just above; mypy cannot see that through a dict.
    return TrainOverrides(**cast(dict[str, Any], values))


def _parse_toml(path: Path) -> dict[str, object]:
    """The parsed file; UsageError naming the file for anything that is not a readable TOML text file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except OSError as error:
        raise UsageError(f"--config {path}: cannot read it ({error.strerror or error}); check the path") from None
    if not stat.S_ISREG(mode):  # a FIFO would block the read forever, a folder is no config
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise UsageError(f"--config {path}: {kind}; give a .toml file")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise UsageError(f"--config {path}: cannot read it ({error.strerror or error}); check its permissions") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise UsageError(f"--config {path}: over {MAX_CONFIG_BYTES // 1024} KiB, which is no options file; give a .toml file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"--config {path}: not a text file (not UTF-8); give a .toml file of options") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"--config {path}: not valid TOML ({error}); fix the file") from None


def _toml_value(path: Path, key: str, value: object, field_type: type) -> object:
    """`value` as the field's type: an int is accepted for a float, a string for a path; nothing else converts."""
    if field_type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    toml_type = str if field_type is Path else field_type
    if not _is_instance(value, toml_type):
        raise UsageError(f"--config {path}: {key} must be a {toml_type.__name__}, got {value!r}")
    return Path(value) if field_type is Path and isinstance(value, str) else value


def _or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def resolve_options(flags: TrainOverrides, config: Path | None = None) -> TrainOptions:
    """Flags (None = not given) over the TOML file over the recipe defaults, then validated."""
    given = flags.over(read_toml(config)) if config is not None else flags
    if given.model is None or given.data is None or given.out is None:
        missing = next(name for name in ("model", "data", "out") if getattr(given, name) is None)
        raise UsageError(f"--{missing} is required (on the command line or in the --config file)")
    recipe = recipe_for(given.model)
    scales = _scales(recipe, given.scale)
    amp = _or(given.amp, "off")
    if amp not in _AMP_MODES:
        raise UsageError(f"--amp must be off, bf16 or fp16, got {amp!r}")
    val = _or(given.val, "set5")
    options = TrainOptions(
        model=recipe.name,
        scales=scales,
        data=given.data,
        out=given.out,
        val=None if val in ("", "none") else val,
        data_dir=given.data_dir,
        steps=_or(given.steps, recipe.steps),
        batch=_or(given.batch, recipe.batch),
        patch=_or(given.patch, default_patch(recipe, scales[0])),
        lr=_or(given.lr, recipe.lr),
        init=None if given.init == "" else given.init,
        resume=_or(given.resume, False),
        amp=_AMP_MODES[amp],
        ema=given.ema,
        seed=_or(given.seed, 0),
        workers=_or(given.workers, 0),
        val_every=_or(given.val_every, 1000),
        save_every=_or(given.save_every, 1000),
        log_every=_or(given.log_every, 10),
        device=_or(given.device, "auto"),
        blocks=_or(given.blocks, recipe.blocks),
        features=_or(given.features, recipe.features),
        clip_theta=_or(given.clip_theta, recipe.clip_theta),
        vgg_weights=given.vgg_weights,
        random_vgg=_or(given.random_vgg, False),
    )
    _validate(options, recipe)
    return options


def _scales(recipe: Recipe, scale: int | None) -> tuple[int, ...]:
    if scale is None:
        if recipe.multi_scale:
            return recipe.scales
        raise UsageError(f"--scale is required for --model {recipe.name} (one of {list(recipe.scales)})")
    if scale not in recipe.scales:
        raise UsageError(f"--model {recipe.name} trains scales {sorted(recipe.scales)}, not --scale {scale}")
    return (scale,)


def _validate(options: TrainOptions, recipe: Recipe) -> None:
    positive = {"--batch": options.batch, "--patch": options.patch, "--val-every": options.val_every,
                "--save-every": options.save_every, "--log-every": options.log_every,
                "--blocks": options.blocks, "--features": options.features}
    for flag, value in positive.items():
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if options.steps is not None and options.steps < 1:
        by_epochs = f" (leave it out for {recipe.name}'s {recipe.epochs} epochs)" if recipe.epochs is not None else ""
        raise UsageError(f"--steps must be at least 1, got {options.steps}{by_epochs}")
    if not math.isfinite(options.lr) or options.lr <= 0:
        raise UsageError(f"--lr must be a positive number, got {options.lr}")
    if options.ema is not None and not 0.0 < options.ema < 1.0:
        raise UsageError(f"--ema must be between 0 and 1 (e.g. 0.999), got {options.ema}")
    if options.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {options.workers}")
    if options.clip_theta < 0:
        raise UsageError(f"--clip-theta must be 0 (off) or positive, got {options.clip_theta}")
    if recipe.needs_init and options.init is None and not options.resume:
        raise UsageError(f"--model {recipe.name} starts from a stage-1 model: pass --init with an "
                         f"esrgan-psnr checkpoint (runs/NAME/NAME.safetensors) or a zoo name")
    if recipe.gan and recipe.hr_patch is not None and options.patch * options.scale != recipe.hr_patch:
        side = recipe.hr_patch
        raise UsageError(f"--model {recipe.name}: the discriminator sees {side}x{side} HR patches, so --patch must be "
                         f"{side // options.scale} at x{options.scale}, got {options.patch}")
    descriptor = descriptor_for(recipe.family)
    if descriptor.train_params is not None:
        sizes = TrainSizes(options.blocks, options.features, options.scales, recipe.res_scale)
        multiple = descriptor.size_multiple(descriptor.train_params(sizes))
        if options.patch % multiple:  # RRDB x2/x1 fold the input with pixel_unshuffle
            parity = "even" if multiple == 2 else f"a multiple of {multiple}"
            raise UsageError(f"--patch must be {parity} for an x{options.scales[0]} {descriptor.label} "
                             f"(it folds the input {multiple}x{multiple}), got {options.patch}")
    if options.random_vgg and options.vgg_weights is not None:
        raise UsageError("--random-vgg and --vgg-weights contradict each other; pass one")


def updates_per_epoch(patches_per_epoch: int, batch: int) -> int:
    """Optimizer updates in one pass over `patches_per_epoch` patches, `batch` at a time (at least 1)."""
    return max(1, math.ceil(patches_per_epoch / batch))


def option_names() -> list[str]:
    return [f.name for f in fields(TrainOptions)]

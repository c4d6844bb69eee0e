"""`sr train` options: command-line flags over an optional TOML file over the recipe's defaults.

No config framework: a flat table of known keys, each with its type. A flag the user typed wins over
the file, the file wins over the recipe (recipes.py). Unknown keys and wrong types are usage errors
that name the file and the key.
"""
from __future__ import annotations

import math
import os
import stat
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from sr_cli.archs.descriptor import TrainSizes
from sr_cli.archs.families import descriptor_for
from sr_cli.errors import UsageError
from sr_cli.train.recipes import VDSR_EPOCHS, Recipe, default_patch, recipe_for

AmpMode = Literal["off", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainOptions:
    """Everything one run needs, resolved and validated. `steps` may be 0 only for VDSR before the
    data is known (then it is VDSR_EPOCHS epochs, fixed by `loop` once the patch grid is counted)."""

    model: str
    scales: tuple[int, ...]  # trained scales: one, or MDSR/VDSR's several
    data: str  # a folder of HR images or "div2k"
    out: Path  # runs/NAME
    val: str | None  # a benchmark name (set5, set14, b100), a folder of HR images, or None
    steps: int
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


# key -> type; the CLI flag is the key with "_" -> "-", the TOML key may use either spelling.
_FIELD_TYPES: dict[str, type] = {
    "model": str, "scale": int, "data": str, "out": str, "val": str, "steps": int, "batch": int,
    "patch": int, "lr": float, "init": str, "resume": bool, "amp": str, "ema": float, "seed": int,
    "workers": int, "val_every": int, "save_every": int, "log_every": int, "device": str, "blocks": int,
    "features": int, "clip_theta": float, "vgg_weights": str, "random_vgg": bool,
}
OPTION_KEYS: tuple[str, ...] = tuple(_FIELD_TYPES)
MAX_CONFIG_BYTES = 1024 * 1024  # a real options file is a few hundred bytes


def read_toml(path: Path) -> dict[str, object]:
    """The options table of a TOML file (top level, or a [train] table), keys normalised to snake_case."""
    document = _parse_toml(path)
    table = document.get("train", document)
    if not isinstance(table, dict):
        raise UsageError(f"--config {path}: [train] must be a table of options")
    values: dict[str, object] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key not in _FIELD_TYPES:
            raise UsageError(f"--config {path}: unknown option {raw_key!r}; known: {', '.join(OPTION_KEYS)}")
        expected = _FIELD_TYPES[key]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(f"--config {path}: {raw_key} must be a {expected.__name__}, got {value!r}")
        values[key] = value
    return values


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


def resolve_options(flags: dict[str, object], config: Path | None = None) -> TrainOptions:
    """Merge flags (None = not given) over the TOML file over the recipe defaults, then validate."""
    unknown = set(flags) - set(_FIELD_TYPES)
    if unknown:
        raise UsageError(f"unknown training options: {', '.join(sorted(unknown))}")
    merged: dict[str, object] = read_toml(config) if config is not None else {}
    merged.update({key: value for key, value in flags.items() if value is not None})

    def get(key: str, default: object = None) -> Any:  # a TOML or flag value; converted where it is read
        return merged.get(key, default)

    for required in ("model", "data", "out"):
        if get(required) is None:
            raise UsageError(f"--{required} is required (on the command line or in the --config file)")
    recipe = recipe_for(str(get("model")))
    given_steps = get("steps")
    if isinstance(given_steps, int) and given_steps < 1:  # 0 is the VDSR recipe's own "epochs" marker, not a value to type
        raise UsageError(f"--steps must be at least 1, got {given_steps}"
                         + (f" (leave it out for VDSR's {VDSR_EPOCHS} epochs)" if recipe.family == "vdsr" else ""))
    scales = _scales(recipe, get("scale"))
    first_scale = scales[0]
    amp = str(get("amp", "off"))
    if amp not in ("off", "bf16", "fp16"):
        raise UsageError(f"--amp must be off, bf16 or fp16, got {amp!r}")
    val = get("val", "set5")
    ema = get("ema")
    options = TrainOptions(
        model=recipe.name,
        scales=scales,
        data=str(get("data")),
        out=Path(str(get("out"))),
        val=None if val in (None, "", "none") else str(val),
        steps=int(get("steps", recipe.steps)),
        batch=int(get("batch", recipe.batch)),
        patch=int(get("patch", default_patch(recipe, first_scale))),
        lr=float(get("lr", recipe.lr)),
        init=None if get("init") in (None, "") else str(get("init")),
        resume=bool(get("resume", False)),
        amp=amp,  # type: ignore[arg-type]
        ema=None if ema is None else float(ema),
        seed=int(get("seed", 0)),
        workers=int(get("workers", 0)),
        val_every=int(get("val_every", 1000)),
        save_every=int(get("save_every", 1000)),
        log_every=int(get("log_every", 10)),
        device=str(get("device", "auto")),
        blocks=int(get("blocks", recipe.blocks)),
        features=int(get("features", recipe.features)),
        clip_theta=float(get("clip_theta", recipe.clip_theta)),
        vgg_weights=None if get("vgg_weights") is None else Path(str(get("vgg_weights"))),
        random_vgg=bool(get("random_vgg", False)),
    )
    _validate(options, recipe)
    return options


def _scales(recipe: Recipe, scale: object) -> tuple[int, ...]:
    if scale is None:
        if recipe.multi_scale:
            return recipe.scales
        raise UsageError(f"--scale is required for --model {recipe.name} (one of {list(recipe.scales)})")
    if scale not in recipe.scales:
        raise UsageError(f"--model {recipe.name} trains scales {sorted(recipe.scales)}, not --scale {scale}")
    return (int(scale),)


def _validate(options: TrainOptions, recipe: Recipe) -> None:
    positive = {"--batch": options.batch, "--patch": options.patch, "--val-every": options.val_every,
                "--save-every": options.save_every, "--log-every": options.log_every,
                "--blocks": options.blocks, "--features": options.features}
    for flag, value in positive.items():
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    # 0 = "the recipe's epoch count", known once the data is: only for recipes that count in epochs (VDSR)
    if options.steps < 0 or (options.steps == 0 and not recipe.lr_every_epochs):
        raise UsageError(f"--steps must be at least 1, got {options.steps}")
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
                         f"esrgan-psnr checkpoint (runs/NAME/model.safetensors) or a zoo name")
    if recipe.gan and options.patch * options.scale != 128:
        raise UsageError(f"--model {recipe.name}: the discriminator sees 128x128 HR patches, so --patch must be "
                         f"{128 // options.scale} at x{options.scale}, got {options.patch}")
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


def vdsr_default_steps(patches_per_epoch: int, batch: int) -> int:
    """VDSR_EPOCHS epochs of `patches_per_epoch` patches, in updates of `batch` patches."""
    return VDSR_EPOCHS * max(1, math.ceil(patches_per_epoch / batch))


def option_names() -> list[str]:
    return [f.name for f in fields(TrainOptions)]

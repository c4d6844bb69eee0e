"""`runs/NAME/options.toml`: the options a run was started with, so `sr train --resume --out runs/NAME`
needs nothing else.

Written by the run (rank 0) once it has started or resumed, with every value resolved (folders made
absolute, so a resume from another working directory finds them), in the --config format: the file
also works as `--config runs/NAME/options.toml --out runs/OTHER` to start the same run again.

On --resume, what the user gives now goes over the file. Options that define the run (FIXED_ON_RESUME)
must keep their value: every one that changed is listed in one error. The others (RESUMABLE) may change
and are written back, so the next --resume continues with them.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

from sr_cli.errors import UsageError
from sr_cli.files.atomic import write_bytes_atomic
from sr_cli.train.checkpointing import CHECKPOINT_NAME
from sr_cli.train.options import OPTION_KEYS, TrainOptions, TrainOverrides, read_toml, resolve_options

RUN_OPTIONS_NAME = "options.toml"

# The run would not be the run that was started with another value of these (another network, another
# data stream, or a best model chosen on another validation set). The training data's path may change
# (a moved folder); its content may not: the checkpoint's data fingerprint checks that (loop._restore).
FIXED_ON_RESUME: tuple[str, ...] = ("model", "scales", "batch", "patch", "blocks", "features", "seed", "ema",
                                    "val", "init", "random_vgg")
# Length, logging, hardware, and the knobs the non-finite-loss error tells the user to turn before --resume.
RESUMABLE: tuple[str, ...] = ("steps", "val_every", "save_every", "log_every", "device", "workers", "amp",
                              "lr", "clip_theta", "data", "data_dir", "vgg_weights")
# Not options of the run: where it is, and whether this invocation continues it.
_NOT_RECORDED = ("out", "resume")


def resolve_run_options(flags: TrainOverrides, config: Path | None = None) -> TrainOptions:
    """`resolve_options`, and for --resume the run folder's recorded options under what is given now:
    UsageError listing every option of FIXED_ON_RESUME given with another value."""
    given = flags.over(read_toml(config)) if config is not None else flags
    if not given.resume or given.out is None:
        return resolve_options(given)
    out = given.out
    saved = read_run_options(out)
    if saved is None:
        if not (out / CHECKPOINT_NAME).is_file():
            raise UsageError(f"--resume: {out} holds no run to continue (no {CHECKPOINT_NAME}); "
                             f"drop --resume to start one there, or give the run folder")
        if given.model is None:
            raise UsageError(f"--resume: {out} has no {RUN_OPTIONS_NAME} (a run from an older sr); give the run's "
                             f"options again (--model, --scale, --data ...)")
        return resolve_options(given)  # the checkpoint's own record still guards the run (loop._restore)
    saved = replace(saved, out=out, resume=True)
    before = resolve_options(saved)
    now = resolve_options(given.over(saved))
    changed = resume_mismatches(before, now)
    if changed:
        raise UsageError(f"--resume {out}: {'; '.join(changed)}: these define the run (recorded in "
                         f"{run_options_path(out)}); leave them out to continue it, or start a new --out")
    return now


def resume_changes(options: TrainOptions) -> str | None:
    """For the note of a --resume: 'runs/x/options.toml, with --steps 6 -> 9' (the RESUMABLE options given
    with another value than the recorded one); None when the run recorded no options."""
    recorded = read_run_options(options.out)
    if recorded is None:
        return None
    saved = recorded_values(resolve_options(replace(recorded, out=options.out, resume=True)))
    now = recorded_values(options)
    changed = [f"--{key.replace('_', '-')} {saved.get(key, 'none')} -> {now.get(key, 'none')}"
               for key in RESUMABLE if saved.get(key) != now.get(key)]
    return f"{run_options_path(options.out)}" + (f", with {', '.join(changed)}" if changed else "")


def run_options_path(run_dir: Path) -> Path:
    return run_dir / RUN_OPTIONS_NAME


def read_run_options(run_dir: Path) -> TrainOverrides | None:
    """The recorded options of the run in `run_dir`, or None when it has none (no run, or one from an sr
    that did not record them)."""
    path = run_options_path(run_dir)
    if not path.is_file():
        return None
    return read_toml(path)


def write_run_options(run_dir: Path, options: TrainOptions) -> None:
    """Record `options` (resolved) in runs/NAME/options.toml, atomically (the run's own file: replaced)."""
    values = recorded_values(options)
    lines = ["# sr train: the options of this run. `sr train --resume --out THIS_FOLDER` reads them;",
             "# `sr train --config THIS_FILE --out runs/OTHER` starts the same run again.",
             "[train]"]
    lines += [f"{key.replace('_', '-')} = {_toml_literal(value)}" for key, value in values.items()]
    text = "\n".join(lines) + "\n"
    try:
        parsed = tomllib.loads(text)["train"]
    except tomllib.TOMLDecodeError:  # a path that is not valid Unicode (undecodable bytes) has no TOML spelling
        parsed = None
    if parsed != {key.replace("_", "-"): value for key, value in values.items()}:
        raise UsageError(f"{run_options_path(run_dir)}: cannot record the options of this run (a path that is not "
                         f"valid UTF-8?); rename the folders given to --data/--val/--init")
    write_bytes_atomic(run_options_path(run_dir), text.encode("utf-8"), overwrite=True,
                       advice="free disk space or check the run folder's permissions")


def recorded_values(options: TrainOptions) -> dict[str, str | int | float | bool]:
    """The TrainOverrides values that give `options` back (None fields and out/resume left out)."""
    values: dict[str, str | int | float | bool] = {}
    for key in OPTION_KEYS:
        if key in _NOT_RECORDED:
            continue
        if key == "scale":
            if len(options.scales) == 1:  # several: the recipe's own set, which leaving it out gives back
                values["scale"] = options.scales[0]
            continue
        value = getattr(options, key)
        if key in ("data", "val", "init"):
            value = _absolute_if_folder_or_file(value, benchmark=key == "val")
        if key == "val" and value is None:
            value = "none"
        if isinstance(value, Path):
            value = str(value.absolute())
        if value is not None:
            values[key] = value
    return values


def _absolute_if_folder_or_file(value: str | None, *, benchmark: bool = False) -> str | None:
    """A value naming an existing path (a data folder, an --init file) as an absolute path; a benchmark set
    by its key ('Set5' -> 'set5'); any other name ('div2k', a zoo model) as it is."""
    if value is None:
        return None
    from sr_cli.data.benchmarks import dataset_key

    known = dataset_key(value) if benchmark else None  # (--data div2k is the training set, not div2k-val)
    if known is not None:
        return known  # the set's own key: Set5 and set5 are recorded alike
    if value.lower() == "div2k" or not Path(value).exists():
        return value
    return str(Path(value).absolute())


def _toml_literal(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # JSON's string escapes are valid TOML basic-string escapes


def resume_mismatches(saved: TrainOptions, now: TrainOptions) -> list[str]:
    """'--batch was 4, now 8' for every option of FIXED_ON_RESUME that differs (all of them, in one list)."""
    changed = []
    for key in FIXED_ON_RESUME:
        before, after = _comparable(key, getattr(saved, key)), _comparable(key, getattr(now, key))
        if before != after:
            flag = "--scale" if key == "scales" else f"--{key.replace('_', '-')}"
            changed.append(f"{flag} was {_shown(getattr(saved, key))}, now {_shown(getattr(now, key))}")
    return changed


def _comparable(key: str, value: object) -> object:
    """The same set or file however it was spelled: Set5 = set5, hr/ = /abs/hr."""
    if key in ("val", "init") and isinstance(value, str):
        return _absolute_if_folder_or_file(value, benchmark=key == "val")
    return value


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)

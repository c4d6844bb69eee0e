"""`sr train`: one run from options to an exported model, resumable, one process or K via torchrun.

Order of one run: torchrun context -> data (rank 0 decodes/caches, the others wait and reuse it) ->
network (+ --init) -> optimizers, schedule, EMA, discriminator, VGG19 -> --resume restores everything
-> steps -> checkpoints every --save-every, validation + best export every --val-every -> final
checkpoint and export. Library code: it never prints; the CLI renders `TrainCallbacks` events.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from sr_cli.archs.families import descriptor_for
from sr_cli.archs.runtime import AnyModule, AnyParams
from sr_cli.data.training import (
    PatchDataset,
    SamplePlan,
    StepBatches,
    TrainingSet,
    collate_patches,
    prepare_training_set,
)
from sr_cli.errors import DeviceError, TrainingError, UsageError
from sr_cli.files.atomic import write_bytes_atomic
from sr_cli.files.http import download_to
from sr_cli.files.places import cache_root
from sr_cli.train import distributed
from sr_cli.train.checkpointing import (
    CHECKPOINT_NAME,
    all_finite,
    load_checkpoint_payload,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from sr_cli.train.discriminator import VGGStyleDiscriminator
from sr_cli.train.distributed import DistContext
from sr_cli.train.export import adopt_earlier_export, export_model, export_path
from sr_cli.train.initialize import initialise_from, read_init_source
from sr_cli.train.losses import pixel_loss, ragan_discriminator_loss, ragan_generator_loss
from sr_cli.train.network import TrainNet, build_network, params_to_json
from sr_cli.train.options import TrainOptions, updates_per_epoch
from sr_cli.train.perceptual import (
    VGG19_FILENAME,
    VGG19_SHA256,
    VGG19_URL,
    VGG19Conv54,
    load_vgg19_conv54,
    perceptual_loss,
    random_vgg19_conv54,
)
from sr_cli.train.run_options import write_run_options
from sr_cli.train.schedule import StepSchedule
from sr_cli.train.validation import ValResult, bicubic_baseline, prepare_validation, resolve_val_folder, validate

METRICS_NAME = "metrics.jsonl"
# What the checkpoint records of the options that define the run: --resume refuses other values (the
# result would not be the run that was started). The CLI checks the same, and more, against the run's
# options.toml first (run_options.FIXED_ON_RESUME); this guards runs without one and Python callers.
_RUN_DEFINING = ("model", "scales", "batch", "patch", "blocks", "features", "seed", "ema", "data_fingerprint")


@dataclass(frozen=True)
class StepInfo:
    step: int  # updates done
    total: int
    losses: dict[str, float]
    lr: float
    steps_per_second: float  # over this process's session
    eta_seconds: float


@dataclass(frozen=True)
class ValInfo:
    step: int
    result: ValResult
    best: bool
    bicubic: ValResult  # bicubic on the same set and protocol, measured once per run session


@dataclass
class TrainCallbacks:
    """Events for the CLI (rank 0 only). Each may be None."""

    note: Callable[[str], None] | None = None  # one-line notices (init report, random VGG, resume)
    progress: Callable[[str, int, int], None] | None = None  # (what, done, total): data preparation, downloads
    step: Callable[[StepInfo], None] | None = None
    validated: Callable[[ValInfo], None] | None = None


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    best_psnr: float | None
    best_step: int | None
    exported: Path | None
    data_images: int = 0
    start_step: int = 0  # where this session began (0, or the checkpoint's step on --resume)
    bicubic: ValResult | None = None  # bicubic on the validation set (None: --val none)
    device: str = ""  # where it ran, e.g. "cpu", "cuda:0"


@dataclass
class _Parts:
    """The mutable objects of one run (kept together so checkpoints cannot forget one)."""

    module: AnyModule
    params: AnyParams
    net: nn.Module  # TrainNet, or DDP around it
    optimizer: torch.optim.Optimizer
    schedule: StepSchedule
    ema: dict[str, Tensor] | None
    discriminator: nn.Module | None = None  # DDP-wrapped when distributed
    discriminator_module: nn.Module | None = None
    optimizer_d: torch.optim.Optimizer | None = None
    vgg: VGG19Conv54 | None = None
    scaler: Any = None
    scaler_d: Any = None
    best_psnr: float | None = None
    best_step: int | None = None
    last_saved_step: int | None = None
    exported: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def train(options: TrainOptions, callbacks: TrainCallbacks | None = None) -> TrainResult:
    """Run (or continue, with options.resume) the training described by `options`."""
    context = distributed.setup(options.device)
    completed = False
    try:
        result = _run(options, context, callbacks or TrainCallbacks())
        completed = True
        return result
    finally:
        distributed.teardown(context, completed=completed)


# --- the run --------------------------------------------------------------------------------------------


def _run(options: TrainOptions, context: DistContext, callbacks: TrainCallbacks) -> TrainResult:
    main = context.is_main
    say = (callbacks.note if main and callbacks.note else (lambda _m: None))
    if options.amp != "off" and context.device.type != "cuda":
        raise DeviceError(f"--amp {options.amp} needs a CUDA device; this run uses {context.device} (drop --amp)")
    if options.batch % context.world_size:
        raise UsageError(f"--batch {options.batch} (the global batch) must be divisible by the "
                         f"{context.world_size} torchrun processes")
    recipe = options.recipe
    run_dir = options.out
    checkpoint_path = run_dir / CHECKPOINT_NAME
    with distributed.together(context):  # a check of rank 0's stops every rank with its message
        if main and checkpoint_path.exists() and not options.resume:
            raise UsageError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue it "
                             f"or choose another --out")

    train_set, val_set = _prepare_data(options, context, callbacks)
    with distributed.together(context):
        if main:  # only now: a run that fails on its data leaves no empty run folder behind
            run_dir.mkdir(parents=True, exist_ok=True)
    bicubic: ValResult | None = None
    with distributed.together(context):
        if main and val_set is not None:
            bicubic = bicubic_baseline(val_set)
            say(f"validation: {len(val_set)} images, x{'/x'.join(map(str, val_set.scales))}; "
                f"bicubic PSNR {bicubic.psnr:.3f} dB, SSIM {bicubic.ssim:.4f} (the figure to beat)")
    total, lr_every = _length_and_decay(options, train_set, say)

    _seed_everything(options.seed)
    parts = _build_parts(options, context, lr_every, say)
    start = 0
    with distributed.together(context):  # each rank reads the files; any rank's failure stops all
        if options.resume:
            start = _restore(parts, options, checkpoint_path, train_set.fingerprint)
            say(f"resumed {run_dir} at step {start}")
            if main:
                _truncate_metrics(run_dir / METRICS_NAME, start)
                renamed = adopt_earlier_export(run_dir, parts.extra.get("export_name"))
                if renamed:
                    say(renamed)
        elif options.init:
            report = initialise_from(parts.module, parts.params, read_init_source(options.init))
            say(report.describe())
            if parts.ema is not None:
                parts.ema = _state_copy(parts.module)
        if main:  # after the checks of --resume: a refused resume leaves the recorded options as they were
            write_run_options(run_dir, options)
    if start >= total:
        say(f"nothing to do: the run is at step {start} and --steps is {total}")
        earlier = export_path(run_dir)
        return TrainResult(run_dir, start, total, parts.best_psnr, parts.best_step,
                           earlier if earlier.is_file() else None, len(train_set), start, bicubic,
                           str(context.device))

    plan = SamplePlan(n_images=len(train_set), batch=options.batch, seed=options.seed, scales=train_set.scales,
                      # a pre-upscaled input runs at net scale 1 whatever its factor: scales can mix
                      per_sample_scale=descriptor_for(recipe.family).input_kind == "y-upscaled")
    loader = torch.utils.data.DataLoader(
        PatchDataset(train_set, options.patch, options.seed),
        batch_sampler=StepBatches(plan, start, total, context.rank, context.world_size),
        num_workers=options.workers, collate_fn=collate_patches, pin_memory=context.device.type == "cuda",
        generator=torch.Generator(),  # keeps the loader from drawing on the global torch RNG
    )
    metrics_path = run_dir / METRICS_NAME
    fingerprint = train_set.fingerprint
    step = start
    in_update = False
    stop = _StopRequest()
    clock = time.monotonic()
    try:
        with stop.installed():
            for lr_batch, hr_batch, scales in loader:
                in_update = True
                losses, lr_now, bad = _update(parts, options, context, step, lr_batch, hr_batch, scales)
                if bad:
                    kept = (f"the last good checkpoint {checkpoint_path} (step {parts.last_saved_step}) is kept"
                            if parts.last_saved_step is not None else "no checkpoint had been written yet")
                    raise TrainingError(f"step {step + 1}: the loss is not finite ({bad}); training stopped and "
                                        f"{kept}; lower --lr (or --amp off) and --resume")
                step += 1
                in_update = False
                with distributed.together(context):  # rank 0 writes metrics.jsonl; a full disk stops every rank
                    if main:
                        _after_update(parts, options, callbacks, step, total, losses, lr_now, start, clock, metrics_path)
                if (step % options.val_every == 0 or step == total) and val_set is not None:
                    with distributed.together(context):
                        if main:
                            assert bicubic is not None
                            _validate_and_export(parts, options, context, val_set, bicubic, step, callbacks,
                                                 metrics_path)
                if step % options.save_every == 0 or step == total:
                    _save(parts, options, context, checkpoint_path, step, fingerprint)
                if stop.requested_everywhere(context):
                    stop.stop()
    except KeyboardInterrupt:
        if not in_update:
            _save(parts, options, context, checkpoint_path, step, fingerprint, barrier=False)
            say(f"interrupted: checkpoint {checkpoint_path} written at step {step}; continue with --resume")
        raise
    with distributed.together(context):
        if main and val_set is None:
            parts.exported = export_model(run_dir, recipe.family, parts.params, _export_state(parts),
                                          recipe=recipe.name, step=step, val_psnr=None, val_ssim=None,
                                          ema=parts.ema is not None)
    exported = parts.exported
    if exported is None and export_path(run_dir).is_file():
        exported = export_path(run_dir)  # a resumed run whose best model predates the resume
    return TrainResult(run_dir, step, total, parts.best_psnr, parts.best_step, exported, len(train_set), start, bicubic,
                       str(context.device))


class _StopRequest:
    """Ctrl-C during an update is deferred to the end of that update (a checkpoint needs a whole step), and
    so is SIGTERM where a handler of the program's own (the CLI's) was there to unwind on it; a second signal
    interrupts at once. At the stop, the signal goes to that earlier handler, so the run ends as the signal
    would have ended it (the CLI names it and exits 130 / 143), only a step later and with a checkpoint."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def flag(self) -> bool:
        return self.received is not None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: object) -> None:
            if self.received is not None:
                self._hand_over(signum)
            self.received = signum

        # SIGTERM's default ends the process at once; only a handler of the program's own says it may unwind.
        numbers = [signal.SIGINT]
        if callable(signal.getsignal(signal.SIGTERM)):
            numbers.append(signal.SIGTERM)
        self._previous = {number: signal.signal(number, handler) for number in numbers}
        try:
            yield
        finally:
            for number, previous in self._previous.items():
                signal.signal(number, previous)

    def stop(self) -> NoReturn:
        """Raise, at the end of a step, what the signal received during it would have raised (KeyboardInterrupt)."""
        if self.received is not None:
            self._hand_over(self.received)
        raise KeyboardInterrupt

    def _hand_over(self, signum: int) -> NoReturn:
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, None)  # the CLI's handler records the signal, then raises KeyboardInterrupt
        raise KeyboardInterrupt

    def requested_everywhere(self, context: DistContext) -> bool:
        return distributed.any_true(self.flag, context) if context.distributed else self.flag


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- data -----------------------------------------------------------------------------------------------


def _length_and_decay(options: TrainOptions, train_set: TrainingSet,
                      say: Callable[[str], None]) -> tuple[int, int | None]:
    """(total updates, lr decay every N updates or None for milestones). A recipe counted in epochs
    (VDSR: one epoch = one pass over the non-overlapping patch grid) is converted once the data is known."""
    recipe = options.recipe
    if recipe.epochs is None and recipe.lr_every_epochs is None:
        assert options.steps is not None  # Recipe.__post_init__: steps or epochs
        return options.steps, recipe.lr_every
    grid = train_set.patch_grid_size(options.patch)
    per_epoch = updates_per_epoch(grid, options.batch)
    if options.steps is not None:
        total = options.steps
    else:
        assert recipe.epochs is not None  # Recipe.__post_init__: steps or epochs
        total = recipe.epochs * per_epoch
    lr_every = recipe.lr_every if recipe.lr_every_epochs is None else recipe.lr_every_epochs * per_epoch
    decay = f"lr x {recipe.lr_gamma:g} every {lr_every} updates" if lr_every is not None else "lr at milestones"
    say(f"{descriptor_for(recipe.family).label}: one epoch = {grid} patches = {per_epoch} updates; {decay}")
    return total, lr_every


def _prepare_data(options: TrainOptions, context: DistContext,
                  callbacks: TrainCallbacks) -> tuple[TrainingSet, TrainingSet | None]:
    kind = descriptor_for(options.recipe.family).input_kind
    cache_dir = cache_root() / "train"

    def progress(what: str) -> Callable[[int, int], None] | None:
        if not context.is_main or callbacks.progress is None:
            return None
        report = callbacks.progress
        return lambda done, total: report(what, done, total)

    def load() -> tuple[TrainingSet, TrainingSet | None]:
        # The validation set is found first: a missing one (offline, a typo) fails in a second, not after
        # the training images (DIV2K: 800) were decoded.
        val_folder = None if options.val is None else resolve_val_folder(
            options.val, options.scales, options.data_dir, progress("download validation set"))
        folder = _data_folder(options.data, progress("download DIV2K"))
        train_set = prepare_training_set(folder, options.scales, kind=kind, patch=options.patch, cache_dir=cache_dir,
                                         progress=progress("prepare training images"))
        val_set = None if val_folder is None else prepare_validation(val_folder, options.scales, kind, cache_dir,
                                                                     progress("prepare validation images"))
        return train_set, val_set

    # Rank 0 downloads/decodes; the others wait, then find everything in the cache. A failure on any
    # rank (a missing folder on rank 0, a cache another rank cannot read) stops every rank with it.
    result: tuple[TrainingSet, TrainingSet | None] | None = None
    with distributed.together(context):
        if context.is_main:
            result = load()
    with distributed.together(context):
        if not context.is_main:
            result = load()
    assert result is not None
    return result


def _data_folder(data: str, progress: Callable[[int, int], None] | None) -> Path:
    if data.lower() == "div2k":
        from sr_cli.data.div2k import DIV2K_TRAIN_HR, ensure_archive

        return ensure_archive(DIV2K_TRAIN_HR, progress=progress)
    return Path(data)


# --- building -------------------------------------------------------------------------------------------


def _state_copy(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _build_parts(options: TrainOptions, context: DistContext, lr_every: int | None, say: Callable[[str], None]) -> _Parts:
    recipe = options.recipe
    module, params = build_network(options)
    module.to(context.device)
    net: nn.Module = TrainNet(module)
    if context.distributed:
        net = DistributedDataParallel(
            net, device_ids=[context.device.index] if context.device.type == "cuda" else None,
            # a branch per scale (MDSR): the other scales' branches get no gradient in a step
            find_unused_parameters=len(descriptor_for(recipe.family).scales(params) or ()) > 1,
        )
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = _optimizer(options, trainable)
    schedule = StepSchedule(options.lr, recipe.lr_gamma, lr_every, recipe.lr_milestones)
    ema = _state_copy(module) if options.ema is not None else None
    parts = _Parts(module=module, params=params, net=net, optimizer=optimizer, schedule=schedule, ema=ema)
    fp16 = options.amp == "fp16"
    if fp16:
        parts.scaler = torch.amp.GradScaler("cuda")
    if recipe.gan:
        disc = VGGStyleDiscriminator().to(context.device)
        parts.discriminator_module = disc
        parts.discriminator = DistributedDataParallel(
            disc, device_ids=[context.device.index] if context.device.type == "cuda" else None
        ) if context.distributed else disc
        parts.optimizer_d = torch.optim.Adam(disc.parameters(), lr=options.lr, betas=recipe.betas, eps=recipe.eps)
        if fp16:
            parts.scaler_d = torch.amp.GradScaler("cuda")
        with distributed.together(context):  # every rank downloads or reads VGG19; one failing stops all
            parts.vgg = _perceptual_extractor(options, say).to(context.device)
    return parts


def _optimizer(options: TrainOptions, trainable: list[nn.Parameter]) -> torch.optim.Optimizer:
    recipe = options.recipe
    if recipe.optimizer == "adam":
        return torch.optim.Adam(trainable, lr=options.lr, betas=recipe.betas, eps=recipe.eps,
                                weight_decay=recipe.weight_decay)
    return torch.optim.SGD(trainable, lr=options.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def _perceptual_extractor(options: TrainOptions, say: Callable[[str], None]) -> VGG19Conv54:
    if options.random_vgg:
        say("WARNING: --random-vgg: the perceptual loss uses RANDOM VGG19 weights (test only; the result is "
            "not an ESRGAN)")
        return random_vgg19_conv54(options.seed)
    path = options.vgg_weights
    if path is None:
        path = download_to(VGG19_URL, cache_root() / "vgg" / VGG19_FILENAME, VGG19_SHA256, None)
    return load_vgg19_conv54(path)


# --- one update -----------------------------------------------------------------------------------------


def _autocast(options: TrainOptions, context: DistContext) -> contextlib.AbstractContextManager[Any]:
    if options.amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if options.amp == "bf16" else torch.float16
    return torch.autocast(device_type=context.device.type, dtype=dtype)


def _backward_and_step(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: Any,
                       clip: Callable[[], None] | None) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(optimizer)
            clip()
        scaler.step(optimizer)
        scaler.update()
        return
    loss.backward()
    if clip is not None:
        clip()
    optimizer.step()


def _update(parts: _Parts, options: TrainOptions, context: DistContext, step: int, lr_batch: Tensor,
            hr_batch: Tensor, scales: list[int]) -> tuple[dict[str, float], float, str]:
    """One optimizer update (two for ESRGAN stage 2). Returns (losses, lr, "" or what was not finite)."""
    recipe = options.recipe
    device = context.device
    lr_batch = lr_batch.to(device, non_blocking=True)
    hr_batch = hr_batch.to(device, non_blocking=True)
    scale = scales[0]  # one scale per step (VDSR's mixed scales all run at 1: the input is pre-upscaled)
    lr_now = parts.schedule.apply(parts.optimizer, step)
    if parts.optimizer_d is not None:
        parts.schedule.apply(parts.optimizer_d, step)
    parts.optimizer.zero_grad(set_to_none=True)
    with _autocast(options, context):
        output = parts.net(lr_batch, scale)
        losses: dict[str, Tensor] = {}
        if recipe.gan:
            assert parts.discriminator_module is not None and parts.vgg is not None
            disc = parts.discriminator_module
            disc.requires_grad_(False)
            real_logits = disc(hr_batch).detach()
            fake_logits = disc(output)
            losses["percep"] = perceptual_loss(parts.vgg, output, hr_batch)
            losses["adv"] = ragan_generator_loss(real_logits, fake_logits)
            losses["l1"] = pixel_loss("l1", output, hr_batch)
            total = (recipe.perceptual_weight * losses["percep"] + recipe.adversarial_weight * losses["adv"]
                     + recipe.pixel_weight * losses["l1"])
        else:
            losses[recipe.pixel_loss] = pixel_loss(recipe.pixel_loss, output, hr_batch)
            total = losses[recipe.pixel_loss]
    # One collective per step: any non-finite loss, on any rank, stops everyone before a bad update.
    finite = bool(torch.isfinite(total.detach()).item())
    if distributed.any_true(not finite, context):
        return {}, lr_now, ", ".join(f"{k}={float(v.detach()):g}" for k, v in losses.items()) or "nan"
    clip = _gradient_clip(parts, options, lr_now)
    _backward_and_step(total, parts.optimizer, parts.scaler, clip)
    values = {k: float(v.detach()) for k, v in losses.items()}
    if recipe.gan:
        values.update(_discriminator_update(parts, options, context, hr_batch, output.detach()))
    if parts.ema is not None and context.is_main:
        _ema_update(parts.ema, parts.module, float(options.ema))  # type: ignore[arg-type]
    return distributed.mean_over_ranks(values, context), lr_now, ""


def _gradient_clip(parts: _Parts, options: TrainOptions, lr_now: float) -> Callable[[], None] | None:
    if options.clip_theta <= 0:
        return None
    # VDSR Sec. 3.2 adjustable gradient clipping: each gradient element to [-theta / lr, theta / lr].
    bound = options.clip_theta / lr_now

    def clip() -> None:  # called after backward, when the gradients exist
        torch.nn.utils.clip_grad_value_([p for p in parts.module.parameters() if p.grad is not None], bound)

    return clip


def _discriminator_update(parts: _Parts, options: TrainOptions, context: DistContext, hr: Tensor,
                          fake: Tensor) -> dict[str, float]:
    assert parts.discriminator is not None and parts.optimizer_d is not None
    disc_module = parts.discriminator_module
    assert disc_module is not None
    disc_module.requires_grad_(True)
    parts.optimizer_d.zero_grad(set_to_none=True)
    with _autocast(options, context):
        # One forward over real and fake together, so DDP sees a single forward per backward. BatchNorm
        # therefore normalises over both halves, like a single-batch RaGAN critic.
        logits = parts.discriminator(torch.cat([hr, fake], dim=0))
        real_logits, fake_logits = logits.split([hr.shape[0], fake.shape[0]])
        loss_d = ragan_discriminator_loss(real_logits, fake_logits)
    if not bool(torch.isfinite(loss_d.detach()).item()):
        raise TrainingError(f"the discriminator loss is not finite ({float(loss_d):g}); lower --lr and --resume")
    _backward_and_step(loss_d, parts.optimizer_d, parts.scaler_d, None)
    return {"d": float(loss_d.detach()),
            "d_real": float(real_logits.detach().float().mean()), "d_fake": float(fake_logits.detach().float().mean())}


@torch.no_grad()
def _ema_update(ema: dict[str, Tensor], module: nn.Module, decay: float) -> None:
    for key, value in module.state_dict().items():
        if value.is_floating_point():
            ema[key].mul_(decay).add_(value, alpha=1.0 - decay)
        else:
            ema[key].copy_(value)


# --- after an update: log, validate, save ---------------------------------------------------------------


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On --resume, drop records of steps after the checkpoint (they will be trained again)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    write_bytes_atomic(path, "".join(line + "\n" for line in kept).encode("utf-8"), overwrite=True)


def _after_update(parts: _Parts, options: TrainOptions, callbacks: TrainCallbacks, step: int, total: int,
                  losses: dict[str, float], lr_now: float, start: int, clock: float, metrics_path: Path) -> None:
    elapsed = time.monotonic() - clock
    rate = (step - start) / elapsed if elapsed > 0 else 0.0
    if step % options.log_every == 0 or step == total:
        _append_jsonl(metrics_path, {"step": step, "lr": lr_now, "time": round(time.time(), 3),
                                     **{f"loss_{k}": v for k, v in losses.items()}})
    if callbacks.step is not None:
        eta = (total - step) / rate if rate > 0 else math.inf
        callbacks.step(StepInfo(step, total, losses, lr_now, rate, eta))


def _export_state(parts: _Parts) -> dict[str, Tensor]:
    return parts.ema if parts.ema is not None else _state_copy(parts.module)


def _validate_and_export(parts: _Parts, options: TrainOptions, context: DistContext, val_set: TrainingSet,
                         bicubic: ValResult, step: int, callbacks: TrainCallbacks, metrics_path: Path) -> None:
    evaluated = parts.module
    if parts.ema is not None:
        evaluated = parts.extra.setdefault("ema_module", copy.deepcopy(parts.module))
        evaluated.load_state_dict(parts.ema, strict=True)
    view = TrainNet(evaluated)
    was_training = evaluated.training
    evaluated.eval()
    try:
        with _autocast(options, context):
            result = validate(view, val_set, context.device)
    finally:
        evaluated.train(was_training)
    best = parts.best_psnr is None or result.psnr > parts.best_psnr
    record: dict[str, Any] = {"step": step, "val_psnr": result.psnr, "val_ssim": result.ssim,
                              "bicubic_psnr": bicubic.psnr}
    if len(result.per_scale) > 1:
        record.update({f"val_psnr_x{s}": v[0] for s, v in result.per_scale.items()})
    _append_jsonl(metrics_path, record)
    if best:
        parts.best_psnr, parts.best_step = result.psnr, step
        parts.exported = export_model(options.out, options.recipe.family, parts.params, _export_state(parts),
                                      recipe=options.model, step=step, val_psnr=result.psnr, val_ssim=result.ssim,
                                      ema=parts.ema is not None)
    if callbacks.validated is not None:
        callbacks.validated(ValInfo(step, result, best, bicubic))


def _run_record(options: TrainOptions, fingerprint: str) -> dict[str, Any]:
    return {"model": options.model, "scales": list(options.scales), "batch": options.batch, "patch": options.patch,
            "blocks": options.blocks, "features": options.features, "seed": options.seed,
            "ema": options.ema, "data_fingerprint": fingerprint}


def _save(parts: _Parts, options: TrainOptions, context: DistContext, path: Path, step: int, fingerprint: str,
          *, barrier: bool = True) -> None:
    """Rank 0 writes the checkpoint; with ``barrier`` every rank waits for it and stops with its error."""
    if not barrier:  # after Ctrl-C: the other ranks are stopping too, no collective may be waited for
        _write_checkpoint(parts, options, context, path, step, fingerprint)
        return
    with distributed.together(context):
        _write_checkpoint(parts, options, context, path, step, fingerprint)


def _write_checkpoint(parts: _Parts, options: TrainOptions, context: DistContext, path: Path, step: int,
                      fingerprint: str) -> None:
    if context.is_main:
        model_state = parts.module.state_dict()
        if not all_finite(model_state):
            kept = f"step {parts.last_saved_step}" if parts.last_saved_step is not None else "none written yet"
            raise TrainingError(f"step {step}: the weights are not finite; {path} was not overwritten ({kept}); "
                                f"lower --lr and --resume")
        payload: dict[str, Any] = {
            "step": step,
            "family": options.recipe.family,
            "hyperparameters": params_to_json(parts.params),
            "run": _run_record(options, fingerprint),
            "model": model_state,
            "optimizer": parts.optimizer.state_dict(),
            "schedule": parts.schedule.state(),
            "ema": parts.ema,
            "discriminator": None if parts.discriminator_module is None else parts.discriminator_module.state_dict(),
            "optimizer_d": None if parts.optimizer_d is None else parts.optimizer_d.state_dict(),
            "scaler": None if parts.scaler is None else parts.scaler.state_dict(),
            "scaler_d": None if parts.scaler_d is None else parts.scaler_d.state_dict(),
            "rng": rng_states(),
            "sampler": {"seed": options.seed, "next_step": step, "data_fingerprint": fingerprint},
            "best": {"psnr": parts.best_psnr, "step": parts.best_step},
            "export_name": export_path(options.out).name,  # a renamed run folder finds its export again
        }
        save_checkpoint(path, payload)
    parts.last_saved_step = step


def _restore(parts: _Parts, options: TrainOptions, path: Path, fingerprint: str) -> int:
    payload = load_checkpoint_payload(path)
    saved = payload["run"]
    current = _run_record(options, fingerprint)
    changed = [("the training data changed (names, sizes or dates of its files)" if key == "data_fingerprint"
                else f"--{key.replace('_', '-')} was {saved.get(key)!r}, now {current[key]!r}")
               for key in _RUN_DEFINING if saved.get(key) != current[key]]
    if changed:  # every difference at once, not one per attempt
        raise TrainingError(f"{path}: cannot resume: {'; '.join(changed)}; use the run's options or start a new --out")
    parts.extra["export_name"] = payload.get("export_name")
    parts.module.load_state_dict(payload["model"], strict=True)
    parts.optimizer.load_state_dict(payload["optimizer"])
    if parts.ema is not None:
        parts.ema = {k: v.to(parts.module.state_dict()[k].device) for k, v in payload["ema"].items()}
    if parts.discriminator_module is not None:
        parts.discriminator_module.load_state_dict(payload["discriminator"], strict=True)
        assert parts.optimizer_d is not None
        parts.optimizer_d.load_state_dict(payload["optimizer_d"])
    if parts.scaler is not None and payload["scaler"] is not None:
        parts.scaler.load_state_dict(payload["scaler"])
    if parts.scaler_d is not None and payload["scaler_d"] is not None:
        parts.scaler_d.load_state_dict(payload["scaler_d"])
    restore_rng_states(payload["rng"])
    parts.best_psnr, parts.best_step = payload["best"]["psnr"], payload["best"]["step"]
    parts.last_saved_step = int(payload["step"])
    if int(payload["sampler"]["next_step"]) != int(payload["step"]):
        raise TrainingError(f"{path}: inconsistent sampler state; start a new --out")
    return int(payload["step"])

"""Recipes, option merging (flags > TOML > recipe) and the lr schedules."""
from __future__ import annotations

import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from sr_cli.errors import UsageError
from sr_cli.train.losses import pixel_loss
from sr_cli.train.options import OPTION_KEYS, TrainOverrides, resolve_options
from sr_cli.train.recipes import RECIPES, Recipe
from sr_cli.train.schedule import StepSchedule


def test_recipe_defaults_follow_the_papers() -> None:
    edsr = resolve_options(TrainOverrides(model="edsr", scale=2, data="d", out=Path("o")))
    assert (edsr.patch, edsr.batch, edsr.lr, edsr.blocks, edsr.features) == (48, 16, 1e-4, 32, 256)
    assert RECIPES["edsr"].res_scale == 0.1 and RECIPES["edsr"].betas == (0.9, 0.999) and RECIPES["edsr"].eps == 1e-8
    assert RECIPES["edsr"].lr_every == 200_000 and RECIPES["edsr"].lr_gamma == 0.5
    mdsr = resolve_options(TrainOverrides(model="mdsr", data="d", out=Path("o")))
    assert mdsr.scales == (2, 3, 4) and mdsr.blocks == 80
    vdsr = resolve_options(TrainOverrides(model="vdsr", data="d", out=Path("o")))
    assert (vdsr.patch, vdsr.batch, vdsr.lr, vdsr.clip_theta, vdsr.scales) == (41, 64, 0.1, 0.4, (2, 3, 4))
    assert RECIPES["vdsr"].optimizer == "sgd" and RECIPES["vdsr"].momentum == 0.9 and RECIPES["vdsr"].weight_decay == 1e-4
    assert RECIPES["vdsr"].pixel_loss == "l2" and RECIPES["edsr"].pixel_loss == "l1"
    psnr = resolve_options(TrainOverrides(model="esrgan-psnr", scale=4, data="d", out=Path("o")))
    assert (psnr.patch * 4, psnr.lr, psnr.blocks) == (128, 2e-4, 23)
    gan = resolve_options(TrainOverrides(model="esrgan", scale=4, data="d", out=Path("o"), init="stage1.safetensors"))
    assert gan.lr == 1e-4 and RECIPES["esrgan"].lr_milestones == (50_000, 100_000, 200_000, 300_000)
    r = RECIPES["esrgan"]
    assert (r.perceptual_weight, r.adversarial_weight, r.pixel_weight) == (1.0, 5e-3, 1e-2)


def test_vdsr_l2_is_half_the_per_sample_sum_of_squares_averaged_over_the_batch() -> None:
    # VDSR Sec. 3.1: (1/2) ||r - f(x)||^2 per sample; unlike mse it does not divide by the pixels of a sample.
    output = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3) / 10
    target = torch.zeros_like(output)
    per_sample = [sum(float(v) ** 2 for v in sample.flatten()) / 2 for sample in output]
    assert pixel_loss("l2", output, target).item() == pytest.approx(sum(per_sample) / len(per_sample))
    assert pixel_loss("l2", output, target).item() == pytest.approx(3 * pixel_loss("mse", output, target).item())


def test_schedules() -> None:
    edsr = StepSchedule(1e-4, 0.5, 200_000, ())
    assert edsr.lr_at(0) == 1e-4 and edsr.lr_at(199_999) == 1e-4 and edsr.lr_at(200_000) == 5e-5
    assert edsr.lr_at(400_000) == 2.5e-5
    gan = StepSchedule(1e-4, 0.5, None, (50_000, 100_000, 200_000, 300_000))
    assert [gan.lr_at(t) for t in (49_999, 50_000, 100_000, 250_000, 300_000)] == [1e-4, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6]


def test_flags_win_over_toml_and_toml_over_recipe(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[train]\nmodel = "edsr-baseline"\nscale = 2\ndata = "hr"\nout = "runs/a"\nbatch = 8\n'
                      'lr = 2\nval-every = 7\n')
    options = resolve_options(TrainOverrides(batch=32), config)
    assert options.batch == 32  # flag
    assert options.lr == 2.0 and options.val_every == 7 and options.data == "hr"  # file (int -> float accepted)
    assert options.patch == 48  # recipe


def test_bad_toml_and_flags_are_usage_errors(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('model = "edsr"\nbatchsize = 3\n')
    with pytest.raises(UsageError, match="bad.toml: unknown option 'batchsize'"):
        resolve_options(TrainOverrides(), config)
    config.write_text('model = "edsr"\nbatch = "16"\n')
    with pytest.raises(UsageError, match="batch must be a int"):
        resolve_options(TrainOverrides(), config)
    with pytest.raises(UsageError, match="--scale is required"):
        resolve_options(TrainOverrides(model="edsr", data="d", out=Path("o")))
    with pytest.raises(UsageError, match="not --scale 3"):
        resolve_options(TrainOverrides(model="esrgan-psnr", scale=3, data="d", out=Path("o")))
    with pytest.raises(UsageError, match="--init"):
        resolve_options(TrainOverrides(model="esrgan", scale=4, data="d", out=Path("o")))
    with pytest.raises(UsageError, match="128x128"):
        resolve_options(TrainOverrides(model="esrgan", scale=4, data="d", out=Path("o"), init="x", patch=48))
    with pytest.raises(UsageError, match="no training recipe"):
        resolve_options(TrainOverrides(model="srgan", scale=4, data="d", out=Path("o")))


# One value of the right type for every option, none of them the recipe default.
_EVERY_OPTION: dict[str, Any] = dict(model="edsr-baseline", scale=2, data="hr", out=Path("runs/a"), val="set14",
                     data_dir=Path("benchmarks"), steps=7, batch=3,
                     patch=12, lr=0.5, init="start.safetensors", resume=True, amp="bf16", ema=0.99, seed=3,
                     workers=1, val_every=5, save_every=6, log_every=2, device="cpu", blocks=2, features=8,
                     clip_theta=0.25, vgg_weights=Path("vgg.pth"), random_vgg=False)


def _toml_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return f'"{value}"'


def test_every_option_reads_the_same_from_a_flag_and_from_the_file(tmp_path: Path) -> None:
    assert set(_EVERY_OPTION) == set(OPTION_KEYS)  # the table above covers every field
    from_flags = resolve_options(TrainOverrides(**_EVERY_OPTION))
    config = tmp_path / "all.toml"
    config.write_text("".join(f"{key.replace('_', '-')} = {_toml_literal(value)}\n" for key, value in _EVERY_OPTION.items()))
    assert resolve_options(TrainOverrides(), config) == from_flags
    for key, value in _EVERY_OPTION.items():
        assert getattr(from_flags, key if key != "scale" else "scales") == (value if key != "scale" else (value,))


def test_the_cli_declares_exactly_the_overrides_fields() -> None:
    import inspect

    from sr_cli.cli.train_cmd import train_command

    reporting = {"config", "json_out", "quiet", "verbose"}  # how this invocation reports, not options of the run
    assert set(inspect.signature(train_command).parameters) - reporting == set(OPTION_KEYS)


def test_wrong_types_name_the_field(tmp_path: Path) -> None:
    config = tmp_path / "typed.toml"
    config.write_text('model = "edsr"\nout = 5\n')
    with pytest.raises(UsageError, match="typed.toml: out must be a str, got 5"):
        resolve_options(TrainOverrides(), config)
    config.write_text('model = "edsr"\nresume = 1\n')
    with pytest.raises(UsageError, match="resume must be a bool"):
        resolve_options(TrainOverrides(), config)
    config.write_text('model = "edsr"\nsteps = true\n')  # TOML booleans are not numbers
    with pytest.raises(UsageError, match="steps must be a int"):
        resolve_options(TrainOverrides(), config)
    with pytest.raises(TypeError, match="out must be Path"):
        TrainOverrides(out="runs/x")  # type: ignore[arg-type]


def test_no_zero_stands_for_a_default() -> None:
    vdsr = resolve_options(TrainOverrides(model="vdsr", data="d", out=Path("o")))
    assert vdsr.steps is None and RECIPES["vdsr"].epochs == 80  # counted from the data (loop._length_and_decay)
    with pytest.raises(UsageError, match="--steps must be at least 1, got 0"):
        resolve_options(TrainOverrides(model="vdsr", data="d", out=Path("o"), steps=0))
    assert RECIPES["esrgan"].patch is None and RECIPES["esrgan"].hr_patch == 128
    assert RECIPES["esrgan"].lr_every is None and RECIPES["vdsr"].lr_every is None
    with pytest.raises(ValueError, match="exactly one of patch and hr_patch"):
        replace(RECIPES["esrgan"], patch=32)
    with pytest.raises(ValueError, match="exactly one of steps and epochs"):
        replace(RECIPES["edsr"], epochs=3)
    with pytest.raises(ValueError, match="exactly one of lr_every"):
        replace(RECIPES["edsr"], lr_milestones=(10,))
    with pytest.raises(ValueError, match="every >= 1"):
        StepSchedule(1e-4, 0.5, 0, ())


def test_recipes_derived_with_replace_keep_the_shared_values() -> None:
    # edsr, mdsr-baseline and mdsr are edsr-baseline with a few fields changed; esrgan is esrgan-psnr's stage 2.
    base = RECIPES["edsr-baseline"]
    for name, changed in (("edsr", {"name", "blocks", "features", "res_scale", "source"}),
                          ("mdsr-baseline", {"name", "family", "multi_scale", "source"}),
                          ("mdsr", {"name", "family", "multi_scale", "blocks", "source"})):
        differ = {f.name for f in fields(Recipe) if getattr(RECIPES[name], f.name) != getattr(base, f.name)}
        assert differ == changed, name


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "modèle = 1\n".encode("latin-1")])
def test_cause13_a_config_that_is_not_text_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    """Issue 11: `sr train --config photo.png` died with a UnicodeDecodeError traceback."""
    config = tmp_path / "photo.png"
    config.write_bytes(content)
    with pytest.raises(UsageError, match=r"--config .*photo\.png: not a text file"):
        resolve_options(TrainOverrides(), config)


def test_cause13_a_config_that_is_a_folder_or_a_fifo_is_refused_without_reading(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="a folder"):
        resolve_options(TrainOverrides(), tmp_path)
    os.mkfifo(tmp_path / "pipe.toml")  # reading it would block forever
    with pytest.raises(UsageError, match="not a regular file"):
        resolve_options(TrainOverrides(), tmp_path / "pipe.toml")


@pytest.mark.parametrize("model", ["vdsr", "edsr-baseline"])
def test_cause16_steps_0_is_refused_for_every_recipe(model: str) -> None:
    """Issue 11: --steps 0 silently meant the recipe default for VDSR and was refused for the others."""
    flags = TrainOverrides(model=model, scale=None if model == "vdsr" else 2, data="hr", out=Path("runs/a"), steps=0)
    with pytest.raises(UsageError, match="--steps must be at least 1, got 0"):
        resolve_options(flags)
    # left out: the recipe's own length (VDSR: None, its epochs counted once the data is known)
    assert resolve_options(replace(flags, steps=None)).steps == (None if model == "vdsr" else 300_000)

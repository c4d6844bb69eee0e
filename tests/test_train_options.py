"""Recipes, option merging (flags > TOML > recipe) and the lr schedules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sr_cli.errors import UsageError
from sr_cli.train.options import resolve_options
from sr_cli.train.recipes import RECIPES
from sr_cli.train.schedule import StepSchedule


def test_recipe_defaults_follow_the_papers() -> None:
    edsr = resolve_options(dict(model="edsr", scale=2, data="d", out="o"))
    assert (edsr.patch, edsr.batch, edsr.lr, edsr.blocks, edsr.features) == (48, 16, 1e-4, 32, 256)
    assert RECIPES["edsr"].res_scale == 0.1 and RECIPES["edsr"].betas == (0.9, 0.999) and RECIPES["edsr"].eps == 1e-8
    assert RECIPES["edsr"].lr_every == 200_000 and RECIPES["edsr"].lr_gamma == 0.5
    mdsr = resolve_options(dict(model="mdsr", data="d", out="o"))
    assert mdsr.scales == (2, 3, 4) and mdsr.blocks == 80
    vdsr = resolve_options(dict(model="vdsr", data="d", out="o"))
    assert (vdsr.patch, vdsr.batch, vdsr.lr, vdsr.clip_theta, vdsr.scales) == (41, 64, 0.1, 0.4, (2, 3, 4))
    assert RECIPES["vdsr"].optimizer == "sgd" and RECIPES["vdsr"].momentum == 0.9 and RECIPES["vdsr"].weight_decay == 1e-4
    psnr = resolve_options(dict(model="esrgan-psnr", scale=4, data="d", out="o"))
    assert (psnr.patch * 4, psnr.lr, psnr.blocks) == (128, 2e-4, 23)
    gan = resolve_options(dict(model="esrgan", scale=4, data="d", out="o", init="stage1.safetensors"))
    assert gan.lr == 1e-4 and RECIPES["esrgan"].lr_milestones == (50_000, 100_000, 200_000, 300_000)
    r = RECIPES["esrgan"]
    assert (r.perceptual_weight, r.adversarial_weight, r.pixel_weight) == (1.0, 5e-3, 1e-2)


def test_schedules() -> None:
    edsr = StepSchedule(1e-4, 0.5, 200_000, ())
    assert edsr.lr_at(0) == 1e-4 and edsr.lr_at(199_999) == 1e-4 and edsr.lr_at(200_000) == 5e-5
    assert edsr.lr_at(400_000) == 2.5e-5
    gan = StepSchedule(1e-4, 0.5, 0, (50_000, 100_000, 200_000, 300_000))
    assert [gan.lr_at(t) for t in (49_999, 50_000, 100_000, 250_000, 300_000)] == [1e-4, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6]


def test_flags_win_over_toml_and_toml_over_recipe(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[train]\nmodel = "edsr-baseline"\nscale = 2\ndata = "hr"\nout = "runs/a"\nbatch = 8\n'
                      'lr = 2\nval-every = 7\n')
    options = resolve_options(dict(batch=32, data=None), config)
    assert options.batch == 32  # flag
    assert options.lr == 2.0 and options.val_every == 7 and options.data == "hr"  # file (int -> float accepted)
    assert options.patch == 48  # recipe


def test_bad_toml_and_flags_are_usage_errors(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('model = "edsr"\nbatchsize = 3\n')
    with pytest.raises(UsageError, match="bad.toml: unknown option 'batchsize'"):
        resolve_options({}, config)
    config.write_text('model = "edsr"\nbatch = "16"\n')
    with pytest.raises(UsageError, match="batch must be a int"):
        resolve_options({}, config)
    with pytest.raises(UsageError, match="--scale is required"):
        resolve_options(dict(model="edsr", data="d", out="o"))
    with pytest.raises(UsageError, match="not --scale 3"):
        resolve_options(dict(model="esrgan-psnr", scale=3, data="d", out="o"))
    with pytest.raises(UsageError, match="--init"):
        resolve_options(dict(model="esrgan", scale=4, data="d", out="o"))
    with pytest.raises(UsageError, match="128x128"):
        resolve_options(dict(model="esrgan", scale=4, data="d", out="o", init="x", patch=48))
    with pytest.raises(UsageError, match="no training recipe"):
        resolve_options(dict(model="srgan", scale=4, data="d", out="o"))


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "modèle = 1\n".encode("latin-1")])
def test_cause13_a_config_that_is_not_text_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    """Issue 11: `sr train --config photo.png` died with a UnicodeDecodeError traceback."""
    config = tmp_path / "photo.png"
    config.write_bytes(content)
    with pytest.raises(UsageError, match=r"--config .*photo\.png: not a text file"):
        resolve_options({}, config)


def test_cause13_a_config_that_is_a_folder_or_a_fifo_is_refused_without_reading(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="a folder"):
        resolve_options({}, tmp_path)
    os.mkfifo(tmp_path / "pipe.toml")  # reading it would block forever
    with pytest.raises(UsageError, match="not a regular file"):
        resolve_options({}, tmp_path / "pipe.toml")


@pytest.mark.parametrize("model", ["vdsr", "edsr-baseline"])
def test_cause16_steps_0_is_refused_for_every_recipe(model: str) -> None:
    """Issue 11: --steps 0 silently meant the recipe default for VDSR and was refused for the others."""
    flags: dict[str, object] = dict(model=model, data="hr", out="runs/a", steps=0)
    if model != "vdsr":
        flags["scale"] = 2
    with pytest.raises(UsageError, match="--steps must be at least 1, got 0"):
        resolve_options(flags)
    flags.pop("steps")
    assert resolve_options(flags).steps == (0 if model == "vdsr" else 300_000)  # left out: the recipe's

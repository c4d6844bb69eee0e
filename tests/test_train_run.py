"""Whole runs on tiny models: exact resume (also after Ctrl-C), NaN stop, MDSR branch isolation,
ESRGAN stage 2, the CLI (export + metrics + TOML)."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from train_support import tiny_options, write_images

from sr_cli.errors import TrainingError, UsageError
from sr_cli.train import loop
from sr_cli.train.loop import StepInfo, TrainCallbacks, train
from sr_cli.train.options import TrainOverrides, resolve_options
from sr_cli.weights.safetensors_io import read_safetensors, save_safetensors, sr_metadata


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images(tmp_path_factory.mktemp("hr"), count=3, size=(40, 48))


def test_sigterm_mid_update_finishes_the_step_writes_a_checkpoint_and_ends_as_sigterm(
        images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM (what `kill`, systemd or a cluster scheduler send) during an update: like Ctrl-C, the update
    finishes, a checkpoint of that step is written, then the CLI's own SIGTERM handler gets the signal (to
    print "terminated" and exit 143). It used to interrupt the update: no checkpoint, the steps since the
    last --save-every lost."""
    received: list[int] = []

    def cli_handler(number: int, _frame: object) -> None:  # what sr_cli.cli.app installs
        received.append(number)
        raise KeyboardInterrupt

    original_update = loop._update

    def update_with_sigterm(*args: Any, **kwargs: Any) -> Any:
        if args[3] == 1:  # the second update (step index 1)
            os.kill(os.getpid(), signal.SIGTERM)
        return original_update(*args, **kwargs)

    monkeypatch.setattr(loop, "_update", update_with_sigterm)
    previous = signal.signal(signal.SIGTERM, cli_handler)
    notes: list[str] = []
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tiny_options(images, tmp_path / "run", steps=6, save_every=100), TrainCallbacks(note=notes.append))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == [signal.SIGTERM]
    assert _load(tmp_path / "run" / "last.pt")["step"] == 2
    assert any("interrupted" in m and "step 2" in m and "--resume" in m for m in notes)


def test_resume_after_ctrl_c_is_bit_identical(images: Path, tmp_path: Path) -> None:
    n, k = 6, 3
    straight = tiny_options(images, tmp_path / "straight", steps=n, ema=0.9)
    train(straight)

    def interrupt_at_k(info: StepInfo) -> None:
        if info.step == k:
            raise KeyboardInterrupt

    notes: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        train(tiny_options(images, tmp_path / "split", steps=n, ema=0.9),
              TrainCallbacks(step=interrupt_at_k, note=notes.append))
    assert _load(tmp_path / "split" / "last.pt")["step"] == k
    assert any("interrupted" in m and f"step {k}" in m for m in notes)
    train(tiny_options(images, tmp_path / "split", steps=n, ema=0.9, resume=True))
    a, b = _load(tmp_path / "straight" / "last.pt"), _load(tmp_path / "split" / "last.pt")
    assert a["step"] == b["step"] == n
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][pid]["exp_avg_sq"])
    # metrics.jsonl: one loss record per step, no duplicates from the interrupted part.
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, n + 1))
    with pytest.raises(TrainingError, match="--batch was 4, now 8; --seed was 0, now 1;"):  # all, not the first
        train(tiny_options(images, tmp_path / "split", steps=n + 2, batch=8, seed=1, ema=0.9, resume=True))
    with pytest.raises(UsageError, match="pass --resume"):
        train(tiny_options(images, tmp_path / "split", steps=n))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(images: Path, tmp_path: Path) -> None:
    options = tiny_options(images, tmp_path / "nan", steps=20, lr=1e30, save_every=1)
    with pytest.raises(TrainingError, match="not finite") as caught:
        train(options)
    payload = _load(tmp_path / "nan" / "last.pt")
    assert f"(step {payload['step']}) is kept" in str(caught.value) or "weights are not finite" in str(caught.value)
    assert payload["step"] < 20
    assert all(torch.isfinite(v).all() for v in payload["model"].values())


def test_loader_workers_do_not_change_the_run(images: Path, tmp_path: Path) -> None:
    train(tiny_options(images, tmp_path / "w0", steps=3, workers=0))
    train(tiny_options(images, tmp_path / "w2", steps=3, workers=2))
    a, b = _load(tmp_path / "w0" / "last.pt")["model"], _load(tmp_path / "w2" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_vdsr_clips_each_gradient_to_theta_over_lr(images: Path, tmp_path: Path) -> None:
    theta = 1e-5
    options = tiny_options(images, tmp_path / "vdsr", model="vdsr", scale=None, blocks=3, features=8, patch=10,
                           steps=1, clip_theta=theta, save_every=1)
    from sr_cli.train.network import build_network

    torch.manual_seed(options.seed)
    before = build_network(options)[0].state_dict()
    train(options)
    after = _load(tmp_path / "vdsr" / "last.pt")["model"]
    lr, decay = options.lr, 1e-4
    # First SGD step: w' = w - lr * (clip(g, theta/lr) + decay * w), so |w' - w + lr*decay*w| <= theta.
    steps = torch.cat([(after[k] - before[k] + lr * decay * before[k]).abs().flatten() for k in before])
    # float32 rounding of w (|w| < 1) is ~1e-8: 1% of theta covers it.
    assert theta * 0.99 <= float(steps.max()) <= theta * 1.01  # clipping was active and bounded every element


def test_amp_needs_cuda(images: Path, tmp_path: Path) -> None:
    from sr_cli.errors import DeviceError

    with pytest.raises(DeviceError, match="--amp bf16 needs a CUDA device"):
        train(tiny_options(images, tmp_path / "amp", amp="bf16"))


def test_mdsr_updates_only_the_drawn_scale_branch(images: Path, tmp_path: Path) -> None:
    options = tiny_options(images, tmp_path / "mdsr", model="mdsr-baseline", scale=None, steps=1, patch=8,
                           save_every=1)
    torch.manual_seed(options.seed)  # the run seeds itself the same way: rebuild its initial weights
    from sr_cli.train.network import build_network

    initial = {k: v.clone() for k, v in build_network(options)[0].state_dict().items()}
    train(options)
    after = _load(tmp_path / "mdsr" / "last.pt")["model"]
    changed = {k for k in after if not torch.equal(after[k], initial[k])}
    branches = {i for i in range(3) if any(k.startswith((f"pre_process.{i}.", f"upsample.{i}.")) for k in changed)}
    assert len(branches) == 1  # one scale per batch
    (i,) = branches
    assert all(k.startswith((f"pre_process.{i}.", f"upsample.{i}.")) or k.startswith(("head.", "body.", "tail."))
               for k in changed)
    assert {k for k in initial if k.startswith(f"upsample.{i}.")} <= changed
    assert any(k.startswith("body.") for k in changed) and not any("mean" in k for k in changed)


@pytest.mark.slow
def test_esrgan_stage2_trains_both_networks(tmp_path: Path) -> None:
    from sr_cli.archs.rrdb import RRDBNet, RRDBParams

    data = write_images(tmp_path / "hr", count=2, size=(136, 136))
    stage1 = tmp_path / "stage1.safetensors"
    params = RRDBParams(num_feat=8, num_block=1, num_grow_ch=32, scale=4)
    save_safetensors(stage1, RRDBNet(params).state_dict(), sr_metadata("rrdb", params))
    notes: list[str] = []
    out = tmp_path / "gan"
    options = resolve_options(TrainOverrides(model="esrgan", scale=4, data=str(data), out=out, val="none",
                                   steps=2, batch=1, blocks=1, features=8, init=str(stage1), random_vgg=True,
                                   save_every=1, log_every=1, device="cpu"))
    after_first: dict[str, Any] = {}

    def keep_step_one(info: StepInfo) -> None:
        if info.step == 2:  # the checkpoint on disk is still the one written after step 1
            after_first.update(_load(out / "last.pt"))

    train(options, TrainCallbacks(note=notes.append, step=keep_step_one))
    assert any("RANDOM VGG19" in m for m in notes) and any("initialised from" in m for m in notes)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        for key in ("loss_percep", "loss_adv", "loss_l1", "loss_d"):
            assert np.isfinite(record[key]), record
    final = _load(out / "last.pt")
    assert after_first["step"] == 1 and final["step"] == 2
    stage1_state, _ = read_safetensors(stage1)
    assert any(not torch.equal(after_first["model"][k], stage1_state[k]) for k in stage1_state)
    for network in ("model", "discriminator"):
        changed = [k for k in final[network] if final[network][k].is_floating_point()
                   and not torch.equal(final[network][k], after_first[network][k])]
        assert changed, f"{network} did not change in step 2"
    assert any(k.startswith("classifier") for k in changed) and any(k.startswith("features.0.") for k in changed)


def test_cli_exports_a_loadable_model_with_metadata(images: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sr_cli.cli.app import app

    config = tmp_path / "run.toml"
    config.write_text('model = "edsr-baseline"\nscale = 2\nblocks = 2\nfeatures = 8\nbatch = 2\npatch = 8\n'
                      'steps = 3\nval-every = 3\nlog-every = 1\n')
    out = tmp_path / "runs" / "cli"
    val = write_images(tmp_path / "val", count=2, size=(24, 24), seed=5)
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--data", str(images), "--val", str(val),
                                      "--out", str(out), "--steps", "4", "--val-every", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss_l1" in r] == [1, 2, 3, 4]  # --steps 4 beat the file's 3
    assert [r["step"] for r in records if "val_psnr" in r] == [2, 4]
    exported = out / "cli.safetensors"  # named after the run folder
    assert result.stdout == f"{exported}\n"
    tensors, metadata = read_safetensors(exported)
    assert metadata["sr.layout"] == "sr-safetensors" and metadata["sr.family"] == "edsr"
    hyper = json.loads(metadata["sr.hyperparameters"])
    assert (hyper["n_resblocks"], hyper["n_feats"], hyper["scale"]) == (2, 8, 2)
    best = max((r for r in records if "val_psnr" in r), key=lambda r: r["val_psnr"])
    assert metadata["sr.step"] == str(best["step"])
    from sr_cli.archs.edsr import EDSR, EDSRParams

    EDSR(EDSRParams(**hyper)).load_state_dict(tensors, strict=True)
    from sr_cli import zoo  # what `sr upscale --weights` and `sr eval --model FILE` use

    loaded = zoo.load(exported, 2)
    assert loaded.srnet.scale == 2 and loaded.srnet(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)

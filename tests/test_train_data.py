"""Training data: cached decode + MATLAB downscale, aligned patches, a stream that depends only on
(seed, step, slot) so resume and torchrun sharding see the same samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_cli import resize
from sr_cli.data.training import PatchDataset, SamplePlan, prepare_training_set
from sr_cli.errors import DatasetError


def _ramp_image(folder: Path, height: int = 60, width: int = 72) -> Path:
    """HR(i, j) = i + 2j (uint8-exact): a bicubic downscale of a linear ramp is the mean of each block."""
    folder.mkdir(parents=True, exist_ok=True)
    i, j = np.mgrid[0:height, 0:width]
    ramp = (i + 2 * j).astype(np.uint8)
    Image.fromarray(np.stack([ramp, ramp // 2, 255 - ramp], axis=-1)).save(folder / "ramp.png")
    return folder


def test_lr_is_the_matlab_downscale_and_is_cached(tmp_path: Path) -> None:
    folder = _ramp_image(tmp_path / "hr")
    data = prepare_training_set(folder, (2, 3), kind="rgb", patch=8, cache_dir=tmp_path / "cache")
    hr = np.asarray(Image.open(folder / "ramp.png"))
    for s in (2, 3):
        lr = np.load(data.images[0].inputs[s])
        assert np.array_equal(lr, resize.imresize(resize.modcrop(hr, s), 1.0 / s))
        assert f"lr_x{s}_" in data.images[0].inputs[s].name  # the key holds scale + downscaler hash
    mtime = data.images[0].inputs[2].stat().st_mtime_ns
    again = prepare_training_set(folder, (2, 3), kind="rgb", patch=8, cache_dir=tmp_path / "cache")
    assert again.images[0].inputs[2].stat().st_mtime_ns == mtime and again.fingerprint == data.fingerprint


def test_patches_are_aligned_after_augmentation(tmp_path: Path) -> None:
    folder = _ramp_image(tmp_path / "hr")
    s, p = 2, 6
    data = prepare_training_set(folder, (s,), kind="rgb", patch=p, cache_dir=tmp_path / "cache")
    dataset = PatchDataset(data, patch=p, seed=0)
    plan = SamplePlan(n_images=1, batch=4, seed=0, scales=(s,), per_sample_scale=False)
    checked = 0
    for step in range(12):
        for key in plan.keys(step):
            lr, hr, scale = dataset[key]
            assert scale == s and lr.shape == (3, p, p) and hr.shape == (3, p * s, p * s)
            blocks = hr.reshape(3, p, s, p, s).mean(dim=(2, 4))
            # Away from the image border (mirror padding bends the ramp) every LR pixel is its block's mean.
            if (lr[0] * 255).min() >= 6 and (lr[0] * 255).max() <= 60 + 2 * 72 - 12:
                assert float((lr - blocks).abs().max()) <= 1.0 / 255 + 1e-6
                checked += 1
    assert checked > 0


def test_stream_is_a_function_of_seed_and_step_and_shards_by_rank() -> None:
    plan = SamplePlan(n_images=5, batch=4, seed=3, scales=(2, 3, 4), per_sample_scale=False)
    for step in range(10):
        whole = plan.keys(step)
        assert plan.keys(step, 0, 2) + plan.keys(step, 1, 2) == whole
        assert len({k.scale for k in whole}) == 1  # MDSR: one scale per batch
    # Epochs are permutations: every image once per 5 consecutive samples.
    positions = [plan.image_for(p) for p in range(10)]
    assert sorted(positions[:5]) == list(range(5)) and sorted(positions[5:]) == list(range(5))
    assert {plan.keys(s)[0].scale for s in range(30)} == {2, 3, 4}
    mixed = SamplePlan(n_images=5, batch=16, seed=3, scales=(2, 3, 4), per_sample_scale=True)
    assert len({k.scale for k in mixed.keys(0)}) > 1  # VDSR: scales mixed inside a batch


def test_vdsr_inputs_are_upscaled_y(tmp_path: Path) -> None:
    folder = _ramp_image(tmp_path / "hr")
    data = prepare_training_set(folder, (3,), kind="y-upscaled", patch=10, cache_dir=tmp_path / "cache")
    y = np.load(data.images[0].targets[3])
    upscaled = np.load(data.images[0].inputs[3])
    assert y.shape == upscaled.shape == (60, 72) and y.dtype == np.float32
    hr = np.asarray(Image.open(folder / "ramp.png")).astype(np.float64)
    expected_y = np.floor(16 + (65.481 * hr[..., 0] + 128.553 * hr[..., 1] + 24.966 * hr[..., 2]) / 255 + 0.5) / 255
    assert np.allclose(y, expected_y, atol=1e-6)
    lr, target, scale = PatchDataset(data, patch=10, seed=0)[SamplePlan(1, 1, 0, (3,), True).keys(0)[0]]
    assert lr.shape == target.shape == (1, 10, 10) and scale == 3


def test_small_image_and_empty_folder_are_named(tmp_path: Path) -> None:
    folder = _ramp_image(tmp_path / "hr", 20, 20)
    with pytest.raises(DatasetError, match="ramp.png: 10x10 input at x2 is smaller than the 48-pixel patch"):
        prepare_training_set(folder, (2,), kind="rgb", patch=48, cache_dir=tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        prepare_training_set(tmp_path / "empty", (2,), kind="rgb", patch=8, cache_dir=tmp_path / "cache")

"""zoo: names/aliases + scale -> entries, and loading by name (through the cache) or by file."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from sr_cli import zoo
from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.runtime import build_module
from sr_cli.errors import (
    CheckpointError,
    ChecksumError,
    InputError,
    OfflineError,
    ScaleMismatchError,
    UnknownModelError,
    UsageError,
)
from sr_cli.weights import cache


@pytest.mark.parametrize("name, scale, expected", [
    ("edsr", 4, "edsr-x4"),
    ("edsr", 2.0, "edsr-x2"),
    ("EDSR_baseline", 3, "edsr-baseline-x3"),
    ("edsr-baseline-x2", None, "edsr-baseline-x2"),
    ("edsr-baseline-x2", 2, "edsr-baseline-x2"),
    ("mdsr", 3, "mdsr"),
    ("mdsr", None, "mdsr"),
    ("mdsr-baseline", 4, "mdsr-baseline"),
    ("esrgan", 4, "esrgan"),
    ("esrgan", None, "esrgan"),
    ("realesrgan", 2, "realesrgan-x2plus"),
    ("realesrgan", 4, "realesrgan-x4plus"),
    ("realesrnet", None, "realesrnet-x4plus"),
    ("rrdb-psnr", 4, "esrgan-psnr"),
    ("vdsr", 2.5, "vdsr"),
    (" VDSR ", None, "vdsr"),
])
def test_resolve(name: str, scale: float | None, expected: str) -> None:
    assert zoo.resolve(name, scale).name == expected


def test_ambiguous_alias_lists_the_choices() -> None:
    with pytest.raises(UnknownModelError) as caught:
        zoo.resolve("edsr")
    message = str(caught.value)
    assert "ambiguous" in message and "edsr-x2 (x2), edsr-x3 (x3), edsr-x4 (x4)" in message and "--scale" in message


def test_a_scale_the_model_lacks_is_refused_with_alternatives() -> None:
    with pytest.raises(UnknownModelError, match=r"esrgan serves x4, not x2; models for x2: .*realesrgan-x2plus"):
        zoo.resolve("esrgan", 2)
    with pytest.raises(UnknownModelError, match=r"'edsr' has no x2.5 weights.*models for x2.5: vdsr$"):
        zoo.resolve("edsr", 2.5)
    with pytest.raises(UsageError):
        zoo.resolve("vdsr", -2)


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(UnknownModelError) as caught:
        zoo.resolve("esrgn")
    message = str(caught.value)
    assert message.startswith("unknown model 'esrgn'; did you mean esrgan")
    assert "sr weights list" in message
    with pytest.raises(UnknownModelError, match="^unknown model 'zzz'; give a model name"):
        zoo.resolve("zzz")


def test_cause16_the_unknown_model_error_is_short_and_names_no_whole_list() -> None:
    """Issue 11: the message dumped every name and alias on one line (over 300 characters)."""
    message = zoo.unknown_model_message("realesrgan-x8")
    assert len(message) < 200 and "did you mean realesrgan" in message
    assert "edsr-baseline-x3" not in message  # not close: not listed
    assert str(len(zoo.model_names())) in message


def test_pairs() -> None:
    assert zoo.pair_of(zoo.resolve("esrgan")).name == "esrgan-psnr"  # type: ignore[union-attr]
    assert zoo.pair_of(zoo.resolve("realesrnet-x4plus")).name == "realesrgan-x4plus"  # type: ignore[union-attr]
    assert zoo.pair_of(zoo.resolve("vdsr")) is None


def test_paths_versus_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert zoo.looks_like_path(tmp_path / "x")
    assert zoo.looks_like_path("dir/model")
    assert zoo.looks_like_path("my_weights.pth")
    assert not zoo.looks_like_path("edsr-x4")
    assert not zoo.looks_like_path("unknown-name")
    (tmp_path / "vdsr").write_bytes(b"")
    (tmp_path / "mine").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert not zoo.looks_like_path("vdsr"), "a manifest name must win over a file of the same name"
    assert zoo.looks_like_path("./vdsr") and zoo.looks_like_path("mine")
    with pytest.raises(InputError, match="no such weights file"):
        zoo.load(tmp_path / "absent.pth", 2)


def test_load_by_file(vdsr_weights: Path) -> None:
    loaded = zoo.load(vdsr_weights, 3)
    assert loaded.entry is None and loaded.name == str(vdsr_weights)
    assert loaded.srnet.family == "vdsr" and loaded.srnet.in_channels == 1
    assert loaded.checkpoint.sha256 == zoo.resolve("vdsr").sha256


def test_load_by_name_from_the_cache_offline(vdsr_weights: Path) -> None:
    entry = zoo.resolve("vdsr")
    with pytest.raises(OfflineError, match="vdsr is not in the cache"):
        zoo.load("vdsr", 2, offline=True)
    cache.import_file(entry, vdsr_weights)
    loaded = zoo.load("vdsr", 2, offline=True)
    assert loaded.entry == entry and loaded.name == "vdsr"
    assert loaded.checkpoint.detected.num_params == entry.num_params
    # the weights are the file's, exactly
    expected = loaded.checkpoint.detected.state_dict["input.weight"]
    assert torch.equal(loaded.srnet.module.state_dict()["input.weight"], expected)


def test_a_cached_file_replaced_by_other_bytes_is_caught_at_load(vdsr_weights: Path) -> None:
    entry = zoo.resolve("vdsr")
    stored = cache.import_file(entry, vdsr_weights)
    data = bytearray(vdsr_weights.read_bytes())
    data[-1] ^= 0xFF  # same size: passes the cheap cache check, not the sha256 one
    stored.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="no longer matches vdsr"):
        zoo.load("vdsr", 2, offline=True)


def test_a_file_for_another_scale_is_refused(tmp_path: Path) -> None:
    module = build_module("edsr", EDSRParams(n_resblocks=2, n_feats=8, scale=2))
    path = tmp_path / "tiny_x2.pt"
    torch.save(module.state_dict(), path)
    assert zoo.load(path, 2).srnet.scale == 2
    with pytest.raises(ScaleMismatchError):
        zoo.load(path, 4)


def test_manifest_and_file_disagreeing_is_an_error(vdsr_weights: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model_epoch_50.pth"
    shutil.copyfile(vdsr_weights, copy)
    checkpoint = zoo.load(copy, 2).checkpoint
    lying = dataclasses.replace(zoo.resolve("vdsr"), family="edsr", num_params=123)
    with pytest.raises(CheckpointError, match="manifest's vdsr is edsr"):
        zoo._check_matches_manifest(lying, checkpoint)

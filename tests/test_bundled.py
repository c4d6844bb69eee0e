"""The models shipped inside the package: their bytes, how a name finds them, and what runs when."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_cli

from sr_cli import zoo
from sr_cli.errors import ChecksumError, OfflineError
from sr_cli.weights import bundled
from sr_cli.weights.cache import entry_path
from sr_cli.weights.download import fetch
from sr_cli.weights.manifest import load_manifest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Pinned here as well as in the manifest: a change to either is a change to what every user runs by default.
BUNDLED_SHA256 = {
    "realesrgan-x4plus.fp16.safetensors": "a0e16ce7b482c074ab7fa39c36a985baf4d64e99d384834e71143248df75e78f",
    "realesr-animevideov3.fp16.safetensors": "76d3c760db23fdc7cdd5f150555dbf5ee34fee952e3d790cb6eefd4f9ed5dafb",
}


def test_the_bundled_files_are_the_pinned_bytes() -> None:
    folder = REPO_ROOT / "sr_cli" / "bundled"
    assert sorted(p.name for p in folder.glob("*.safetensors")) == sorted(BUNDLED_SHA256)
    for name, digest in BUNDLED_SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    listed = {e.bundled.filename: e.bundled.sha256 for e in load_manifest().entries if e.bundled is not None}
    assert listed == BUNDLED_SHA256
    assert "BSD 3-Clause" in (folder / "LICENSE").read_text() and "Xintao Wang" in (folder / "LICENSE").read_text()


def test_the_bundled_metadata_names_the_source_files() -> None:
    from sr_cli.weights.safetensors_io import read_safetensors

    _, meta = read_safetensors(REPO_ROOT / "sr_cli" / "bundled" / "realesrgan-x4plus.fp16.safetensors")
    assert meta["sr.source_param_sha256"] == "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86"
    assert meta["sr.source_bin_sha256"] == "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"
    assert meta["sr.source_param_size"] == "116029" and meta["sr.source_bin_size"] == "33424520"
    assert meta["sr.family"] == "rrdb" and json.loads(meta["sr.hyperparameters"])["num_block"] == 23


def test_the_default_model_loads_offline_from_the_bundled_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")
    loaded = zoo.load(zoo.DEFAULT_MODEL, 4)
    assert loaded.name == "realesrgan-x4plus" and loaded.checkpoint.path.parent == bundled.bundled_dir()
    assert loaded.checkpoint.detected.family == "rrdb" and loaded.checkpoint.detected.num_params == 16697987
    weight = loaded.srnet.module.state_dict()["conv_first.weight"]
    assert weight.dtype == torch.float32  # stored fp16, computed fp32


def test_the_small_bundled_model_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")
    loaded = zoo.load("realesr-animevideov3", 4)
    ramp = torch.linspace(0.2, 0.8, 16)
    x = torch.stack([ramp[None, :].expand(16, 16), ramp[:, None].expand(16, 16), torch.full((16, 16), 0.5)])[None]
    with torch.no_grad():
        y = loaded.srnet(x)
    assert y.shape == (1, 3, 64, 64) and torch.isfinite(y).all()
    # a plausible upscaler keeps each channel's mean (its exact output is checked against ncnn in test_ncnn.py)
    assert torch.allclose(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)


def test_list_shows_bundled_entries_as_available(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, ["weights", "list", "--json"])
    assert code == 0
    records = {r["name"]: r for r in [json.loads(line) for line in out.splitlines()]}
    for name in ("realesrgan-x4plus", "realesr-animevideov3"):
        assert records[name]["available"] and not records[name]["cached"]
        assert Path(records[name]["bundled"]).parent == bundled.bundled_dir() == Path(records[name]["file"]).parent
    assert not records["realesrgan-x4plus-anime"]["available"] and records["realesrgan-x4plus-anime"]["bundled"] is None
    code, out, _ = run_cli(capsys, ["weights", "list"])
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("realesrgan-x4plus "))
    assert "bundled" in row
    code, out, _ = run_cli(capsys, ["weights", "path", "realesr-animevideov3"])
    assert code == 0 and Path(out.strip()).parent == bundled.bundled_dir()


def test_download_wants_the_official_file_not_the_bundled_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")
    entry = load_manifest().get("realesrgan-x4plus")
    assert entry is not None
    with pytest.raises(OfflineError):
        fetch(entry, bundled=False)
    assert fetch(entry).parent == bundled.bundled_dir()
    only_bundled = load_manifest().get("realesr-animevideov3")
    assert only_bundled is not None and fetch(only_bundled, bundled=False).parent == bundled.bundled_dir()


def test_a_cached_official_file_wins_over_the_bundled_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule docs/models.md states: sr's cache first. A stand-in of the right size is taken for the .pth
    (the cheap presence check), and then refused by its sha256: proof it was the one chosen."""
    monkeypatch.setenv("SR_OFFLINE", "1")
    entry = load_manifest().get("realesrgan-x4plus")
    assert entry is not None and entry.sha256 is not None and entry.size is not None
    stand_in = entry_path(entry.sha256, entry.filename)
    stand_in.parent.mkdir(parents=True)
    with open(stand_in, "wb") as handle:
        handle.truncate(entry.size)
    assert fetch(entry) == stand_in
    with pytest.raises(Exception) as caught:
        zoo.load("realesrgan-x4plus", 4)
    assert str(stand_in) in str(caught.value)


def test_a_damaged_bundled_copy_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = bundled.bundled_dir() / "realesr-animevideov3.fp16.safetensors"
    damaged = tmp_path / source.name
    shutil.copyfile(source, damaged)
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 1
    damaged.write_bytes(bytes(data))
    os.utime(damaged, ns=(1, 1))
    monkeypatch.setattr(bundled, "BUNDLED_DIR", tmp_path)
    entry = load_manifest().get("realesr-animevideov3")
    assert entry is not None
    with pytest.raises(ChecksumError, match="damaged.*reinstall sr"):
        fetch(entry)


def test_weights_run_report_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.setenv("SR_OFFLINE", "1")
    image = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(image)
    code, out, err = run_cli(capsys, ["upscale", str(image), "--model", "realesr-animevideov3", "--scale", "4",
                                      "--json", "-o", str(tmp_path / "out.png")])
    assert code == 0, err
    assert Image.open(tmp_path / "out.png").size == (20, 24)
    (record,) = [json.loads(line) for line in out.splitlines()]
    shipped = bundled.bundled_dir() / "realesr-animevideov3.fp16.safetensors"
    assert record["model"] == "realesr-animevideov3" and record["weights_file"] == str(shipped)
    assert record["weights_sha256"] == BUNDLED_SHA256[shipped.name]
    assert str(shipped) in err  # the run report on stderr says it too

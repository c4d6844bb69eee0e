"""One loader path: a weights file is read and hashed once per run, whatever the scales and datasets
that ask for it; every loader (api, eval, blend, --init) goes through zoo and refuses bad files in one line."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_support import run_cli
from PIL import Image

from sr_cli import zoo
from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.archs.vdsr import VDSR, VDSRParams
from sr_cli.errors import CheckpointError
from sr_cli.weights import loading
from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata


@pytest.fixture()
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each weights file is parsed (read_checkpoint) and hashed (sha256_of)."""
    counts: Counter[str] = Counter()

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(path: Path, *args: Any, **kwargs: Any) -> Any:
            counts[f"{name} {Path(path).name}"] += 1
            return original(path, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(loading, "read_checkpoint", counting("read", loading.read_checkpoint))
    monkeypatch.setattr(loading, "sha256_of", counting("hash", loading.sha256_of))
    monkeypatch.setattr(zoo, "read_checkpoint", counting("read", zoo.read_checkpoint))  # zoo.default_scale's read
    return counts


def _edsr_x2(tmp_path: Path) -> Path:
    params = EDSRParams(n_resblocks=1, n_feats=8, scale=2)
    path = tmp_path / "tiny-x2.safetensors"
    save_safetensors(path, EDSR(params).state_dict(), sr_metadata("edsr", params))
    return path


def test_load_model_with_outscale_reads_and_hashes_the_file_once(tmp_path: Path, reads: Counter[str]) -> None:
    """Before: x3.5 tried scales 3.5, 4, 8, 3, 2, loading (reading + hashing) the file for each: 5 + 5."""
    from sr_cli.api import load_model

    upscaler = load_model(_edsr_x2(tmp_path), outscale=3.5)
    out = upscaler.upscale(np.zeros((4, 6, 3), np.uint8))
    assert out.shape == (14, 21, 3)  # x2 model, then resized to x3.5
    assert reads == Counter({"read tiny-x2.safetensors": 1, "hash tiny-x2.safetensors": 1})


def test_sr_eval_reads_a_model_once_for_every_dataset_and_scale(tmp_path: Path, reads: Counter[str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the model was loaded again for every (dataset x scale x model)."""
    params = VDSRParams(num_layers=3, num_features=4)
    weights = tmp_path / "tiny-vdsr.safetensors"
    save_safetensors(weights, VDSR(params).state_dict(), sr_metadata("vdsr", params))
    images = tmp_path / "hr"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(images / f"{index}.png")
    result = run_cli(capsys, ["eval", "--model", str(weights), "--dataset", str(images), "--scale", "2,3,4", "--json"])
    assert result.returncode == 0, result.stderr
    assert reads == Counter({"read tiny-vdsr.safetensors": 1, "hash tiny-vdsr.safetensors": 1})


def test_a_corrupt_pt_for_init_is_one_checkpoint_error(tmp_path: Path) -> None:
    """Before: train/initialize.py called torch.load itself and a damaged file gave a raw traceback."""
    from sr_cli.train.initialize import read_init_source

    damaged = tmp_path / "run.pt"
    damaged.write_bytes(b"PK\x03\x04" + b"\x00" * 64)  # a zip signature, then nothing a torch file holds
    with pytest.raises(CheckpointError, match="run.pt"):
        read_init_source(str(damaged))


def test_blend_endpoints_come_from_the_zoo_with_its_manifest_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: blend re-did zoo.load without _check_matches_manifest."""
    from sr_cli import blend, zoo

    checked: list[str] = []
    monkeypatch.setattr(zoo, "fetch", lambda entry, **_: Path(f"/nonexistent/{entry.filename}"))
    monkeypatch.setattr(zoo, "load_checkpoint", lambda path, **_: path)
    monkeypatch.setattr(zoo, "_check_matches_manifest", lambda entry, checkpoint: checked.append(entry.name))
    endpoint = blend.load_endpoint("esrgan")
    assert checked == ["esrgan"] and endpoint.label == "esrgan" and endpoint.variant == "gan"


def test_load_model_without_a_scale_reads_the_file_once(tmp_path: Path, reads: Counter[str]) -> None:
    """The scale a file serves is answered from the same read that loads it."""
    from sr_cli.api import load_model

    assert load_model(_edsr_x2(tmp_path)).model_scale == 2
    assert reads == Counter({"read tiny-x2.safetensors": 1, "hash tiny-x2.safetensors": 1})


def test_sr_upscale_without_scale_reads_the_file_once(tmp_path: Path, reads: Counter[str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the CLI asked zoo.default_scale (one read) and then loaded the file (a second read)."""
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "in.png")
    result = run_cli(capsys, ["upscale", str(tmp_path / "in.png"), "--weights", str(_edsr_x2(tmp_path)),
                              "--device", "cpu", "-o", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["in_x2_tiny-x2.png"]
    assert reads == Counter({"read tiny-x2.safetensors": 1, "hash tiny-x2.safetensors": 1})

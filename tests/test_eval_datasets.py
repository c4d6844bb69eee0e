"""Dataset lookup (--data-dir, cache, download with sha256) against a local mirror of the EDSR package."""
from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_cli.data.benchmarks import (
    KNOWN_DATASETS,
    dataset_key,
    load_pair,
    resolve_dataset,
)
from sr_cli.errors import ChecksumError, DatasetError, OfflineError


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def mirror(datasets_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A mirror of `benchmark/Set5` laid out as upstream (LR named <stem>x<s>.png), served on localhost."""
    root = tmp_path / "mirror"
    shutil.copytree(datasets_dir / "set5" / "HR", root / "Set5" / "HR")
    for scale in (2, 3):
        target = root / "Set5" / "LR_bicubic" / f"X{scale}"
        target.mkdir(parents=True)
        for lr in (datasets_dir / "set5" / "LR_bicubic" / f"X{scale}").iterdir():
            shutil.copy(lr, target / f"{lr.stem}x{scale}.png")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SR_BENCHMARK_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    yield root
    server.shutdown()
    server.server_close()


def test_download_into_the_cache_then_offline_reuse(mirror: Path, isolated_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = resolve_dataset("Set5", scales=(2,))
    assert dataset.hr_dir == isolated_caches / "sr" / "datasets" / "set5" / "HR"
    images = dataset.images(2)
    assert [i.name for i in images] == ["baby", "bird", "butterfly", "head", "woman"]
    assert all(i.lr_path is not None and i.lr_path.parent.name == "X2" for i in images)
    assert not (isolated_caches / "sr" / "datasets" / "set5" / "LR_bicubic" / "X3").exists()  # only what was asked
    monkeypatch.setenv("SR_OFFLINE", "1")
    again = resolve_dataset("set5", scales=(2,))
    assert again.hr_dir == dataset.hr_dir
    with pytest.raises(OfflineError, match="SR_OFFLINE"):
        resolve_dataset("set5", scales=(3,))  # X3 is not cached and the network is off


def test_a_corrupted_file_is_refused(mirror: Path, isolated_caches: Path) -> None:
    victim = mirror / "Set5" / "HR" / "bird.png"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ChecksumError, match="bird.png"):
        resolve_dataset("set5", scales=(2,))
    assert not (isolated_caches / "sr" / "datasets" / "set5" / "HR" / "bird.png").exists()


def test_data_dir_is_case_insensitive_and_pairs_lr_names(tmp_path: Path, datasets_dir: Path) -> None:
    root = tmp_path / "bench" / "BSD100"
    (root / "HR").mkdir(parents=True)
    (root / "LR_bicubic" / "X4").mkdir(parents=True)
    shutil.copy(datasets_dir / "b100" / "HR" / "3096.png", root / "HR")
    shutil.copy(datasets_dir / "b100" / "LR_bicubic" / "X4" / "3096.png", root / "LR_bicubic" / "X4" / "3096x4.png")
    dataset = resolve_dataset("b100", scales=(4,), data_dir=tmp_path / "bench", download_missing=False)
    pair = load_pair(dataset.images(4)[0], 4)
    assert pair.lr_is_shipped and pair.hr.shape == (pair.lr.shape[0] * 4, pair.lr.shape[1] * 4, 3)
    # no X2 folder: LR is made with the downscaler, which equals the shipped file
    made = load_pair(dataset.images(2)[0], 2)
    assert not made.lr_is_shipped
    shipped = np.asarray(Image.open(datasets_dir / "b100" / "LR_bicubic" / "X2" / "3096.png"))
    assert np.array_equal(made.lr, shipped)


def test_missing_lr_file_in_a_present_scale_folder(tmp_path: Path, datasets_dir: Path) -> None:
    root = tmp_path / "s"
    (root / "HR").mkdir(parents=True)
    (root / "LR_bicubic" / "X2").mkdir(parents=True)
    shutil.copy(datasets_dir / "set5" / "HR" / "bird.png", root / "HR")
    with pytest.raises(DatasetError, match="bird"):
        resolve_dataset(str(root), scales=(2,)).images(2)


def test_gray_image_stays_gray(datasets_dir: Path) -> None:
    dataset = resolve_dataset("set14", scales=(3,), data_dir=datasets_dir)
    bridge = next(i for i in dataset.images(3) if i.name == "bridge")
    pair = load_pair(bridge, 3)
    assert pair.hr.ndim == 2 and pair.lr.ndim == 2 and pair.hr.shape == (510, 510)


def test_every_alias_names_its_set_in_any_case() -> None:
    for key, (label, aliases) in KNOWN_DATASETS.items():
        for name in (key, label, *aliases, label.upper(), f"  {label} "):
            assert dataset_key(name) == key, name
    assert dataset_key("set50") is None and dataset_key("div2k-train") is None


@pytest.mark.parametrize("name", ["div2k_val", "DIV2K_valid", "div2k"])
def test_div2k_val_aliases_find_the_set_in_data_dir(tmp_path: Path, name: str) -> None:
    """Before: `--dataset div2k_val` was taken for a folder path ("neither a known set nor a folder")."""
    hr = tmp_path / "DIV2K" / "DIV2K_valid_HR"
    hr.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(hr / "0801.png")
    found = resolve_dataset(name, scales=(2,), data_dir=tmp_path, download_missing=False)
    assert found.key == "div2k-val" and found.hr_dir == hr and [i.name for i in found.images(2)] == ["0801"]

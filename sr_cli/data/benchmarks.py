"""Benchmark test sets for `sr eval`: find them, download them (sha256-checked), pair HR with LR.

Lookup order for a named set (set5, set14, b100, urban100, div2k-val):
1. ``--data-dir DIR``: the EDSR benchmark layout ``DIR/<set>/HR/*.png`` + ``DIR/<set>/LR_bicubic/X<s>/``
   (``<stem>.png`` or ``<stem>x<s>.png``); the set's folder name is matched case-insensitively against
   its aliases (``Set5``, ``B100`` / ``BSD100`` / ``BSDS100`` ...). DIV2K also in its own layout
   ``DIR/DIV2K/DIV2K_valid_HR`` + ``DIV2K_valid_LR_bicubic/X<s>/<stem>x<s>.png``.
2. The cache: ``<SR_CACHE_DIR>/datasets/<set>/`` in the same layout.
3. Download into the cache: Set5/Set14/B100/Urban100 file by file from the EDSR benchmark package as
   committed in github.com/ryujaehun/baseline at a pinned commit, each file checked against the sha256 in
   ``benchmark_files.json`` (package data; ``SR_BENCHMARK_BASE_URL`` points at a mirror of the
   ``benchmark/`` folder with the same layout); DIV2K validation HR from the official ETH archive (sha256
   checked, ``sr_cli.data.div2k``), its LR made with the downscaler.

Any other value is a path: a folder of HR images (LR made with ``downscale_like_benchmark``), or a folder
in the EDSR layout (``HR/`` + ``LR_bicubic/X<s>/``).

HR is never mod-cropped on disk in the EDSR package; ``load_pair`` crops it to LR size x scale and
checks that the shipped LR has exactly floor(HR / scale) pixels.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from sr_cli.errors import DatasetError, DownloadError, InputError, ManifestError
from sr_cli.files.digest import ExpectedSha256
from sr_cli.files.http import download_to
from sr_cli.files.places import cache_root
from sr_cli.imageio import is_readable_suffix
from sr_cli.imageio.budget import PixelBudget
from sr_cli.resize import downscale_like_benchmark

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "KNOWN_DATASETS",
    "BenchmarkImage",
    "Dataset",
    "ImagePair",
    "dataset_key",
    "resolve_dataset",
    "load_pair",
    "read_rgb_or_gray",
    "downscale_file",
    "Downscaled",
]

Progress = Callable[[int, int], None]

# key -> (label, aliases, lower case): the one alias table, for --dataset values, folder names under
# --data-dir and the dataset names in the manifest's metrics (`dataset_key`).
KNOWN_DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "set5": ("Set5", ("set5",)),
    "set14": ("Set14", ("set14",)),
    "b100": ("B100", ("b100", "bsd100", "bsds100")),
    "urban100": ("Urban100", ("urban100",)),
    "div2k-val": ("DIV2K-val", ("div2k-val", "div2k_val", "div2k-valid", "div2k_valid", "div2k")),
}


@dataclass(frozen=True)
class BenchmarkImage:
    """One test image: its HR file and, where the set ships one, the LR file for one scale."""

    name: str  # the stem, e.g. "baby"
    hr_path: Path
    lr_path: Path | None  # None: LR is made from HR with the MATLAB-exact downscaler


@dataclass(frozen=True)
class Dataset:
    key: str  # "set5" ... or the folder path for a custom set
    label: str  # shown in tables: "Set5"
    hr_dir: Path
    lr_root: Path | None  # the folder holding X2/, X3/, X4/ (EDSR layout), if any
    lr_dir_template: str = "X{scale}"

    def lr_dir(self, scale: int) -> Path | None:
        if self.lr_root is None:
            return None
        folder = self.lr_root / self.lr_dir_template.format(scale=scale)
        return folder if folder.is_dir() else None

    def images(self, scale: int) -> list[BenchmarkImage]:
        """The set's images in name order, each with its shipped LR for ``scale`` when there is one."""
        hr_files = sorted(p for p in self.hr_dir.iterdir() if p.is_file() and is_readable_suffix(p.suffix))
        if not hr_files:
            raise DatasetError(f"{self.hr_dir}: no images found; point --dataset/--data-dir at a folder of HR images")
        lr_dir = self.lr_dir(scale)
        images = []
        for hr in hr_files:
            lr = None
            if lr_dir is not None:
                lr = _find_lr(lr_dir, hr, scale)
                if lr is None:
                    raise DatasetError(
                        f"{hr}: no LR file for x{scale} in {lr_dir} (looked for {hr.stem}{hr.suffix} and "
                        f"{hr.stem}x{scale}{hr.suffix}); add it or remove the LR folder to make LR with the downscaler"
                    )
            images.append(BenchmarkImage(name=hr.stem, hr_path=hr, lr_path=lr))
        return images


@dataclass(frozen=True)
class ImagePair:
    name: str
    hr: np.ndarray  # uint8 HxW or HxWx3, cropped to LR size x scale
    lr: np.ndarray  # uint8, same channels
    lr_is_shipped: bool


def _find_lr(lr_dir: Path, hr: Path, scale: int) -> Path | None:
    for candidate in (lr_dir / hr.name, lr_dir / f"{hr.stem}x{scale}{hr.suffix}"):
        if candidate.is_file():
            return candidate
    return None


def dataset_key(name: str) -> str | None:
    """The known set a name means (`Set5`, `bsd100`, `div2k_val` ...), or None for anything else."""
    lowered = name.strip().lower()
    for key, (_, aliases) in KNOWN_DATASETS.items():
        if lowered == key or lowered in aliases:
            return key
    return None


def _edsr_layout(folder: Path, key: str, label: str) -> Dataset | None:
    """A folder with HR/ (and maybe LR_bicubic/) inside, or DIV2K's own layout."""
    hr = _child_ci(folder, ("hr",))
    if hr is not None:
        return Dataset(key=key, label=label, hr_dir=hr, lr_root=_child_ci(folder, ("lr_bicubic",)))
    div2k_hr = _child_ci(folder, ("div2k_valid_hr",))
    if div2k_hr is not None:
        return Dataset(key=key, label=label, hr_dir=div2k_hr, lr_root=_child_ci(folder, ("div2k_valid_lr_bicubic",)))
    return None


def _child_ci(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The sub-folder whose name, lower-cased, is one of ``names`` (first in ``names`` order)."""
    if not folder.is_dir():
        return None
    children = {child.name.lower(): child for child in folder.iterdir() if child.is_dir()}
    for name in names:
        if name in children:
            return children[name]
    return None


def _in_folder(root: Path, key: str) -> Dataset | None:
    label, aliases = KNOWN_DATASETS[key]
    folder = _child_ci(root, aliases)
    return None if folder is None else _edsr_layout(folder, key, label)


def resolve_dataset(
    name_or_path: str,
    *,
    scales: tuple[int, ...],
    data_dir: Path | None = None,
    download_missing: bool = True,
    progress: Progress | None = None,
) -> Dataset:
    """Find (or download) a named benchmark set, or open a folder as a dataset."""
    key = dataset_key(name_or_path)
    if key is None:
        return _custom(Path(name_or_path))
    if data_dir is not None:
        if not data_dir.is_dir():
            raise DatasetError(f"--data-dir {data_dir}: not a folder; give the folder that holds {KNOWN_DATASETS[key][0]}/")
        found = _in_folder(data_dir, key)
        if found is not None:
            return found
    cached_root = cache_root() / "datasets"
    found = _in_folder(cached_root, key)
    if found is not None and _complete_for(found, key, scales):
        return found
    if not download_missing:
        where = f"{data_dir} or " if data_dir is not None else ""
        raise DatasetError(f"{KNOWN_DATASETS[key][0]} is not in {where}{cached_root}; pass --data-dir or allow the download")
    if key == "div2k-val":
        return _download_div2k_val(progress)
    return _download_benchmark(key, scales, cached_root, progress)


def _custom(path: Path) -> Dataset:
    if not path.exists():
        known = ", ".join(KNOWN_DATASETS)
        raise DatasetError(f"--dataset {path}: neither a known set ({known}) nor an existing folder")
    if not path.is_dir():
        raise DatasetError(f"--dataset {path}: not a folder; give a folder of HR images or one with HR/ and LR_bicubic/")
    laid_out = _edsr_layout(path, str(path), path.name)
    return laid_out if laid_out is not None else Dataset(key=str(path), label=path.name, hr_dir=path, lr_root=None)


@lru_cache(maxsize=1)
def _benchmark_files() -> dict:
    try:
        return json.loads(resources.files("sr_cli.data").joinpath("benchmark_files.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ManifestError(f"sr_cli/data/benchmark_files.json is unreadable ({error}); reinstall sr") from error


def _needed_files(key: str, scales: tuple[int, ...]) -> dict[str, str]:
    files: dict[str, str] = _benchmark_files()["datasets"][key]["files"]
    prefixes = ("HR/",) + tuple(f"LR_bicubic/X{s}/" for s in scales)
    return {rel: sha for rel, sha in files.items() if rel.startswith(prefixes)}


def _complete_for(dataset: Dataset, key: str, scales: tuple[int, ...]) -> bool:
    """A cached set is usable when every file we would download is there (a half download is resumed)."""
    if key not in _benchmark_files()["datasets"]:
        return dataset.hr_dir.is_dir()
    root = dataset.hr_dir.parent
    return all((root / rel).is_file() for rel in _needed_files(key, scales))


def _download_benchmark(key: str, scales: tuple[int, ...], cached_root: Path, progress: Progress | None) -> Dataset:
    table = _benchmark_files()
    entry = table["datasets"][key]
    unsupported = [s for s in scales if not any(rel.startswith(f"LR_bicubic/X{s}/") for rel in entry["files"])]
    if unsupported:
        raise DatasetError(f"{KNOWN_DATASETS[key][0]}: the benchmark package has no LR for x{unsupported[0]}; use x2, x3 or x4")
    needed = _needed_files(key, scales)
    target = cached_root / key
    for done, (rel, sha) in enumerate(sorted(needed.items())):
        remote_path = rel
        if rel.startswith("LR_bicubic/"):
            folder, scale_dir, filename = rel.split("/")
            stem, suffix = filename.rsplit(".", 1)
            remote_path = f"{folder}/{scale_dir}/{stem}{scale_dir.lower()}.{suffix}"  # <stem>x<s>.png upstream
        base_url = os.environ.get("SR_BENCHMARK_BASE_URL", "").rstrip("/") or table["base_url"]
        url = table["url_template"].format(base_url=base_url, remote=entry["remote"], remote_path=remote_path)
        try:
            expected = ExpectedSha256.full(sha)
        except ValueError as error:
            raise ManifestError(f"sr_cli/data/benchmark_files.json: {key} {rel}: {error}; reinstall sr") from None
        try:
            download_to(url, target / rel, expected, None)
        except DownloadError as error:  # same class (ChecksumError, OfflineError...), with the way out added
            raise type(error)(
                f"{KNOWN_DATASETS[key][0]}: {error} (or download the EDSR benchmark package and pass --data-dir)"
            ) from error
        if progress is not None:
            progress(done + 1, len(needed))
    found = _in_folder(cached_root, key)
    assert found is not None
    return found


def _download_div2k_val(progress: Progress | None) -> Dataset:
    from sr_cli.data.div2k import DIV2K_VALID_HR, ensure_archive  # the training side owns DIV2K archives

    hr_dir = ensure_archive(DIV2K_VALID_HR, progress=progress)
    return Dataset(key="div2k-val", label=KNOWN_DATASETS["div2k-val"][0], hr_dir=hr_dir, lr_root=None)


def read_rgb_or_gray(path: Path, budget: PixelBudget | None = None) -> np.ndarray:
    """An 8-bit image as uint8 HxWx3 (RGB) or HxW (grayscale); alpha is dropped, palettes expanded.

    Opened as `read_image` opens files (a regular file, the header within `budget`, one InputError naming
    it), but converted by Pillow alone, as the published scores were computed. The decoders' warnings are
    caught and dropped: they concern metadata (EXIF, ICC) that scores never use."""
    from sr_cli.imageio import open_image

    with open_image(path, budget=budget) as opened:
        opened.load()
        mode = opened.mode
        if mode in ("L", "LA") or (mode == "P" and _palette_is_gray(opened)):
            return np.asarray(opened.convert("L"))
        if mode in ("I;16", "I;16B", "I", "F"):
            raise DatasetError(f"{path}: {mode} (16-bit/float) images are not benchmark data; give 8-bit images")
        return np.asarray(opened.convert("RGB"))


def _palette_is_gray(image: PILImage.Image) -> bool:
    rgb = np.asarray(image.convert("RGB"))
    return bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))


def load_pair(image: BenchmarkImage, scale: int, budget: PixelBudget | None = None) -> ImagePair:
    """HR cropped to LR size x scale, and the LR: shipped, or made with the MATLAB-exact downscaler.
    ``budget``: the largest image read (default: SR_MAX_PIXELS or the defaults)."""
    hr = read_rgb_or_gray(image.hr_path, budget)
    if image.lr_path is None:
        lr = downscale_like_benchmark(hr, scale)
        shipped = False
    else:
        lr = read_rgb_or_gray(image.lr_path, budget)
        shipped = True
        if lr.ndim != hr.ndim:
            raise DatasetError(f"{image.lr_path}: {'gray' if lr.ndim == 2 else 'colour'} but its HR {image.hr_path.name} is not; "
                               "use matching LR files")
        expected = (hr.shape[0] // scale, hr.shape[1] // scale)
        if lr.shape[:2] != expected:
            raise DatasetError(
                f"{image.lr_path}: LR is {lr.shape[1]}x{lr.shape[0]} but HR {image.hr_path.name} is "
                f"{hr.shape[1]}x{hr.shape[0]}, which needs {expected[1]}x{expected[0]} at x{scale}; wrong scale folder or file"
            )
    height, width = lr.shape[0] * scale, lr.shape[1] * scale
    return ImagePair(name=image.name, hr=hr[:height, :width], lr=lr, lr_is_shipped=shipped)


class Downscaled(NamedTuple):
    """What `downscale_file` wrote: the path and the sizes, (width, height), of the HR read and the LR made."""

    path: Path
    input_size: tuple[int, int]
    output_size: tuple[int, int]


def downscale_file(hr_path: Path, out_dir: Path, scale: int, *, overwrite: bool = False,
                   budget: PixelBudget | None = None) -> Downscaled:
    """`sr downscale`: ``out_dir/<stem>.png`` = imresize(modcrop(HR, s), 1/s) like the benchmark LR files.

    8- and 16-bit, gray, RGB and alpha are kept (every channel is resized the same way, rounded per pass
    in the file's bit depth); ICC/EXIF/text travel with the pixels. Output is PNG (lossless) so the LR is
    exactly what the resize produced. Never overwrites an input; an existing output needs ``overwrite``.
    ``budget``: the largest HR read (default: SR_MAX_PIXELS or the defaults); the LR is always smaller.
    """
    from sr_cli.errors import OutputError
    from sr_cli.imageio import read_image, write_image

    if scale < 2:
        raise InputError(f"--scale {scale}: downscaling needs an integer factor of 2 or more")
    target = out_dir / f"{hr_path.stem}.png"
    if target.resolve() == hr_path.resolve():
        raise OutputError(f"{target}: would overwrite the input; choose another -o folder")
    if target.exists() and not overwrite:
        raise OutputError(f"{target}: exists; pass --overwrite to replace it or choose another -o folder")
    image = read_image(hr_path, budget=budget)
    pixels = image.pixels
    if pixels.shape[0] < scale or pixels.shape[1] < scale:
        raise InputError(f"{hr_path}: {pixels.shape[1]}x{pixels.shape[0]} is smaller than the scale {scale}")
    lr = downscale_like_benchmark(pixels, scale)
    write_image(target, lr, image.metadata, format="png", overwrite=overwrite)
    return Downscaled(target, (pixels.shape[1], pixels.shape[0]), (lr.shape[1], lr.shape[0]))

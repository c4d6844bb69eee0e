"""Training data: decode each HR image once into an on-disk cache, crop patches on the fly.

- `prepare_training_set` decodes every HR image of a folder (recursive) to `hr.npy` and makes the
  network inputs from it with the MATLAB-compatible bicubic downscaler (`sr_cli.resize`), cached as
  `.npy` beside it. The cache key of an input includes the scale and a hash of the downscaler's source,
  so a change to the downscaler never serves stale LR patches.
- `PatchDataset` memory-maps those arrays (workers share the page cache; nothing is decoded twice) and
  cuts one aligned (LR, HR) patch pair per `SampleKey`.
- `StepBatches` says which samples make up each optimizer step. Everything random (which image, where
  to crop, which flip/rotation, which scale) is a pure function of (seed, step, slot), so the data
  stream does not depend on the number of workers or processes: a resumed run sees exactly the
  batches the uninterrupted one would have seen, and K torchrun processes together see the batch one
  process would have seen (rank r takes slots r*B/K .. (r+1)*B/K - 1 of each global batch).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sr_cli import resize
from sr_cli.color import rgb_to_ycbcr_uint8
from sr_cli.errors import DatasetError, InputError, OutputError
from sr_cli.files.atomic import atomic_write
from sr_cli.imageio import READABLE_SUFFIXES, is_readable_suffix, open_image

# "rgb": LR RGB patch -> HR RGB patch (EDSR, MDSR, RRDB). "y-upscaled": bicubic-upscaled Y -> HR Y (VDSR).
InputKind = Literal["rgb", "y-upscaled"]
Progress = Callable[[int, int], None]


def _downscaler_tag() -> str:
    """12 hex digits of sha256(sr_cli/resize.py): any change to the downscaler invalidates cached inputs."""
    return hashlib.sha256(Path(resize.__file__).read_bytes()).hexdigest()[:12]


def find_hr_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive, hidden entries skipped), sorted by relative path."""
    if not folder.is_dir():
        raise DatasetError(f"--data {folder}: not a folder; give a folder of HR images or 'div2k'")
    found = [
        path for path in folder.rglob("*")
        if is_readable_suffix(path.suffix) and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    if not found:
        raise DatasetError(f"--data {folder}: no images found (looked for {', '.join(sorted(READABLE_SUFFIXES))})")
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


@dataclass(frozen=True)
class CachedImage:
    name: str  # path relative to the data folder
    hr: Path  # uint8 HxWx3
    inputs: dict[int, Path]  # scale -> uint8 LR HxWx3 ("rgb") or float32 upscaled Y HxW ("y-upscaled")
    targets: dict[int, Path]  # scale -> the target array (HR RGB, or HR Y float32 cropped to a multiple of s)
    input_shapes: dict[int, tuple[int, int]]  # scale -> (height, width) of the input array


@dataclass(frozen=True)
class TrainingSet:
    folder: Path
    kind: InputKind
    scales: tuple[int, ...]
    images: tuple[CachedImage, ...]
    fingerprint: str  # sha256 of names, sizes, mtimes, scales, kind and downscaler: resume refuses other data

    def __len__(self) -> int:
        return len(self.images)

    def patch_grid_size(self, patch: int) -> int:
        """Non-overlapping patch positions over all images and scales (VDSR's "epoch")."""
        return sum((h // patch) * (w // patch) for image in self.images for (h, w) in image.input_shapes.values())


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{path.parent}: cannot create the training cache ({error.strerror}); check SR_CACHE_DIR") from None
    # overwrite: a cache entry is a pure function of its name, so a concurrent writer wrote the same bytes.
    with atomic_write(path, overwrite=True, advice="free space or set SR_CACHE_DIR to a larger, writable disk") as handle:
        np.save(handle, array, allow_pickle=False)


def _decode_rgb(path: Path) -> np.ndarray:
    """Opened as `read_image` opens files (regular file, pixel budget, the decoders' warnings caught; they
    concern metadata training never uses); a file that fails is a dataset problem, named, with the fix."""
    try:
        with open_image(path) as image:
            if image.mode not in ("RGB", "L", "P", "RGBA", "LA", "I;16", "I"):
                raise DatasetError(f"{path}: unsupported image mode {image.mode}; convert it to 8-bit RGB")
            if image.mode.startswith("I"):
                raise DatasetError(f"{path}: 16-bit images are not supported for training; convert to 8-bit RGB")
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except InputError as error:
        raise DatasetError(str(error)) from None  # it names the file and the fix already


def _image_key(path: Path) -> str:
    stat = path.stat()
    ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


def _prepare_one(path: Path, name: str, cache_dir: Path, scales: tuple[int, ...], kind: InputKind,
                 min_input: int, tag: str) -> CachedImage:
    folder = cache_dir / _image_key(path)
    hr_path = folder / "hr.npy"
    hr: np.ndarray | None = None
    if not hr_path.is_file():
        hr = _decode_rgb(path)
        _save_npy_atomic(hr_path, hr)

    def load_hr() -> np.ndarray:
        nonlocal hr
        if hr is None:
            hr = np.load(hr_path, allow_pickle=False)
        return hr

    inputs: dict[int, Path] = {}
    targets: dict[int, Path] = {}
    shapes: dict[int, tuple[int, int]] = {}
    for s in scales:
        if kind == "rgb":
            input_path = folder / f"lr_x{s}_{tag}.npy"
            target_path = hr_path
            if not input_path.is_file():
                _save_npy_atomic(input_path, resize.downscale_like_benchmark(load_hr(), s))
        else:
            # VDSR (generate_train.m of the reference code): Y of rgb2ycbcr on uint8, as double,
            # modcrop, then imresize(imresize(Y, 1/s), size(Y)). Both input and target are Y in [0, 1].
            input_path = folder / f"ylr_x{s}_{tag}.npy"
            target_path = folder / f"yhr_x{s}.npy"
            if not input_path.is_file() or not target_path.is_file():
                y = resize.modcrop(rgb_to_ycbcr_uint8(load_hr())[..., 0].astype(np.float64) / 255.0, s)
                upscaled = resize.imresize(resize.imresize(y, 1.0 / s), output_shape=(y.shape[0], y.shape[1]))
                _save_npy_atomic(target_path, y.astype(np.float32))
                _save_npy_atomic(input_path, upscaled.astype(np.float32))
        shape = tuple(np.load(input_path, mmap_mode="r", allow_pickle=False).shape[:2])
        if min(shape) < min_input:
            raise DatasetError(f"{path}: {shape[1]}x{shape[0]} input at x{s} is smaller than the {min_input}-pixel "
                               f"patch; remove the image or lower --patch")
        inputs[s], targets[s], shapes[s] = input_path, target_path, (int(shape[0]), int(shape[1]))
    return CachedImage(name=name, hr=hr_path, inputs=inputs, targets=targets, input_shapes=shapes)


def prepare_training_set(
    folder: Path,
    scales: Sequence[int],
    *,
    kind: InputKind,
    patch: int,
    cache_dir: Path,
    progress: Progress | None = None,
) -> TrainingSet:
    """Decode and downscale every HR image under `folder` once (cached), and describe the result.

    `patch` is the input patch side; an image whose input is smaller raises DatasetError naming it.
    """
    paths = find_hr_images(folder)
    tag = _downscaler_tag()
    scales_t = tuple(sorted(set(int(s) for s in scales)))
    images: list[CachedImage] = []
    digest = hashlib.sha256(f"{kind}|{scales_t}|{tag}|{patch}".encode())
    for index, path in enumerate(paths):
        name = path.relative_to(folder).as_posix()
        images.append(_prepare_one(path, name, cache_dir, scales_t, kind, patch, tag))
        stat = path.stat()
        digest.update(f"|{name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        if progress is not None:
            progress(index + 1, len(paths))
    return TrainingSet(folder=folder, kind=kind, scales=scales_t, images=tuple(images), fingerprint=digest.hexdigest())


# --- which samples, where -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleKey:
    step: int
    slot: int  # position in the global batch
    image: int
    scale: int


@dataclass(frozen=True)
class SamplePlan:
    """The deterministic data stream: image order by epochs of random permutations, one scale per step
    (MDSR: a random one of `scales`) or per sample (VDSR: `per_sample_scale`)."""

    n_images: int
    batch: int
    seed: int
    scales: tuple[int, ...]
    per_sample_scale: bool

    def image_for(self, position: int) -> int:
        epoch, index = divmod(position, self.n_images)
        return int(_permutation(self.seed, epoch, self.n_images)[index])

    def keys(self, step: int, rank: int = 0, world_size: int = 1) -> list[SampleKey]:
        if self.batch % world_size:
            raise DatasetError(f"--batch {self.batch} is not divisible by the {world_size} torchrun processes")
        share = self.batch // world_size
        step_scale = self.scales[0] if len(self.scales) == 1 else int(
            np.random.default_rng([self.seed, 1, step]).choice(self.scales))
        keys = []
        for slot in range(rank * share, (rank + 1) * share):
            scale = step_scale
            if self.per_sample_scale and len(self.scales) > 1:
                scale = int(np.random.default_rng([self.seed, 2, step, slot]).choice(self.scales))
            keys.append(SampleKey(step, slot, self.image_for(step * self.batch + slot), scale))
        return keys


_PERMUTATIONS: dict[tuple[int, int, int], np.ndarray] = {}


def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    key = (seed, epoch, n)
    if key not in _PERMUTATIONS:
        if len(_PERMUTATIONS) > 8:
            _PERMUTATIONS.clear()
        _PERMUTATIONS[key] = np.random.default_rng([seed, 0, epoch]).permutation(n)
    return _PERMUTATIONS[key]


class StepBatches(torch.utils.data.Sampler[list[SampleKey]]):
    """This process's share of steps `start` .. `stop - 1`, one list of keys per step (a batch_sampler)."""

    def __init__(self, plan: SamplePlan, start: int, stop: int, rank: int = 0, world_size: int = 1) -> None:
        self.plan, self.start, self.stop, self.rank, self.world_size = plan, start, stop, rank, world_size

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step in range(self.start, self.stop):
            yield self.plan.keys(step, self.rank, self.world_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


# --- cutting patches --------------------------------------------------------------------------------------


class PatchDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """(input, target, scale) patches in [0, 1], CHW float32, for a `SampleKey`.

    "rgb": input is a patch x patch LR crop, target the aligned (patch*s)^2 HR crop.
    "y-upscaled": input and target are the same patch x patch window of the upscaled Y and the HR Y.
    Augmentation (EDSR Sec. 4.2, VDSR Sec. 4.1): random horizontal flip, vertical flip, transpose.
    """

    def __init__(self, data: TrainingSet, patch: int, seed: int, augment: bool = True) -> None:
        self.data, self.patch, self.seed, self.augment = data, patch, seed, augment
        self._arrays: dict[Path, np.ndarray] = {}  # per process: memory maps opened lazily

    def __len__(self) -> int:
        return len(self.data)

    def __getstate__(self) -> dict[str, object]:
        # Worker processes open their own memory maps; never pickle the mapped arrays themselves.
        return {**self.__dict__, "_arrays": {}}

    def _array(self, path: Path) -> np.ndarray:
        array = self._arrays.get(path)
        if array is None:
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise InputError(f"{path}: training cache unreadable ({error}); delete it and run again") from None
            self._arrays[path] = array
        return array

    def __getitem__(self, key: SampleKey) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = self.data.images[key.image]
        s, p = key.scale, self.patch
        rng = np.random.default_rng([self.seed, 3, key.step, key.slot])
        source = self._array(image.inputs[s])
        target = self._array(image.targets[s])
        h, w = source.shape[:2]
        y, x = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        if self.data.kind == "rgb":
            lr = np.asarray(source[y:y + p, x:x + p], dtype=np.float32) / 255.0
            hr = np.asarray(target[y * s:(y + p) * s, x * s:(x + p) * s], dtype=np.float32) / 255.0
        else:
            lr = np.asarray(source[y:y + p, x:x + p], dtype=np.float32)[..., None]
            hr = np.asarray(target[y:y + p, x:x + p], dtype=np.float32)[..., None]
        if self.augment:
            hflip, vflip, transpose = (bool(v) for v in rng.integers(0, 2, size=3))
            lr, hr = _augment(lr, hflip, vflip, transpose), _augment(hr, hflip, vflip, transpose)
        return (torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))), s)


def _augment(patch: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    if hflip:
        patch = patch[:, ::-1]
    if vflip:
        patch = patch[::-1]
    if transpose:
        patch = patch.transpose(1, 0, 2)
    return patch


def collate_patches(items: list[tuple[torch.Tensor, torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Stack a step's patches: (inputs [N,C,p,p], targets [N,C,P,P], per-sample scales)."""
    return (torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items]), [i[2] for i in items])

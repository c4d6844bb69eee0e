"""DIV2K (Agustsson & Timofte, NTIRE 2017): the 800 training HR images, downloaded on demand.

The archive (3.5 GB) is fetched with `files.http.download_to` (progress, resume, disk-space check, size +
sha256 while streaming, a lock) and unpacked once into the cache; `--data div2k` then trains on `DIV2K_train_HR/`.
Checksums: tensorflow/datasets `url_checksums/div2k.txt` (size and sha256 of each official archive).
`SR_DIV2K_BASE_URL` points at a mirror that serves the same file names.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sr_cli.errors import DatasetError, OutputError
from sr_cli.files.atomic import write_bytes_atomic
from sr_cli.files.digest import ExpectedSha256
from sr_cli.files.http import Progress, download_to
from sr_cli.files.places import cache_root

OFFICIAL_BASE_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"


@dataclass(frozen=True)
class ArchiveSpec:
    filename: str
    size: int
    sha256: str
    folder: str  # the top-level folder inside the archive
    images: int  # how many images it holds


DIV2K_TRAIN_HR = ArchiveSpec("DIV2K_train_HR.zip", 3_530_603_713,
                             "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335", "DIV2K_train_HR", 800)
DIV2K_VALID_HR = ArchiveSpec("DIV2K_valid_HR.zip", 448_993_893,
                             "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc", "DIV2K_valid_HR", 100)


def datasets_root() -> Path:
    return cache_root() / "datasets"


def ensure_archive(spec: ArchiveSpec, *, root: Path | None = None, base_url: str | None = None,
                   progress: Progress | None = None) -> Path:
    """The unpacked folder of `spec` under `root` (default: the sr cache), downloading it if needed."""
    root = root or datasets_root() / "div2k"
    target = root / spec.folder
    marker = target / ".complete"
    if marker.is_file():
        return target
    base = base_url or os.environ.get("SR_DIV2K_BASE_URL") or OFFICIAL_BASE_URL
    archive = download_to(base.rstrip("/") + "/" + spec.filename, root / spec.filename,
                          ExpectedSha256.full(spec.sha256), spec.size, progress=progress)
    _unpack(archive, spec, root)
    archive.unlink()  # the images are what we keep; the archive would double the disk use
    return target


def _unpack(archive: Path, spec: ArchiveSpec, root: Path) -> None:
    staging = root / f".{spec.folder}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist() if not m.is_dir()]
            for member in members:
                parts = PurePosixPath(member.filename).parts
                if member.filename.startswith("/") or ".." in parts or not parts or parts[0] != spec.folder:
                    raise DatasetError(f"{archive}: unexpected entry {member.filename!r}; delete the file and run again")
            images = [m for m in members if m.filename.lower().endswith(".png")]
            if len(images) != spec.images:
                raise DatasetError(f"{archive}: {len(images)} images, expected {spec.images}; delete it and run again")
            bundle.extractall(staging)
        target = root / spec.folder
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging / spec.folder, target)
        write_bytes_atomic(target / ".complete", f"{spec.sha256}\n".encode(), overwrite=True)
    except zipfile.BadZipFile:
        raise DatasetError(f"{archive}: not a zip archive; delete it and run again") from None
    except OSError as error:
        raise OutputError(f"{root}: cannot unpack {archive.name} ({error.strerror or error}); check free space") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""`--data div2k`: the archive is downloaded on demand (progress, resume, size + sha256, disk space) and
unpacked once. No network here: a local HTTP server serves a tiny fake archive."""
from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from http_fault_server import FaultServer
from PIL import Image

from sr_cli.data.div2k import ArchiveSpec, ensure_archive
from sr_cli.errors import ChecksumError, DownloadError, OutputError
from sr_cli.files import http


def _fake_archive(count: int = 3) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        for index in range(count):
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(png, format="PNG")
            bundle.writestr(f"DIV2K_train_HR/{index + 1:04d}.png", png.getvalue())
    return buffer.getvalue()


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


class Served(NamedTuple):
    server: FaultServer
    spec: ArchiveSpec
    data: bytes


@pytest.fixture()
def served() -> Iterator[Served]:
    data = _fake_archive()
    spec = ArchiveSpec("DIV2K_train_HR.zip", len(data), hashlib.sha256(data).hexdigest(), "DIV2K_train_HR", 3)
    with FaultServer() as server:
        server.add_file("/div2k/DIV2K_train_HR.zip", data)
        yield Served(server, spec, data)


def test_interrupted_download_resumes_and_unpacks(served: Served, tmp_path: Path) -> None:
    server, spec = served.server, served.spec
    server.set_fault("/div2k/DIV2K_train_HR.zip", "truncate", times=1)
    base = server.url("/div2k/")
    with pytest.raises(DownloadError, match="run again"):
        ensure_archive(spec, root=tmp_path, base_url=base)
    part = tmp_path / "DIV2K_train_HR.zip.part"
    partial_size = part.stat().st_size
    assert 0 < partial_size < spec.size
    seen: list[tuple[int, int]] = []
    folder = ensure_archive(spec, root=tmp_path, base_url=base, progress=lambda d, t: seen.append((d, t)))
    assert sorted(p.name for p in folder.glob("*.png")) == ["0001.png", "0002.png", "0003.png"]
    gets = server.gets("/div2k/DIV2K_train_HR.zip")
    assert gets[-1].range == f"bytes={partial_size}-" and gets[-1].status == 206 and seen[-1] == (spec.size, spec.size)
    assert not (tmp_path / "DIV2K_train_HR.zip").exists()  # the archive is not kept beside the images
    assert ensure_archive(spec, root=tmp_path, base_url=base) == folder  # unpacked once
    assert len(server.gets("/div2k/DIV2K_train_HR.zip")) == len(gets)


def test_wrong_checksum_is_not_kept(served: Served, tmp_path: Path) -> None:
    spec = ArchiveSpec(served.spec.filename, served.spec.size, "0" * 64, served.spec.folder, served.spec.images)
    with pytest.raises(ChecksumError, match="does not match"):
        ensure_archive(spec, root=tmp_path, base_url=served.server.url("/div2k/"))
    assert not list(tmp_path.glob("DIV2K_train_HR.zip*"))


def test_too_little_disk_space_is_a_clear_error(served: Served, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http.shutil, "disk_usage", lambda _p: DiskUsage(10**12, 10**12 - 1000, 1000))
    with pytest.raises(OutputError, match="GB free; free space or set SR_CACHE_DIR"):
        ensure_archive(served.spec, root=tmp_path, base_url=served.server.url("/div2k/"))
    assert served.server.gets("/div2k/DIV2K_train_HR.zip") == []  # refused before any byte was asked for

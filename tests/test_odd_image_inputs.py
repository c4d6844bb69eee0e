"""Image inputs that are not regular files, and library warnings (issue 11, causes 4, 8 and 14).

A FIFO must never be opened (open() blocks until a writer comes) and a link to /dev/zero never read (it
never ends). Each odd path is read in a child process with a capped address space and a timeout, so a
reader that does open or read it fails the test instead of hanging it or filling this machine's memory.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import odd_paths
import pytest
from cli_support import run_cli
from odd_paths import ODD_PATHS
from PIL import Image

from sr_cli.imageio import read_image

REPO = Path(__file__).resolve().parents[1]


# what each odd path must be called (tests/odd_paths.py builds them)
ODD: dict[str, str] = {
    "fifo": "is a named pipe (FIFO), not an image",
    "dev_zero_link": "is a character device (/dev/zero, through a link), not an image",
    "folder": "is a folder, not an image",
    "symlink_loop": "a symbolic link loop",
}

_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from sr_cli.imageio import read_image
try:
    read_image(sys.argv[1])
    print(json.dumps(["read", ""]))
except BaseException as error:
    print(json.dumps([type(error).__name__, str(error)]))
"""


@pytest.mark.parametrize("case", sorted(ODD))
def test_a_path_that_is_no_regular_file_is_refused_unopened(tmp_path: Path, case: str) -> None:
    expected = ODD[case]
    path = ODD_PATHS[case](tmp_path, "photo.png")
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                               timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: read_image blocked")
    kind, message = json.loads(child.stdout.splitlines()[-1])
    assert kind == "InputError" and expected in message and str(path) in message, (kind, message)


@pytest.mark.timeout(60)
def test_downscale_of_a_fifo_says_so_and_does_not_hang(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = odd_paths.fifo(tmp_path, "photo.png")
    result = run_cli(capsys, ["downscale", str(fifo), "--scale", "2", "-o", str(tmp_path / "lr")])
    assert result.returncode == 3 and "is a named pipe (FIFO)" in result.stderr


def _jpeg_with_damaged_exif() -> bytes:
    """One IFD entry whose value lies beyond the EXIF block: Pillow warns ("Tag data larger than file")."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHII", 0x010E, 2, 100, 5000)
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "JPEG", exif=b"Exif\x00\x00" + tiff + b"\0" * 4)
    return buffer.getvalue()


def test_library_warnings_become_notes_of_the_image(tmp_path: Path) -> None:
    path = tmp_path / "damaged_exif.jpg"
    path.write_bytes(_jpeg_with_damaged_exif())
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        image = read_image(path)
    assert [str(w.message) for w in escaped] == []
    # The wording is Pillow's and changes between releases ("Tag data larger than file", "Truncated File Read").
    assert any(note.startswith("the decoder warned: ") for note in image.notes), image.notes


def test_a_large_but_allowed_image_raises_no_bomb_warning(tmp_path: Path) -> None:
    """90 Mpx: above Pillow's 89 Mpx warning, within sr's budget, so nothing to warn about at all."""
    import zlib

    packer = zlib.compressobj(9)
    width, height = 9500, 9500
    body = b"".join(packer.compress(b"\0" * (width + 1)) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        image = read_image(path)
    assert image.pixels.shape == (height, width, 1) and escaped == [] and image.notes == []


def test_the_cli_shows_a_library_warning_as_one_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from sr_cli.archs.edsr import EDSR, EDSRParams

    (tmp_path / "in.jpg").write_bytes(_jpeg_with_damaged_exif())
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), tmp_path / "w.pt")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        result = run_cli(capsys, ["upscale", str(tmp_path / "in.jpg"), "--weights", str(tmp_path / "w.pt"),
                                  "--scale", "2", "--device", "cpu", "-o", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    assert [str(w.message) for w in escaped if "PIL" in w.filename] == []  # none of Pillow's escaped
    assert "in.jpg: the decoder warned: " in result.stderr
    assert "site-packages" not in result.stderr and "UserWarning" not in result.stderr


def _pillow_rgb(path: Path) -> np.ndarray:
    """The independent reference: Pillow's own RGB conversion (its warning about the EXIF is expected here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as reference:
            return np.asarray(reference.convert("RGB"))


def test_benchmark_images_are_opened_like_any_input_and_decoded_as_before(tmp_path: Path) -> None:
    """The eval reader refuses what read_image refuses, keeps the warnings in, and its pixels stay Pillow's own
    conversion (the published scores were computed from exactly these)."""
    from sr_cli.data.benchmarks import read_rgb_or_gray
    from sr_cli.errors import InputError

    with pytest.raises(InputError, match=r"is a character device \(/dev/zero, through a link\)"):
        read_rgb_or_gray(odd_paths.dev_zero_link(tmp_path, "photo.png"))
    path = tmp_path / "damaged_exif.jpg"
    path.write_bytes(_jpeg_with_damaged_exif())
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        pixels = read_rgb_or_gray(path)
    assert [str(w.message) for w in escaped] == []
    assert np.array_equal(pixels, _pillow_rgb(path))


def test_training_images_are_opened_like_any_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_cli.data.training import prepare_training_set
    from sr_cli.errors import DatasetError

    folder = tmp_path / "hr"
    folder.mkdir()
    (folder / "damaged_exif.jpg").write_bytes(_jpeg_with_damaged_exif())
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        prepared = prepare_training_set(folder, (2,), kind="rgb", patch=2, cache_dir=tmp_path / "cache")
    assert [str(w.message) for w in escaped] == []
    assert np.array_equal(np.load(prepared.images[0].hr), _pillow_rgb(folder / "damaged_exif.jpg"))
    monkeypatch.setenv("SR_MAX_PIXELS", "10")
    with pytest.raises(DatasetError, match=r"damaged_exif\.jpg: 8x8 \(64 px\) is more than sr reads \(limit 10 px"):
        prepare_training_set(folder, (2,), kind="rgb", patch=2, cache_dir=tmp_path / "other-cache")

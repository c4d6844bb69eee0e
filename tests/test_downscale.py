"""sr downscale: bit-exact benchmark LR files, atomic writes, never overwriting, errors per file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_support import CliResult, run_cli
from PIL import Image

from sr_cli.resize import imresize


def run(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    return run_cli(capsys, ["downscale", *args])


def test_remakes_shipped_lr_files_and_keeps_gray(capsys: pytest.CaptureFixture[str], datasets_dir: Path, tmp_path: Path) -> None:
    inputs = [datasets_dir / "set14" / "HR" / "bridge.png", datasets_dir / "set5" / "HR" / "woman.png"]
    done = run(capsys, *map(str, inputs), "--scale", "3", "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for hr in inputs:
        made = Image.open(tmp_path / hr.name)
        shipped = Image.open(hr.parent.parent / "LR_bicubic" / "X3" / hr.name)
        assert made.mode == shipped.mode
        assert np.array_equal(np.asarray(made), np.asarray(shipped))


def test_16_bit_and_alpha_are_resized_in_their_own_depth(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (13, 10, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = tmp_path / "out"
    done = run(capsys, str(tmp_path / "rgba.png"), "-s", "2", "-o", str(out))
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(out / "rgba.png")), imresize(rgba[:12, :10], 0.5))


def test_existing_output_is_an_error_per_file_and_inputs_are_never_replaced(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    done = run(capsys, str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-s", "2", "-o", str(out))
    assert done.returncode == 4
    assert "a.png" in done.stderr and "--overwrite" in done.stderr
    assert (out / "a.png").read_bytes() == b"keep me"
    assert (out / "b.png").is_file()  # the other file still got done
    before = (tmp_path / "a.png").read_bytes()
    done = run(capsys, str(tmp_path / "a.png"), "-s", "2", "-o", str(tmp_path), "--overwrite")
    assert done.returncode == 4 and "input" in done.stderr
    assert (tmp_path / "a.png").read_bytes() == before
    assert not list(tmp_path.rglob("*.tmp"))


def test_unreadable_file_and_bad_scale(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    done = run(capsys, str(tmp_path / "broken.png"), "-s", "2", "-o", str(tmp_path / "o"))
    assert done.returncode == 3 and "broken.png" in done.stderr
    done = run(capsys, str(tmp_path / "broken.png"), "-s", "1", "-o", str(tmp_path / "o"))
    assert done.returncode == 2

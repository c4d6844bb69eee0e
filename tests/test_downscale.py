"""sr downscale: bit-exact benchmark LR files, atomic writes, never overwriting, errors per file."""
from __future__ import annotations

import os
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


def test_cause16_existing_outputs_are_refused_up_front_and_inputs_are_never_replaced(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Issue 11: existing outputs failed file by file (exit 4, the rest done) where upscale refuses up front."""
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    (out / "c.png").write_bytes(b"keep me too")
    done = run(capsys, *(str(tmp_path / f"{name}.png") for name in "abc"), "-s", "2", "-o", str(out))
    assert done.returncode == 4 and done.stderr.count("\n") == 1
    assert "2 output(s) already exist" in done.stderr and "a.png" in done.stderr and "--overwrite" in done.stderr
    assert (out / "a.png").read_bytes() == b"keep me" and (out / "c.png").read_bytes() == b"keep me too"
    assert not (out / "b.png").exists()  # refused before any work
    done = run(capsys, *(str(tmp_path / f"{name}.png") for name in "abc"), "-s", "2", "-o", str(out), "--overwrite")
    assert done.returncode == 0 and Image.open(out / "a.png").size == (4, 4)
    before = (tmp_path / "a.png").read_bytes()
    done = run(capsys, str(tmp_path / "a.png"), "-s", "2", "-o", str(tmp_path), "--overwrite")
    assert done.returncode == 2 and "input itself" in done.stderr
    assert (tmp_path / "a.png").read_bytes() == before
    assert not list(tmp_path.rglob("*.tmp"))


def test_special_files_are_refused_and_non_images_passed_over(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")  # opening it would block forever
    done = run(capsys, str(tmp_path / "pipe.png"), "-s", "2", "-o", str(tmp_path / "o"))
    assert done.returncode == 3 and "not a regular file" in done.stderr and not (tmp_path / "o").exists()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    done = run(capsys, str(tmp_path), "-s", "2", "-o", str(tmp_path / "o"))
    assert done.returncode == 0 and "pipe.png: skipped" in done.stderr and "notes.txt: skipped" in done.stderr


def test_unreadable_file_and_bad_scale(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    done = run(capsys, str(tmp_path / "broken.png"), "-s", "2", "-o", str(tmp_path / "o"))
    assert done.returncode == 3 and "broken.png" in done.stderr
    done = run(capsys, str(tmp_path / "broken.png"), "-s", "1", "-o", str(tmp_path / "o"))
    assert done.returncode == 2

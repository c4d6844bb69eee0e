"""`sr upscale` end to end: batch summary, exit codes, --json, skip/overwrite, Ctrl-C, bit depth, alpha.

In-process runs replace `sr_cli.api.load_model` by a nearest-neighbour x2 stand-in (tests/run_support.py), so
every output pixel is known independently (np.kron); the last test runs the real `sr` with the real VDSR weights.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import CliResult, run_cli
from PIL import Image as PILImage
from run_support import NearestX2, nearest_x2, replace_load_model

from sr_cli.imageio import read_image, write_image

RNG = np.random.default_rng(7)


def run_sr(args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, ["upscale", *args])


def make_inputs(folder: Path, count: int = 3) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index in range(count):
        pixels = RNG.integers(0, 256, (6 + index, 5, 3)).astype(np.uint8)
        write_image(folder / f"img{index}.png", pixels)
        images.append(pixels)
    return images


def test_one_corrupt_file_does_not_stop_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    images = make_inputs(tmp_path / "in")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a png")
    (tmp_path / "in" / "readme.txt").write_text("not an image")
    calls = replace_load_model(monkeypatch, NearestX2())
    code, out, err = run_sr([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "edsr", "--scale", "2", "--json"], capsys)
    assert code == 3  # InputError's exit code: the first (only) failure
    assert len(calls) == 1  # loaded once for the whole batch
    records = {Path(record["input"]).name: record for record in map(json.loads, out.splitlines())}
    assert set(records) == {"broken.png", "img0.png", "img1.png", "img2.png"}
    assert records["broken.png"]["status"] == "failed" and "broken.png" in records["broken.png"]["reason"]
    for index, pixels in enumerate(images):
        record = records[f"img{index}.png"]
        assert record["status"] == "done" and record["output_size"] == [10, 2 * (6 + index)]
        assert Path(record["output"]) == tmp_path / "out" / f"img{index}_x2_edsr.png"
        np.testing.assert_array_equal(read_image(record["output"]).pixels, nearest_x2(pixels))
    assert "done 3, skipped 0, failed 1" in err
    assert "readme.txt" in err and "broken.png" in err
    assert not (tmp_path / "out" / "broken_x2_edsr.png").exists()


def test_existing_outputs_error_then_skip_then_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    make_inputs(tmp_path / "in")
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "edsr", "--scale", "2"]
    replace_load_model(monkeypatch, NearestX2())
    assert run_sr(args, capsys)[0] == 0
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "out").iterdir()}

    code, _, err = run_sr(args, capsys)
    assert code == 4 and "3 output(s) already exist" in err and "--skip-existing" in err

    replace_load_model(monkeypatch, None)  # nothing to do: the model must not even load
    code, out, err = run_sr([*args, "--skip-existing", "--json"], capsys)
    assert code == 0 and "done 0, skipped 3, failed 0" in err
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["skipped"] * 3
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "out").iterdir()} == stamps

    replace_load_model(monkeypatch, NearestX2())
    code, _, err = run_sr([*args, "--overwrite"], capsys)
    assert code == 0 and "done 3, skipped 0, failed 0" in err


def test_ctrl_c_leaves_no_partial_files_and_skip_existing_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    images = make_inputs(tmp_path / "in", count=4)
    args = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "edsr", "--scale", "2"]
    replace_load_model(monkeypatch, NearestX2(interrupt_on_call=3))
    code, _, err = run_sr(args, capsys)
    assert code == 130  # typer turns KeyboardInterrupt into exit 130
    out = tmp_path / "out"  # created by the writer: absent when the stop came before the first write finished
    written = sorted(out.iterdir()) if out.exists() else []
    assert len(written) <= 2 and not any(path.suffix == ".tmp" for path in written)
    for path in written:  # whatever is there is complete
        index = int(path.name[3])
        np.testing.assert_array_equal(read_image(path).pixels, nearest_x2(images[index]))

    replace_load_model(monkeypatch, NearestX2())
    code, _, err = run_sr([*args, "--skip-existing"], capsys)
    assert code == 0 and f"done {4 - len(written)}, skipped {len(written)}, failed 0" in err
    for index, pixels in enumerate(images):
        np.testing.assert_array_equal(read_image(tmp_path / "out" / f"img{index}_x2_edsr.png").pixels, nearest_x2(pixels))
    assert not any(path.suffix == ".tmp" for path in (tmp_path / "out").iterdir())


def test_bit_depth_gray_and_hard_alpha_survive_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    gray16 = RNG.integers(0, 65536, (7, 5, 1)).astype(np.uint16)
    la16 = RNG.integers(0, 65536, (4, 6, 2)).astype(np.uint16)
    rgba = RNG.integers(0, 256, (8, 8, 4)).astype(np.uint8)
    rgba[:, :, 3] = np.where(np.arange(8)[None, :] < 4, 0, 255)  # hard edge, random colour under alpha 0
    for name, pixels in (("gray16.png", gray16), ("la16.png", la16), ("rgba.tiff", rgba)):
        write_image(tmp_path / name, pixels)
    replace_load_model(monkeypatch, NearestX2())
    code, _, _ = run_sr([str(tmp_path / "gray16.png"), str(tmp_path / "la16.png"), str(tmp_path / "rgba.tiff"), "--model", "m", "--scale", "2"], capsys)
    assert code == 0
    for name, pixels in (("gray16_x2_m.png", gray16), ("la16_x2_m.png", la16), ("rgba_x2_m.tiff", rgba)):
        result = read_image(tmp_path / name)
        assert result.pixels.dtype == pixels.dtype and result.pixels.shape[2] == pixels.shape[2]
        np.testing.assert_array_equal(result.pixels, nearest_x2(pixels))


def test_bit_depth_16_from_8_bit_input_and_8_from_16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pixels8 = RNG.integers(0, 256, (5, 4, 3)).astype(np.uint8)
    pixels16 = RNG.integers(0, 65536, (5, 4, 3)).astype(np.uint16)
    write_image(tmp_path / "a.png", pixels8)
    write_image(tmp_path / "b.png", pixels16)
    replace_load_model(monkeypatch, NearestX2())
    assert run_sr([str(tmp_path / "a.png"), "-o", str(tmp_path / "a16.png"), "--model", "m", "--scale", "2", "--bit-depth", "16"], capsys)[0] == 0
    np.testing.assert_array_equal(read_image(tmp_path / "a16.png").pixels, nearest_x2(pixels8).astype(np.uint16) * 257)
    assert run_sr([str(tmp_path / "b.png"), "-o", str(tmp_path / "b8.png"), "--model", "m", "--scale", "2", "--bit-depth", "8"], capsys)[0] == 0
    expected = np.floor(nearest_x2(pixels16) / 257.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "b8.png").pixels, expected)


def test_alpha_into_jpg_fails_that_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "rgba.png", RNG.integers(0, 256, (4, 4, 4)).astype(np.uint8))
    write_image(tmp_path / "rgb.png", RNG.integers(0, 256, (4, 4, 3)).astype(np.uint8))
    replace_load_model(monkeypatch, NearestX2())
    code, out, err = run_sr([str(tmp_path / "rgba.png"), str(tmp_path / "rgb.png"), "--model", "m", "--scale", "2", "--format", "jpg", "--json"], capsys)
    assert code == 4
    statuses = {Path(record["input"]).name: (record["status"], record["reason"]) for record in map(json.loads, out.splitlines())}
    assert statuses["rgb.png"] == ("done", None)
    assert statuses["rgba.png"][0] == "failed" and "alpha" in statuses["rgba.png"][1]
    assert (tmp_path / "rgb_x2_m.jpg").exists() and not (tmp_path / "rgba_x2_m.jpg").exists()


@pytest.mark.parametrize("extra,message", [
    (["--model", "a", "--weights", "b.pth", "--scale", "2"], "not both"),
    (["--model", "mdsr"], "pass --scale 2, 3 or 4"),
    (["--model", "a", "--scale", "2", "--overwrite", "--skip-existing"], "contradict"),
    (["--model", "a", "--scale", "2", "--tile", "big"], "--tile"),
    (["--model", "a", "--scale", "2", "--bit-depth", "16", "--format", "jpg"], "png or tiff"),
    (["--model", "a", "--scale", "2", "--bit-depth", "12"], "8 or 16"),
    (["--model", "a", "--scale", "2", "--quality", "101"], "use 1 to 100"),
    (["--model", "esrgan", "--alpha", "1.5"], "use 0 (the PSNR model) to 1"),
])
def test_usage_errors_exit_2_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    make_inputs(tmp_path, count=1)
    replace_load_model(monkeypatch, None)
    code, _, err = run_sr([str(tmp_path / "img0.png"), *extra], capsys)
    assert code == 2 and message in err


def test_missing_input_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    replace_load_model(monkeypatch, None)
    code, _, err = run_sr([str(tmp_path / "absent.png"), "--model", "a", "--scale", "2"], capsys)
    assert code == 3 and "absent.png" in err


# --- the real thing ---------------------------------------------------------------------------------

def y_psnr(a: np.ndarray, b: np.ndarray, border: int) -> float:
    """PSNR on BT.601 luma (0..255 scale), borders cropped: written here, independent of sr_cli.metrics."""
    def luma(rgb: np.ndarray) -> np.ndarray:
        rgb = rgb.astype(np.float64)
        return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
    difference = (luma(a) - luma(b))[border:-border, border:-border]
    return float(10.0 * np.log10(255.0 ** 2 / np.mean(difference ** 2)))


def sr_command() -> list[str]:
    script = Path(sys.executable).with_name("sr")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sr_cli"]


def test_real_sr_with_vdsr_beats_bicubic_on_set5(tmp_path: Path, datasets_dir: Path, vdsr_weights: Path) -> None:
    names = ["bird", "butterfly"]
    inputs = [str(datasets_dir / "set5" / "LR_bicubic" / "X2" / f"{name}.png") for name in names]
    completed = subprocess.run(
        [*sr_command(), "upscale", *inputs, "-o", str(tmp_path), "--weights", str(vdsr_weights), "--scale", "2", "--json"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "SR_OFFLINE": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [record["status"] for record in records] == ["done", "done"]
    for name in names:
        hr = np.asarray(PILImage.open(datasets_dir / "set5" / "HR" / f"{name}.png").convert("RGB"))
        lr = PILImage.open(datasets_dir / "set5" / "LR_bicubic" / "X2" / f"{name}.png").convert("RGB")
        output = np.asarray(PILImage.open(tmp_path / f"{name}_x2_model_epoch_50.png").convert("RGB"))
        assert output.shape == (2 * lr.height, 2 * lr.width, 3) == hr.shape
        bicubic = np.asarray(lr.resize((2 * lr.width, 2 * lr.height), PILImage.Resampling.BICUBIC))
        gain = y_psnr(output, hr, border=2) - y_psnr(bicubic, hr, border=2)
        assert gain > 1.0, f"{name}: VDSR only {gain:.2f} dB above bicubic"


def test_real_engine_with_a_synthesised_edsr_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A random-init tiny EDSR saved as a plain state dict runs through `--weights`; each output is what
    the Python API gives for the same pixels (the command adds no processing of its own), with the
    input's dtype and channel count."""
    import torch

    from sr_cli.api import UpscaleOptions, load_model
    from sr_cli.archs.edsr import EDSR, EDSRParams

    torch.manual_seed(0)
    weights = tmp_path / "tiny_edsr.pt"
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), weights)
    inputs: dict[str, np.ndarray] = {
        "rgb.png": RNG.integers(0, 256, (9, 7, 3)).astype(np.uint8),
        "gray16.png": RNG.integers(0, 65536, (6, 8, 1)).astype(np.uint16),
        "rgba.tiff": RNG.integers(0, 256, (8, 8, 4)).astype(np.uint8),
    }
    inputs["rgba.tiff"][:, :4, 3] = 0
    for name, pixels in inputs.items():
        write_image(tmp_path / name, pixels, quality=100)
    code, out, err = run_sr([*(str(tmp_path / name) for name in inputs), "-o", str(tmp_path / "out"),
                             "--weights", str(weights), "--scale", "2", "--tile", "0", "--json"], capsys)
    assert code == 0, err
    reference = load_model(weights, 2, options=UpscaleOptions(tile=0))
    for name, pixels in inputs.items():
        stem, suffix = name.split(".")
        result = read_image(tmp_path / "out" / f"{stem}_x2_tiny_edsr.{suffix}").pixels
        assert result.shape == (2 * pixels.shape[0], 2 * pixels.shape[1], pixels.shape[2]) and result.dtype == pixels.dtype
        np.testing.assert_array_equal(result, reference.upscale(read_image(tmp_path / name).pixels))

"""sr's pixel budget (issue 11, causes 1 and 4): decompression bombs and absurd factors are refused from the
header or the factor, before decoding or allocating, in one line naming the size and --max-pixels."""
from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_cli
from PIL import Image

from sr_cli.api import UpscaleOptions, Upscaler
from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.archs.runtime import SRNet, build_module
from sr_cli.errors import InputError, OutputError, UsageError
from sr_cli.imageio import read_image
from sr_cli.imageio.budget import (
    DEFAULT_MAX_INPUT_PIXELS,
    DEFAULT_MAX_OUTPUT_PIXELS,
    PixelBudget,
    parse_pixel_count,
    pixel_budget,
)

REPO = Path(__file__).resolve().parents[1]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(width: int, height: int, idat: bytes) -> bytes:
    """An 8-bit grayscale PNG with the given IHDR size and IDAT payload (which may be garbage)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def zeros_png(width: int, height: int) -> bytes:
    """A valid all-black grayscale PNG, compressed row by row (a 12000x12000 one is ~140 kB)."""
    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + samples
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return png_bytes(width, height, body)


def test_the_header_is_checked_before_anything_is_decoded(tmp_path: Path) -> None:
    """The IDAT is garbage: a reader that decoded first would report a damaged file, not the size."""
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes(3000, 3000, b"not deflate data"))
    with pytest.raises(InputError) as refused:
        read_image(path, budget=PixelBudget(input=1_000_000, output=1_000_000))
    message = str(refused.value)
    assert "big.png: 3000x3000 (9.0 Mpx)" in message and "--max-pixels" in message and "SR_MAX_PIXELS" in message
    assert "\n" not in message


def test_the_default_input_limit_is_ours_not_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    over = tmp_path / "over.png"  # 210 Mpx: above our 200 Mpx and Pillow's 179 Mpx refusal
    over.write_bytes(png_bytes(15_000, 14_000, b"garbage"))
    with pytest.raises(InputError, match=r"15000x14000 \(210\.0 Mpx\) is more than sr reads.*--max-pixels"):
        read_image(over)
    # Raised: neither limit refuses it any more; the garbage pixel data is what is reported then.
    monkeypatch.setenv("SR_MAX_PIXELS", "1G")
    huge = tmp_path / "huge.png"  # 450 Mpx: more than twice Pillow's default limit
    huge.write_bytes(png_bytes(15_000, 30_000, b"garbage"))
    for path in (over, huge):
        with pytest.raises(InputError, match="not a readable image") as damaged:
            read_image(path)
        assert "decompression bomb" not in str(damaged.value).lower()


def test_pixel_counts_and_the_environment() -> None:
    assert parse_pixel_count("400M") == 400_000_000 and parse_pixel_count("1.5G") == 1_500_000_000
    assert parse_pixel_count("250000") == 250_000 and parse_pixel_count(" 2k ") == 2000
    for bad in ("lots", "-5", "0", "1e9", ""):
        with pytest.raises(UsageError):
            parse_pixel_count(bad)
    assert pixel_budget() == PixelBudget(DEFAULT_MAX_INPUT_PIXELS, DEFAULT_MAX_OUTPUT_PIXELS)
    assert pixel_budget("3M") == PixelBudget(3_000_000, 3_000_000)


def test_the_defaults_take_a_photographers_images() -> None:
    """A 100 Mpx medium-format frame is read, and a 24 Mpx one upscaled x4 (384 Mpx) is made."""
    assert 100_000_000 <= DEFAULT_MAX_INPUT_PIXELS and (6000 * 4) * (4000 * 4) <= DEFAULT_MAX_OUTPUT_PIXELS


def _net() -> SRNet:
    torch.manual_seed(3)
    return SRNet(build_module("edsr", EDSRParams(n_resblocks=1, n_feats=8, scale=2))).eval()


def test_the_output_is_checked_before_the_model_runs() -> None:
    net = _net()
    calls: list[int] = []
    net.register_forward_hook(lambda *_: calls.append(1))
    upscaler = Upscaler(net, name="tiny", output_scale=2, options=UpscaleOptions(tile=0, device="cpu", max_pixels=10_000))
    with pytest.raises(OutputError, match=r"the x2 result would be 128x128 \(16384 px\).*--max-pixels"):
        upscaler.upscale(np.zeros((64, 64, 3), np.uint8))
    assert calls == []
    assert upscaler.upscale(np.zeros((50, 50, 3), np.uint8)).shape == (100, 100, 3)  # 10000 px: at the limit


def test_a_factor_no_image_fits_is_refused_when_the_upscaler_is_made() -> None:
    with pytest.raises(UsageError, match=r"1e\+06: even a 1x1 image would become 1000000\.0 Mpx"):
        Upscaler(_net(), name="tiny", output_scale=1e6, options=UpscaleOptions(device="cpu"))


def _edsr_weights(path: Path) -> Path:
    torch.manual_seed(5)
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), path)
    return path


def test_scale_1e6_is_refused_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    weights = _edsr_weights(tmp_path / "edsr.pt")
    result = run_cli(capsys, ["upscale", str(tmp_path / "in.png"), "--weights", str(weights), "--scale", "1e6",
                              "-o", str(tmp_path / "out")])
    assert result.returncode == 2
    assert "--scale 1e+06: even a 1x1 image" in result.stderr and "--max-pixels" in result.stderr


def test_max_pixels_option_and_environment_reach_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (64, 64)).save(tmp_path / "in.png")
    weights = _edsr_weights(tmp_path / "edsr.pt")
    base = ["upscale", str(tmp_path / "in.png"), "--weights", str(weights), "--scale", "2", "--tile", "0", "--device", "cpu"]
    refused = run_cli(capsys, base + ["-o", str(tmp_path / "a"), "--max-pixels", "10k"])
    assert refused.returncode == 4 and "in.png: the x2 result would be 128x128" in refused.stderr
    assert not (tmp_path / "a" / "in_x2_edsr.png").exists()
    monkeypatch.setenv("SR_MAX_PIXELS", "1000")
    too_big_input = run_cli(capsys, base + ["-o", str(tmp_path / "b")])
    assert too_big_input.returncode == 3 and "in.png: 64x64 (4096 px) is more than sr reads" in too_big_input.stderr
    allowed = run_cli(capsys, base + ["-o", str(tmp_path / "c"), "--max-pixels", "20000"])  # the option wins
    assert allowed.returncode == 0, allowed.stderr
    assert Image.open(next((tmp_path / "c").iterdir())).size == (128, 128)


_BOMB_RUN = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from sr_cli.cli.app import main
main(sys.argv[1:])
"""


def test_the_issues_decompression_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """The issue's 140 kB PNG (12000x12000 gray zeros) drove `sr upscale` past 8 GiB: x2 it would be 576 Mpx,
    over the output limit, and must be refused before the model allocates anything. Run in a child whose
    address space is capped, so the test fails there instead of taking this machine's memory."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(zeros_png(12_000, 12_000))
    assert bomb.stat().st_size < 300_000
    weights = _edsr_weights(tmp_path / "edsr.pt")
    env = {key: value for key, value in os.environ.items() if key != "SR_MAX_PIXELS"}
    child = subprocess.run(
        [sys.executable, "-c", _BOMB_RUN.format(limit=3 << 30), "upscale", str(bomb), "--weights", str(weights),
         "--scale", "2", "--device", "cpu", "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(REPO)},
    )
    assert child.returncode == 4, child.stderr[-1500:]
    assert "bomb.png: the x2 result would be 24000x24000 (576.0 Mpx)" in child.stderr and "--max-pixels" in child.stderr
    assert "Traceback" not in child.stderr and "Warning" not in child.stderr


assert resource  # the child uses it; imported here so a platform without it fails at collection, not in the child


@pytest.mark.parametrize("command", ["downscale", "eval", "blend"])
def test_every_command_that_reads_images_takes_the_max_pixels_its_errors_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """The budget's message says "pass --max-pixels N": each command that can print it must accept it."""
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.new("RGB", (16, 16), (90, 40, 200)).save(folder / "photo.png")
    argv = {
        "downscale": ["downscale", str(folder / "photo.png"), "--scale", "2", "-o", str(tmp_path / "lr")],
        "eval": ["eval", "--dataset", str(folder), "--model", "bicubic", "--scale", "2"],
        "blend": ["blend", "--alpha", "0.5", "--mode", "image", "--image", str(folder / "photo.png"),
                  "-o", str(tmp_path / "blended.png")],
    }[command]
    refused = run_cli(capsys, [*argv, "--max-pixels", "100"])
    assert refused.returncode == 3, refused.stderr
    assert "16x16 (256 px) is more than sr reads (limit 100 px" in refused.stderr
    assert "pass --max-pixels N" in refused.stderr
    bad = run_cli(capsys, [*argv, "--max-pixels", "lots"])
    assert bad.returncode == 2 and "--max-pixels 'lots'" in bad.stderr, bad.stderr
    if command != "blend":  # blend would go on to load two ESRGAN models
        assert run_cli(capsys, [*argv, "--max-pixels", "256"]).returncode == 0

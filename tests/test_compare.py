"""`sr compare`: every panel is the model's (or bicubic's) output on the region, computed here
independently and compared crop by crop with the sheet; the sheet is the one sheet maker's; bad input is
refused before anything runs and nothing is written or replaced."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import CliResult, run_cli

from sr_cli.api import UpscaleOptions, load_model
from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.imageio import read_image, write_image
from sr_cli.imageio.sheet import contact_sheet
from sr_cli.resize import imresize

CPU = UpscaleOptions(tile=0, device="cpu")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, args)


def edsr_file(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(EDSR(EDSRParams(n_resblocks=2, n_feats=8, scale=2)).state_dict(), path)
    return path


def zoom(image: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def bicubic(pixels: np.ndarray, factor: int) -> np.ndarray:
    out = imresize(pixels.astype(np.float32) / 255.0, output_shape=(pixels.shape[0] * factor, pixels.shape[1] * factor))
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, np.ndarray, Path, Path]:
    pixels = np.random.default_rng(5).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    write_image(tmp_path / "photo.png", pixels)
    return tmp_path / "photo.png", pixels, edsr_file(tmp_path / "a.pth", 1), edsr_file(tmp_path / "b.pth", 2)


def test_panels_are_each_models_output_on_the_region_with_its_context(
        scene: tuple[Path, np.ndarray, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, pixels, a, b = scene
    sheet_path = tmp_path / "sheet.png"
    code, stdout, err = run(["compare", str(image), "--models", f"{a},{b}", "--crop", "20,10,12,8", "--zoom", "3",
                             "--device", "cpu", "-o", str(sheet_path), "--json"], capsys)
    assert code == 0, err
    record = json.loads(stdout)
    assert (record["command"], record["status"], record["output"]) == ("compare", "done", str(sheet_path))
    assert (record["crop"], record["scale"], record["zoom"]) == ([20, 10, 12, 8], 2.0, 3)
    assert [p["label"] for p in record["panels"]] == ["bicubic", "a", "b"]  # a file by its stem
    assert [p["model"] for p in record["panels"]] == ["bicubic", str(a), str(b)]
    # the region 20,10,12,8 with 16 px of context where the image has them: rows 0..34, columns 4..48;
    # its output x2, less the context's 2 * (10, 16) pixels at the top and left
    padded = pixels[0:34, 4:48]
    expected = [bicubic(padded, 2)] + [load_model(path, 2, options=CPU).upscale(padded) for path in (a, b)]
    expected = [out[20:36, 32:56] for out in expected]
    assert not np.array_equal(expected[1], expected[2])  # two models that differ: a swapped panel would show
    sheet = read_image(sheet_path).pixels
    assert list(sheet.shape[1::-1]) == record["size"]
    for panel, want in zip(record["panels"], expected, strict=True):
        x, y, w, h = panel["box"]
        assert (w, h) == (72, 48)
        assert np.array_equal(sheet[y:y + h, x:x + w], zoom(want, 3)), panel["label"]
    boxes = [p["box"] for p in record["panels"]]
    assert len({box[1] for box in boxes}) == 1 and boxes == sorted(boxes)  # one row, left to right
    title = "photo.png x2, region 20,10,12,8, shown x3"
    made = contact_sheet(expected, ["bicubic", "a", "b"], columns=3, zoom=3, title=title).pixels
    assert np.array_equal(sheet, made)  # the one sheet maker, labels and title included


def test_small_image_whole_and_a_bundled_model_at_its_own_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")
    pixels = np.random.default_rng(6).integers(0, 256, (12, 10, 3)).astype(np.uint8)
    write_image(tmp_path / "small.png", pixels)
    sheet_path = tmp_path / "sheet.png"
    code, stdout, err = run(["compare", str(tmp_path / "small.png"), "-m", "realesr-animevideov3", "--device", "cpu",
                             "-o", str(sheet_path)], capsys)
    assert code == 0, err
    assert stdout == f"{sheet_path}\n"  # the path alone, for scripts
    sheet = read_image(sheet_path).pixels
    model = load_model("realesr-animevideov3", options=CPU).upscale(pixels)
    # 48x40 panels, auto zoom 8 (the smallest showing them at 384 px); two panels side by side
    made = contact_sheet([bicubic(pixels, 4), model], ["bicubic", "realesr-animevideov3"], columns=2, zoom=8,
                         title="small.png x4, region 0,0,10,12, shown x8")
    assert np.array_equal(sheet, made.pixels)


@pytest.mark.parametrize("args, message", [
    (["--models", ""], "give model names or files separated by commas"),
    (["--models", "a.pth,,b.pth"], "give model names or files separated by commas"),
    (["--models", "{a},{a}"], "twice"),
    (["--models", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["--models", "missing.pth"], "is not a model name nor an existing weights file"),
    (["--models", "{a}", "--crop", "40,30,20,20"], "must lie inside the 50x40 image"),
    (["--models", "{a}", "--crop", "1,2,3"], "give x,y,width,height"),
    (["--models", "{a}", "--crop", "1,2,0,4"], "must lie inside"),
    (["--models", "{a}", "--scale", "-2"], "positive factor"),
    (["--models", "{a}", "--zoom", "0"], "--zoom 0: use a whole number from 1 to 16"),
    (["--models", "{a}", "--columns", "0"], "--columns 0"),
    (["--models", "{a}", "--tile", "8"], "tiles under 16 px"),
    (["--models", "{a}", "--tile", "big"], "--tile big: use a whole number"),
    (["--models", "{a}", "-o", "{a}.missing/sheet.png"], "does not exist"),
])
def test_bad_options_are_refused_and_nothing_is_written(scene: tuple[Path, np.ndarray, Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str], args: list[str],
                                                        message: str) -> None:
    image, _, a, _ = scene
    out = tmp_path / "sheet.png"
    code, stdout, err = run(["compare", str(image), "-o", str(out), *[arg.format(a=a) for arg in args]], capsys)
    assert code == 2 and message in err, err
    assert stdout == "" and not out.exists()


def test_an_existing_sheet_is_never_replaced_without_overwrite(scene: tuple[Path, np.ndarray, Path, Path],
                                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, _, a, _ = scene
    out = tmp_path / "sheet.png"
    out.write_bytes(b"precious")
    code, _, err = run(["compare", str(image), "-m", str(a), "-o", str(out)], capsys)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"precious"
    code, _, err = run(["compare", str(image), "-m", str(a), "-o", str(tmp_path / "sheet.txt")], capsys)
    assert code == 2 and ".png" in err and not (tmp_path / "sheet.txt").exists()
    code, stdout, err = run(["compare", str(image), "-m", str(a), "-o", str(out), "--overwrite", "-q"], capsys)
    assert code == 0 and err == "" and stdout == f"{out}\n"
    assert read_image(out).pixels.ndim == 3

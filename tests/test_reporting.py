"""What `sr upscale` and `sr downscale` say (issue 12, "say what happened"): written paths on stdout,
the closing summary and -v details on stderr, --json records, -q silence, --suffix naming.

The summary's device, precision and tile are checked against what the engine really did: a tiny
random EDSR checkpoint runs through the real engine, a forced --tile must come back as that tile, and
an auto tile reported must be one that, forced, gives the very same pixels.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_support import CliResult, run_cli
from run_support import NearestX2, StandInUpscaler, replace_load_model

from sr_cli.imageio import read_image, write_image

RNG = np.random.default_rng(12)
JSON_KEYS = {"command", "status", "input", "output", "reason", "exit_code", "notes", "input_size", "output_size",
             "bit_depth", "format", "seconds", "model", "weights_file", "weights_source", "weights_sha256", "alpha",
             "denoise", "device",
             "precision", "tile", "ensemble", "tiles", "oom_splits", "fp32_redos", "memory_budget", "cost_per_pixel"}


def images(folder: Path, names: tuple[str, ...] = ("a.png", "b.png", "c.png"), size: tuple[int, int] = (6, 5)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        write_image(folder / name, RNG.integers(0, 256, (*size, 3)).astype(np.uint8))
        paths.append(folder / name)
    return paths


def upscale(capsys: pytest.CaptureFixture[str], *args: str | Path) -> CliResult:
    return run_cli(capsys, ["upscale", *map(str, args)])


@pytest.fixture(scope="module")
def tiny_edsr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init EDSR x2 (1 block, 8 features) saved as a plain state dict: the real engine, fast."""
    import torch

    from sr_cli.archs.edsr import EDSR, EDSRParams

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny_edsr.pt"
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), path)
    return path


def records(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


# --- written paths on stdout ---------------------------------------------------------------------------

def test_written_paths_alone_on_stdout_and_the_summary_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    inputs = images(tmp_path / "in")
    replace_load_model(monkeypatch, NearestX2())
    code, out, err = upscale(capsys, tmp_path / "in", "-o", tmp_path / "out", "--model", "m", "--scale", "2")
    assert code == 0, err
    written = out.splitlines()
    assert written == [str(tmp_path / "out" / f"{path.stem}_x2_m.png") for path in inputs]  # one file per line
    for line in written:  # each line is a path `xargs` can hand on: the file exists and is the result
        assert read_image(line).pixels.shape == (12, 10, 3)
    assert "done 3, skipped 0, failed 0 in " in err and " s\n" in err
    assert "model nearest" in err


def test_skipped_outputs_are_not_printed_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path, ("a.png", "b.png"))
    replace_load_model(monkeypatch, NearestX2())
    assert upscale(capsys, tmp_path / "a.png", "--model", "m", "--scale", "2").returncode == 0
    code, out, err = upscale(capsys, tmp_path / "a.png", tmp_path / "b.png", "--model", "m", "--scale", "2", "--skip-existing")
    assert code == 0 and out.splitlines() == [str(tmp_path / "b_x2_m.png")]
    assert "done 1, skipped 1, failed 0" in err


def test_quiet_prints_paths_only_and_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path, ("a.png",))
    (tmp_path / "notes.txt").write_text("not an image")
    replace_load_model(monkeypatch, NearestX2())
    code, out, err = upscale(capsys, tmp_path / "a.png", "--model", "m", "--scale", "2", "-q")
    assert code == 0 and err == "" and out == f"{tmp_path / 'a_x2_m.png'}\n"
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not the rest")
    code, out, err = upscale(capsys, tmp_path, "--model", "m", "--scale", "2", "-q", "--overwrite")
    assert code == 3 and out == f"{tmp_path / 'a_x2_m.png'}\n"
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("failed: ")] and "broken.png" in err
    assert "notes.txt" not in err and "done" not in err  # warnings and the summary are not errors


def test_an_interruption_still_says_stopped_and_how_to_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path / "in", ("a.png", "b.png", "c.png", "d.png"))
    replace_load_model(monkeypatch, NearestX2(interrupt_on_call=3))
    code, out, err = upscale(capsys, tmp_path / "in", "-o", tmp_path / "out", "--model", "m", "--scale", "2")
    assert code == 130 and "stopped: done " in err and "--skip-existing" in err
    assert all(Path(line).is_file() for line in out.splitlines())  # only complete files are printed


# --- the summary and --json tell what the engine ran -------------------------------------------------------

def test_a_forced_tile_is_the_tile_reported(tmp_path: Path, tiny_edsr: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path, ("a.png",), size=(40, 24))
    code, out, err = upscale(capsys, tmp_path / "a.png", "-o", tmp_path / "out", "--weights", tiny_edsr,
                             "--tile", "16", "--json")
    assert code == 0, err
    (record,) = records(out)
    assert record["tile"] == 16 and record["memory_budget"] is None
    assert record["tiles"] == math.ceil(40 / 16) * math.ceil(24 / 16)  # the grid of 16 px cores over 40x24
    assert record["device"] == "cpu" and record["precision"] == "fp32" and record["ensemble"] is False
    assert "device cpu, precision fp32, tile 16 px, ensemble off" in err

    code, out, err = upscale(capsys, tmp_path / "a.png", "-o", tmp_path / "whole", "--weights", tiny_edsr,
                             "--tile", "0", "--ensemble")
    assert code == 0, err
    assert "tile whole image, ensemble on" in err and out == f"{tmp_path / 'whole' / 'a_x2_tiny_edsr.png'}\n"


def test_an_auto_tile_reported_is_the_one_that_ran(tmp_path: Path, tiny_edsr: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A tight memory budget makes the auto plan tile a 48x40 image; the tile it reports, forced with
    --tile, gives byte-identical pixels (another tile would blend other seams), and the budget reported
    is the one the planner was given."""
    images(tmp_path, ("a.png",), size=(48, 40))
    budget = 600_000
    monkeypatch.setattr("sr_cli.engine.upscale.memory_budget", lambda device: budget)
    code, out, err = upscale(capsys, tmp_path / "a.png", "-o", tmp_path / "auto", "--weights", tiny_edsr, "--json", "-v")
    assert code == 0, err
    (record,) = records(out)
    tile = record["tile"]
    assert isinstance(tile, int) and 0 < tile < 40 and record["memory_budget"] == budget
    assert isinstance(record["tiles"], int) and record["tiles"] > 1
    assert "tile: auto" in err and "memory budget 585.9 KiB" in err  # -v: the plan and its budget
    code, _, err = upscale(capsys, tmp_path / "a.png", "-o", tmp_path / "forced", "--weights", tiny_edsr, "--tile", str(tile))
    assert code == 0, err
    auto, forced = (read_image(tmp_path / folder / "a_x2_tiny_edsr.png").pixels for folder in ("auto", "forced"))
    np.testing.assert_array_equal(auto, forced)


def test_json_records_carry_what_ran_and_the_format_as_said(tmp_path: Path, tiny_edsr: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path, ("a.png", "b.png"))
    code, out, err = upscale(capsys, tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out", "--weights", tiny_edsr,
                             "--format", "jpg", "--tile", "0", "--json")
    assert code == 0, err
    digest = hashlib.sha256(tiny_edsr.read_bytes()).hexdigest()
    for record in records(out):
        assert set(record) == JSON_KEYS and list(record)[:2] == ["command", "status"]
        assert record["command"] == "upscale" and record["status"] == "done" and record["format"] == "jpg"
        assert str(record["output"]).endswith(".jpg") and Path(str(record["output"])).is_file()
        assert record["weights_file"] == str(tiny_edsr) and record["weights_source"] == "file"
        assert record["weights_sha256"] == digest and record["model"] == str(tiny_edsr)
        assert record["tile"] == 0 and record["tiles"] == 1 and isinstance(record["seconds"], float)
    code, out, _ = upscale(capsys, tmp_path / "a.png", "-o", tmp_path / "one.jpeg", "--weights", tiny_edsr, "--json")
    assert code == 0 and records(out)[0]["format"] == "jpeg"  # -o said jpeg


def test_the_bundled_file_is_named_as_bundled(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")
    images(tmp_path, ("a.png",), size=(8, 8))
    code, out, err = upscale(capsys, tmp_path / "a.png", "--model", "realesr-animevideov3", "--json", "-v")
    assert code == 0, err
    (record,) = records(out)
    assert record["weights_source"] == "bundled" and "sr_cli/bundled/" in str(record["weights_file"])
    assert f"weights: bundled {record['weights_file']} (sha256 {record['weights_sha256']})" in err
    assert "device: auto -> cpu; precision: auto -> fp32" in err


def test_verbose_says_what_was_resolved_and_normal_does_not(tmp_path: Path, tiny_edsr: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path, ("a.png",))
    args: list[str | Path] = [tmp_path / "a.png", "--weights", tiny_edsr, "--tile", "16", "--overwrite"]
    code, _, err = upscale(capsys, *args, "-v")
    assert code == 0, err
    assert f"weights: file {tiny_edsr}" in err and "tile: 16 px (--tile)" in err and "device: auto -> cpu" in err
    assert "a.png: tile 16 px (1 forward pass(es)), device cpu, fp32" in err and "pixel budget:" in err
    code, _, err = upscale(capsys, *args)
    assert code == 0 and "weights: file" not in err and "pixel budget" not in err
    assert f"model {tiny_edsr}, weights (file) {tiny_edsr}" in err


# --- --suffix ------------------------------------------------------------------------------------------------

def test_suffix_names_outputs_stem_underscore_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path / "in", ("photo.png", "scan.jpg"))
    replace_load_model(monkeypatch, NearestX2())
    code, out, err = upscale(capsys, tmp_path / "in", "--suffix", "out", "--model", "m", "--scale", "2")
    assert code == 0, err
    assert out.splitlines() == [str(tmp_path / "in" / "photo_out.png"), str(tmp_path / "in" / "scan_out.jpg")]
    code, out, err = upscale(capsys, tmp_path / "in" / "photo.png", tmp_path / "in" / "scan.jpg", "--suffix", "",
                             "-o", tmp_path / "big", "--model", "m", "--scale", "2")
    assert code == 0, err  # an empty suffix keeps the stem: fine into another folder
    assert sorted(path.name for path in (tmp_path / "big").iterdir()) == ["photo.png", "scan.jpg"]
    code, out, err = upscale(capsys, tmp_path / "in" / "scan.jpg", "--suffix", "", "--format", "png", "--model", "m",
                             "--scale", "2", "--overwrite")
    assert code == 0 and out == f"{tmp_path / 'in' / 'scan.png'}\n"  # another format beside it: another file


@pytest.mark.parametrize("extra,message", [
    (["--suffix", ""], "the input itself"),
    (["--suffix", "a/b"], "cannot be part of a file name"),
    (["--suffix", "x", "-o", "single.png"], "drop one of them"),
])
def test_suffix_clashes_are_refused_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    (photo,) = images(tmp_path, ("photo.png",))
    before = photo.read_bytes()
    replace_load_model(monkeypatch, None)
    monkeypatch.chdir(tmp_path)
    code, out, err = upscale(capsys, photo, "--model", "m", "--scale", "2", *extra)
    assert code == 2 and message in err and out == ""
    assert photo.read_bytes() == before and sorted(path.name for path in tmp_path.iterdir()) == ["photo.png"]


def test_suffix_collisions_between_inputs_are_tagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path / "one", ("x.png",))
    images(tmp_path / "two", ("x.png",))
    replace_load_model(monkeypatch, NearestX2())
    code, out, err = upscale(capsys, tmp_path / "one" / "x.png", tmp_path / "two" / "x.png", "-o", tmp_path / "out",
                             "--suffix", "s", "--model", "m", "--scale", "2")
    assert code == 0, err
    names = [Path(line).name for line in out.splitlines()]
    assert len(set(names)) == 2 and all(name.startswith("x_s-") and name.endswith(".png") for name in names)
    assert "would get the same output name" in err


# --- sr downscale --------------------------------------------------------------------------------------------

def downscale(capsys: pytest.CaptureFixture[str], *args: str | Path) -> CliResult:
    return run_cli(capsys, ["downscale", *map(str, args)])


def test_downscale_prints_written_paths_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path / "hr", ("a.png", "b.png"), size=(9, 8))
    code, out, err = downscale(capsys, tmp_path / "hr", "-s", "2", "-o", tmp_path / "lr")
    assert code == 0, err
    assert out.splitlines() == [str(tmp_path / "lr" / "a.png"), str(tmp_path / "lr" / "b.png")]
    assert all(read_image(line).pixels.shape == (4, 4, 3) for line in out.splitlines())
    assert "done 2, failed 0 in " in err and "x2" in err
    code, out, err = downscale(capsys, tmp_path / "hr", "-s", "2", "-o", tmp_path / "lr", "--overwrite", "-q")
    assert code == 0 and err == "" and len(out.splitlines()) == 2
    code, _, err = downscale(capsys, tmp_path / "hr" / "a.png", "-s", "2", "-o", tmp_path / "lr", "--overwrite", "-v")
    assert code == 0 and "a.png: 8x9 -> 4x4 (mod-cropped to 8x8)" in err


def test_downscale_json_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images(tmp_path, ("a.png",), size=(6, 6))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code, out, err = downscale(capsys, tmp_path / "a.png", tmp_path / "broken.png", "-s", "3", "-o", tmp_path / "lr", "--json")
    assert code == 3
    done, failed = records(out)
    assert done == {**done, "command": "downscale", "status": "done", "output": str(tmp_path / "lr" / "a.png"),
                    "input_size": [6, 6], "output_size": [2, 2], "scale": 3, "format": "png", "reason": None}
    assert failed["status"] == "failed" and failed["exit_code"] == 3 and "broken.png" in str(failed["reason"])
    assert not (tmp_path / "lr" / "broken.png").exists()
    assert "failed: " in err and "done 1, failed 1" in err


def test_cached_weights_and_a_denoise_blend_are_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """realesr-general and its wdn partner synthesised into the cache (as tests/test_denoise.py does): the
    summary names the cached file and says it ran blended; the records say both."""
    from zoo_support import ManifestNaming, allow_shared_storage_files, official_layout

    allow_shared_storage_files(monkeypatch)
    monkeypatch.setenv("SR_OFFLINE", "1")
    hyperparameters: dict[str, object] = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 32, "upscale": 4}
    files = {name: official_layout("srvgg", hyperparameters, tmp_path / f"{name}.pth", wrap="params", seed=seed)
             for seed, name in enumerate(("realesr-general-x4v3", "realesr-general-wdn-x4v3"), start=1)}
    ManifestNaming(tmp_path, monkeypatch)(files)
    images(tmp_path, ("a.png",), size=(6, 5))
    code, out, err = upscale(capsys, tmp_path / "a.png", "--model", "realesr-general", "--denoise", "0.3", "--json")
    assert code == 0, err
    (record,) = records(out)
    assert record["weights_source"] == "cache" and record["denoise"] == 0.3 and record["alpha"] is None
    assert record["weights_sha256"] == hashlib.sha256(Path(str(record["weights_file"])).read_bytes()).hexdigest()
    assert f"weights (cache) {record['weights_file']}, blended with its denoise partner at --denoise 0.3" in err


def test_the_summary_lists_tiles_per_file_when_they_differ_and_says_halvings_and_redos(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Auto sizes each image's tile from the memory free at that moment: files can differ, and the
    summary must not claim one tile for all of them."""
    from dataclasses import replace

    from run_support import STAND_IN_RUN

    from sr_cli.batch_run import FileResult
    from sr_cli.cli.upscale_cmd import _summarize

    runs = [replace(STAND_IN_RUN, tile=256, precision="bf16", device="cuda:0"),
            replace(STAND_IN_RUN, tile=0, precision="bf16", device="cuda:0", oom_splits=2, fp32_redos=3)]
    results = [FileResult(f"in/{name}.png", f"out/{name}.png", "done", run=run, seconds=1.0)
               for name, run in zip(("big", "small"), runs, strict=True)]
    results.append(FileResult("in/bad.png", "out/bad.png", "failed", "in/bad.png: cannot be read", 3))
    capsys.readouterr()
    code = _summarize(results, total=3, seconds=75.0, upscaler=StandInUpscaler(), ensemble=False)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert code == 3
    assert "done 2, skipped 0, failed 1 in 1 min 15 s" in err
    assert "device cuda:0, precision bf16 (3 tile(s) redone in fp32), tile per file: big.png 256 px, " \
           "small.png whole image (halved 2x after out of memory), ensemble off" in err
    assert "  failed: in/bad.png: cannot be read" in err

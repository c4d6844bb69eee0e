"""sr eval on the command line: --json records, --csv, tables with the published numbers."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cli_support import CliResult, run_cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    return run_cli(capsys, ["eval", *args])


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stdout line is one JSON object (JSON lines), nothing else."""
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_one_flat_record_per_row(capsys: pytest.CaptureFixture[str], datasets_dir: Path) -> None:
    done = run(capsys, "--dataset", "set5", "--model", "bicubic", "--scale", "2,4", "--data-dir", str(datasets_dir), "--json")
    assert done.returncode == 0, done.stderr
    records = json_lines(done.stdout)
    assert [(r["dataset"], r["model"], r["scale"]) for r in records] == [("set5", "Bicubic", 2), ("set5", "Bicubic", 4)]
    for record in records:
        assert (record["command"], record["status"]) == ("eval", "ok") and list(record)[:2] == ["command", "status"]
        assert not any(isinstance(value, (list, dict)) for value in record.values())  # flat
    first = records[0]
    assert first["protocol"] == "paper" and first["ensemble"] is False and first["n_images"] == 5
    assert first["image"] is None and first["device"] is None and first["weights_file"] is None
    assert (round(first["psnr"], 2), round(first["ssim"], 4)) == (33.66, 0.9299)
    assert (first["published_psnr"], first["published_ssim"]) == (33.66, 0.9299)


def test_json_lines_per_image_records_come_before_their_row(capsys: pytest.CaptureFixture[str], datasets_dir: Path) -> None:
    done = run(capsys, "-d", "set5", "-m", "bicubic", "-s", "2", "--data-dir", str(datasets_dir), "--json", "--per-image")
    assert done.returncode == 0, done.stderr
    records = json_lines(done.stdout)
    assert [r["image"] for r in records] == ["baby", "bird", "butterfly", "head", "woman", None]
    assert {(r["command"], r["status"], r["model"], r["scale"]) for r in records} == {("eval", "ok", "Bicubic", 2)}
    row = records[-1]
    mean = sum(float(r["psnr"]) for r in records[:-1]) / 5
    assert row["psnr"] == pytest.approx(mean, abs=1e-12) and row["n_images"] == 5


def test_table_and_csv(capsys: pytest.CaptureFixture[str], datasets_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    done = run(capsys, "-d", "Set5", "-m", "bicubic", "-s", "3", "--data-dir", str(datasets_dir), "--csv", str(out))
    assert done.returncode == 0, done.stderr
    assert "30.39" in done.stdout and "0.8682" in done.stdout and "Bicubic" in done.stdout
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["model"] == "Bicubic" and rows[0]["published_psnr"] == "30.39"


def test_usage_errors(capsys: pytest.CaptureFixture[str], datasets_dir: Path) -> None:
    assert run(capsys, "-d", "set5", "-m", "bicubic", "-s", "1", "--data-dir", str(datasets_dir)).returncode == 2
    assert run(capsys, "-d", "set5", "-m", "bicubic", "--protocol", "nope", "--data-dir", str(datasets_dir)).returncode == 2
    done = run(capsys, "-d", "/no/such/dir", "-m", "bicubic")
    assert done.returncode == 3 and "/no/such/dir" in done.stderr


def test_cause16_a_typo_of_bicubic_is_answered_with_bicubic(capsys: pytest.CaptureFixture[str], datasets_dir: Path) -> None:
    """Issue 11: `-m bicubc` listed every manifest name but not bicubic, and suggested nothing."""
    done = run(capsys, "-d", "set5", "-m", "bicubc", "-s", "2", "--data-dir", str(datasets_dir))
    assert done.returncode == 2 and "did you mean bicubic?" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "edsr-baseline-x2" not in done.stderr


def test_a_piped_table_cuts_no_number(capsys: pytest.CaptureFixture[str], datasets_dir: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: redirected (rich assumes 80 columns) the table showed `28.…` and `-0.00…`. Every cell
    must be printed whole: the row carries the exact figures of the --json record."""
    from sr_cli.cli.console import stdout

    monkeypatch.setattr(stdout, "width", 60)  # narrower than the table, as a pipe or a small terminal
    args = ("-d", "set5", "-m", "bicubic", "-s", "4", "--data-dir", str(datasets_dir))
    record = json_lines(run(capsys, *args, "--json").stdout)[0]
    done = run(capsys, *args)
    assert done.returncode == 0 and "…" not in done.stdout
    row = next(line for line in done.stdout.splitlines() if "Bicubic" in line)
    assert f"{record['psnr']:.4f}" in row and f"{record['ssim']:.4f}" in row and "28.42" in row
    assert stdout.width == 60  # the console is left as it was


def test_psnr_has_4_decimals_and_a_tiny_negative_difference_is_zero(capsys: pytest.CaptureFixture[str],
                                                                     datasets_dir: Path) -> None:
    """Bicubic Set5 x2 measures 33.66141 / 0.929884 against the published 33.66 / 0.9299: the PSNR and its
    difference need 4 decimals to show the 0.0014 dB, and the SSIM difference (-0.000016) is 0.0000, not -0.0000."""
    args = ("-d", "set5", "-m", "bicubic", "-s", "2", "--data-dir", str(datasets_dir))
    record = json_lines(run(capsys, *args, "--json").stdout)[0]
    psnr, ssim = float(record["psnr"]), float(record["ssim"])
    assert -0.00005 < ssim - 0.9299 < 0  # the case itself: a negative that rounds to zero
    done = run(capsys, *args)
    cells = next(line for line in done.stdout.splitlines() if "Bicubic" in line).split()
    assert cells == ["x2", "Bicubic", f"{psnr:.4f}", f"{ssim:.4f}", "33.66", "0.9299", f"{psnr - 33.66:+.4f}", "0.0000"]
    assert "-0.0000" not in done.stdout


def test_fixed_never_prints_a_negative_zero() -> None:
    from sr_cli.cli.eval_cmd import fixed

    assert fixed(-0.00002, 4, signed=True) == "0.0000" and fixed(0.00004, 4, signed=True) == "0.0000"
    assert fixed(-0.00005001, 4, signed=True) == "-0.0001" and fixed(0.0012, 4, signed=True) == "+0.0012"
    assert fixed(-1e-9, 4) == "0.0000" and fixed(-0.0, 2) == "0.00" and fixed(33.66141, 4) == "33.6614"
    assert fixed(None, 4) == "-" and fixed(float("inf"), 4) == "inf"


def test_an_80_column_table_folds_a_long_model_name_and_keeps_every_number(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from sr_cli.archs.edsr import EDSR, EDSRParams
    from sr_cli.cli.console import stdout

    rng = np.random.default_rng(1)
    (tmp_path / "set").mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(tmp_path / "set" / "a.png")
    name = "a_very_long_model_file_name_that_cannot_fit_x2"
    torch.manual_seed(0)
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), tmp_path / f"{name}.pt")
    args = ("-d", str(tmp_path / "set"), "-m", f"bicubic,{tmp_path / name}.pt", "-s", "2", "--device", "cpu")
    records = json_lines(run(capsys, *args, "--json").stdout)
    monkeypatch.setattr(stdout, "width", 80)  # an 80-column terminal (or a pipe: rich assumes 80)
    done = run(capsys, *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in done.stdout
    for record in records:
        assert f"{record['psnr']:.4f}" in done.stdout and f"{record['ssim']:.4f}" in done.stdout
    header = next(index for index, line in enumerate(lines) if "model" in line and "PSNR" in line)
    at = lines[header].index("model")
    pieces = [line[at:].split()[0] for line in lines[header + 2:] if len(line) > at and line[at] != " "]
    assert pieces[0] == "Bicubic" and "".join(pieces[1:]) == name  # folded inside its cell, nothing lost
    assert len(pieces) > 2


def test_help_is_readable_at_80_columns_with_panels_and_examples() -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    shown = subprocess.run([sys.executable, "-m", "sr_cli", "eval", "--help"], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "PYTHONPATH": str(repo)})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in shown.stdout
    for panel in ("Data", "Models", "Measurement", "Output"):
        assert any(line.startswith(f"╭─ {panel} ") for line in lines), panel
    examples = [line.strip().strip("│").strip() for line in lines if line.strip().strip("│").strip().startswith("sr eval ")]
    assert len(examples) >= 3, shown.stdout


def test_quiet_prints_results_only_and_verbose_says_what_ran(capsys: pytest.CaptureFixture[str], datasets_dir: Path) -> None:
    args = ("-d", "set5", "-m", "bicubic", "-s", "4", "--data-dir", str(datasets_dir))
    normal = run(capsys, *args)
    assert normal.returncode == 0 and "evaluated 1 row (5 images) in" in normal.stderr
    quiet = run(capsys, *args, "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == normal.stdout
    verbose = run(capsys, *args, "-v")
    assert f"Set5: {datasets_dir}" in verbose.stderr and "Set5 x4 Bicubic: MATLAB bicubic, 5 images" in verbose.stderr


def test_one_bar_counts_the_images_of_the_whole_run_from_the_start(capsys: pytest.CaptureFixture[str], datasets_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: `sr eval` gets a bar with rate and ETA; its total (images x scales x models) is known before
    the first model loads, so every frame reads N/10, never N/5 (one row's) or N/? (unknown)."""
    import io

    from rich.console import Console

    from sr_cli.cli import console, progress

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=80)
    monkeypatch.setattr(console, "stderr", terminal)
    monkeypatch.setattr(progress, "stderr", terminal)
    done = run(capsys, "-d", "set5", "-m", "bicubic", "-s", "2,4", "--data-dir", str(datasets_dir), "--json")
    assert done.returncode == 0 and len(json_lines(done.stdout)) == 2  # the records still reach stdout
    drawn = screen.getvalue()
    amounts = re.findall(r"(?<![\d.])(\d+)/(\d+|\?)(?![\d.])", drawn)
    assert amounts and {total for _, total in amounts} == {"10"}, amounts
    assert "10/10" in drawn and "Set5 x4 bicubic" in drawn

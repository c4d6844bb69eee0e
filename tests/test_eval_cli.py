"""sr eval on the command line: --json records, --csv, tables with the published numbers."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_support import CliResult, run_cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    return run_cli(capsys, ["eval", *args])


def test_json_records(capsys: pytest.CaptureFixture[str], datasets_dir: Path) -> None:
    done = run(capsys, "--dataset", "set5", "--model", "bicubic", "--scale", "2,4", "--data-dir", str(datasets_dir), "--json", "--per-image")
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert [(r["dataset"], r["model"], r["scale"]) for r in records] == [("set5", "Bicubic", 2), ("set5", "Bicubic", 4)]
    first = records[0]
    assert first["protocol"] == "paper" and first["ensemble"] is False and first["n_images"] == 5
    assert (round(first["psnr"], 2), round(first["ssim"], 4)) == (33.66, 0.9299)
    assert (first["published_psnr"], first["published_ssim"]) == (33.66, 0.9299)
    assert [p["name"] for p in first["per_image"]] == ["baby", "bird", "butterfly", "head", "woman"]


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
    record = json.loads(run(capsys, *args, "--json").stdout)[0]
    done = run(capsys, *args)
    assert done.returncode == 0 and "…" not in done.stdout
    row = next(line for line in done.stdout.splitlines() if "Bicubic" in line)
    assert f"{record['psnr']:.2f}" in row and f"{record['ssim']:.4f}" in row and "28.42" in row
    assert stdout.width == 60  # the console is left as it was

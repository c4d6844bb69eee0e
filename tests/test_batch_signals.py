"""Issue 11, causes 8 and 9: a batch stopped by SIGINT or SIGTERM, sent with os.kill to a real `sr`
process, stops with a summary and the command that resumes it; nothing partial or temporary stays;
a temporary that a SIGKILL left is removed by the next run into that folder."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli
from run_support import NearestX2, nearest_x2, replace_load_model
from test_upscale_cli import make_inputs

from sr_cli.batch import Job
from sr_cli.batch_run import STALE_TEMPORARY_SECONDS, TEMPORARY_NAME, remove_stale_temporaries
from sr_cli.files.atomic import temporary_path_for
from sr_cli.imageio import read_image, write_image

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("slow_model_driver.py")
WAIT_SECONDS = 300  # a generous bound for a loaded CI machine; nothing here measures speed


def start_batch(inputs: Path, out: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   "SLOW_SECONDS": "0.3"}
    return subprocess.Popen([sys.executable, str(DRIVER), "upscale", str(inputs), "-o", str(out), "--model", "m", "--scale", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def wait_for_first_output(process: subprocess.Popen[str], out: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not (out.is_dir() and any(path.suffix == ".png" for path in out.iterdir())):
        if process.poll() is not None:
            pytest.fail(f"sr ended before it was signalled: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no output appeared")
        time.sleep(0.02)


@pytest.mark.parametrize(("number", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "(SIGTERM)")])
def test_cause9_a_signal_stops_the_batch_with_a_summary_and_how_to_resume(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        number: int, code: int, word: str) -> None:
    images = make_inputs(tmp_path / "in", count=12)
    out = tmp_path / "out"
    process = start_batch(tmp_path / "in", out)
    wait_for_first_output(process, out)
    os.kill(process.pid, number)
    _, err = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == code, err
    lines = err.strip().splitlines()
    assert lines[-1].endswith(word) and "Traceback" not in err
    stopped = next(line for line in lines if line.startswith("stopped:"))
    written = sorted(out.iterdir())
    assert not any(path.suffix == ".tmp" for path in written)
    assert f"done {len(written)}," in stopped and "not started" in stopped and any("--skip-existing" in line for line in lines)
    assert len(written) < len(images)  # it stopped early: the rest was not done
    for path in written:  # whatever is there is complete
        np.testing.assert_array_equal(read_image(path).pixels, nearest_x2(images[int(path.name[3:].split("_")[0])]))

    replace_load_model(monkeypatch, NearestX2())  # the printed advice works
    resumed = run_cli(capsys, ["upscale", str(tmp_path / "in"), "-o", str(out), "--model", "m", "--scale", "2", "--skip-existing"])
    assert resumed.returncode == 0 and f"done {len(images) - len(written)}, skipped {len(written)}, failed 0" in resumed.stderr


def test_cause9_the_temporary_name_pattern_is_the_atomic_writers(tmp_path: Path) -> None:
    made = temporary_path_for(tmp_path / "a_x2_m.png")
    match = TEMPORARY_NAME.fullmatch(made.name)
    assert match is not None and match["target"] == "a_x2_m.png"


def test_cause9_a_temporary_left_by_sigkill_is_removed_by_the_next_run_and_others_are_left_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    make_inputs(tmp_path, count=2)  # outputs beside the inputs: the leftover would be listed as an input too
    stale = temporary_path_for(tmp_path / "img0_x2_m.png")
    fresh = temporary_path_for(tmp_path / "img1_x2_m.png")
    foreign = tmp_path / "notes.txt.0123abcd.tmp"  # not the temporary of an output of this run
    for path in (stale, fresh, foreign):
        path.write_bytes(b"partial")
    old = time.time() - 2 * STALE_TEMPORARY_SECONDS
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    replace_load_model(monkeypatch, NearestX2())
    first = run_cli(capsys, ["upscale", str(tmp_path), "--model", "m", "--scale", "2"])
    assert first.returncode == 0, first.stderr
    assert not stale.exists() and fresh.exists() and foreign.exists()
    assert f"{stale}: removed" in first.stderr and f"{fresh}: a temporary file of a run still writing" in first.stderr
    assert f"{stale}: skipped" not in first.stderr  # reported once, as what it is
    second = run_cli(capsys, ["upscale", str(tmp_path), "--model", "m", "--scale", "2", "--skip-existing"])
    assert str(stale) not in second.stderr


def test_cause9_remove_stale_temporaries_is_limited_to_the_planned_outputs(tmp_path: Path) -> None:
    jobs = [Job(tmp_path / "in.png", tmp_path / "out" / "a.png", "png")]
    assert remove_stale_temporaries(jobs) == ([], [])  # the output folder does not exist yet
    (tmp_path / "out").mkdir()
    mine, other = tmp_path / "out" / "a.png.00ff00ff.tmp", tmp_path / "out" / "b.png.00ff00ff.tmp"
    for path in (mine, other):
        path.write_bytes(b"x")
    removed, kept = remove_stale_temporaries(jobs, now=time.time() + 2 * STALE_TEMPORARY_SECONDS)
    assert (removed, kept) == ([mine], []) and other.exists()


def test_cause8_upscale_refuses_a_fifo_before_loading_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    write_image(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    replace_load_model(monkeypatch, None)
    result = run_cli(capsys, ["upscale", str(tmp_path / "pipe.png"), str(tmp_path / "a.png"), "--model", "m", "--scale", "2"])
    assert result.returncode == 3 and "pipe.png: is a named pipe (FIFO), not a regular file" in result.stderr
    replace_load_model(monkeypatch, NearestX2())  # inside a folder: skipped with a note, the rest is done
    result = run_cli(capsys, ["upscale", str(tmp_path), "--model", "m", "--scale", "2"])
    assert result.returncode == 0 and "pipe.png: skipped, not a regular file" in result.stderr
    assert (tmp_path / "a_x2_m.png").is_file()

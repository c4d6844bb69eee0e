"""`torchrun --nproc-per-node=2 -m sr_cli upscale DIR -o OUT`: two gloo processes on the CPU, launched by
the real torchrun, against one in-process run of the same command.

Each file is done by exactly one rank (one --json record per input, from rank 0 alone, in the plan's
order), the outputs are byte-identical to the one-process run, a corrupt file on one rank is reported
once (as often as one process reports it) with a failing exit, and --skip-existing resumes the batch.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli

from sr_cli.imageio import write_image

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2  # per rank, and for the one-process run: the same float sums on both sides
WAIT_SECONDS = 300  # two processes import torch on a loaded 2-core machine; nothing here measures speed
SPLIT = re.compile(r"torchrun: 2 processes, files per process: (\d+), (\d+)")


def _weights(folder: Path) -> Path:
    import torch

    from sr_cli.archs.edsr import EDSR, EDSRParams

    torch.manual_seed(0)
    path = folder / "tiny_edsr.pt"
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), path)
    return path


def _inputs(folder: Path) -> list[str]:
    rng = np.random.default_rng(13)
    folder.mkdir()
    # pixels 45, 100, 10, 60, 50: dealt largest first to the rank with less work, rank 0 gets img1 and img0
    # (145 px), rank 1 img3, img4, img2 (120 px) and then the broken file (0 px, its header is unreadable)
    for index, (height, width) in enumerate([(5, 9), (10, 10), (2, 5), (6, 10), (5, 10)]):
        write_image(folder / f"img{index}.png", rng.integers(0, 256, (height, width, 3)).astype(np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    return sorted(str(path) for path in folder.iterdir())


def _torchrun(args: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": str(THREADS)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "-m", "sr_cli", "upscale", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=WAIT_SECONDS, check=False)


def _records(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.slow
def test_two_torchrun_processes_share_a_batch_like_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    weights = _weights(tmp_path)
    inputs = _inputs(tmp_path / "in")
    common = [str(tmp_path / "in"), "--weights", str(weights), "--scale", "2", "--tile", "0", "--device", "cpu", "--json"]
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        one = run_cli(capsys, ["upscale", *common, "-o", str(tmp_path / "one")])
    finally:
        torch.set_num_threads(threads)
    assert one.returncode == 3, one.stderr  # the broken file: an input error

    two = _torchrun([*common, "-o", str(tmp_path / "two")])
    assert two.returncode != 0
    records = _records(two.stdout)
    # every input once, in the plan's order (the folder sorted), whichever rank did it
    assert [record["input"] for record in records] == inputs
    statuses = {Path(str(record["input"])).name: record["status"] for record in records}
    assert statuses.pop("broken.png") == "failed" and set(statuses.values()) == {"done"}
    assert _outputs(tmp_path / "two") == _outputs(tmp_path / "one") and len(_outputs(tmp_path / "one")) == 5
    # the failure is said as often as one process says it (as it happens, and in the summary), not per rank
    reason = next(str(record["reason"]) for record in records if record["status"] == "failed")
    assert two.stderr.count(reason) == one.stderr.count(reason) == 2, two.stderr
    assert two.stderr.count("done 5, skipped 0, failed 1") == 1
    split = SPLIT.search(two.stderr)
    assert split is not None and split.groups() == ("2", "4"), two.stderr  # by pixels; the failure on rank 1

    # resume: two outputs lost; --skip-existing redoes exactly those
    written = sorted((tmp_path / "two").iterdir())
    lost = [written[0].name, written[3].name]
    for name in lost:
        (tmp_path / "two" / name).unlink()
    again = _torchrun([*common, "-o", str(tmp_path / "two"), "--skip-existing"])
    records = _records(again.stdout)
    assert [record["input"] for record in records] == inputs
    done = sorted(Path(str(record["output"])).name for record in records if record["status"] == "done")
    assert done == sorted(lost)
    assert sum(record["status"] == "skipped" for record in records) == 3
    assert _outputs(tmp_path / "two") == _outputs(tmp_path / "one")
    assert again.returncode != 0 and again.stderr.count("done 2, skipped 3, failed 1") == 1, again.stderr


@pytest.mark.slow
def test_a_planning_error_is_said_once_and_stops_every_rank(tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    _inputs(tmp_path / "in")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "img2_x2_tiny_edsr.png").write_bytes(b"an earlier result")
    result = _torchrun([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights), "--scale", "2",
                        "--device", "cpu"])
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.count("error: ") == 1 and "img2_x2_tiny_edsr.png" in result.stderr, result.stderr
    assert (tmp_path / "out" / "img2_x2_tiny_edsr.png").read_bytes() == b"an earlier result"


@pytest.mark.slow
def test_more_processes_than_files_and_a_clean_exit(tmp_path: Path) -> None:
    """One file, two ranks: rank 1 has nothing to do (and loads no model); the run succeeds (exit 0)."""
    weights = _weights(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "only.png", np.full((6, 7, 3), 99, dtype=np.uint8))
    result = _torchrun([str(folder / "only.png"), "-o", str(tmp_path / "out"), "--weights", str(weights), "--scale", "2",
                        "--device", "cpu"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tmp_path / "out" / "only_x2_tiny_edsr.png")]
    assert "files per process: 1, 0" in result.stderr and result.stderr.count("done 1, skipped 0, failed 0") == 1

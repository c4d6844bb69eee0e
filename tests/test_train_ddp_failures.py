"""Issue 11, cause 15: a failure on one torchrun process ends every process with the same one-line error.

Rank 0 alone checked for an existing checkpoint and for non-finite weights at a save, and alone prepared
the data; the other ranks then died in their next collective with a gloo "Connection reset by peer"
RuntimeError (or waited for the NCCL watchdog). Two gloo processes on the CPU, like tests/test_train_ddp.py.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch.multiprocessing as mp
from ddp_failure_support import failing_rank_worker
from train_support import write_images

WAIT_SECONDS = 300  # both processes import torch on a loaded 2-core machine; nothing here measures speed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "expected"), [
    ("existing-checkpoint", "UsageError exit 2: "),
    ("non-finite-weights-on-rank-0", "TrainingError exit 7: step 1: the weights are not finite"),
    ("data-fails-on-rank-1", "DatasetError exit 3: "),
])
def test_cause15_one_ranks_failure_ends_every_rank_with_the_same_error(tmp_path: Path, scenario: str, expected: str) -> None:
    data = write_images(tmp_path / "hr", count=4, size=(40, 48))
    out = tmp_path / "run"
    if scenario == "existing-checkpoint":
        out.mkdir()
        (out / "last.pt").write_bytes(b"an earlier run")
    record = tmp_path / "record"
    record.mkdir()
    processes = mp.start_processes(failing_rank_worker, args=(2, _free_port(), str(data), str(out), scenario, str(record)),
                                   nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + WAIT_SECONDS
    while not processes.join(timeout=5):
        if time.monotonic() > deadline:
            for process in processes.processes:
                process.kill()
            pytest.fail("a rank was left waiting for the other")
    outcomes = [(record / f"rank{rank}.txt").read_text(encoding="utf-8") for rank in (0, 1)]
    assert outcomes[0] == outcomes[1], outcomes
    assert outcomes[0].startswith(expected) and "\n" not in outcomes[0]

"""The one atomic writer (sr_cli.files.atomic) and the writers built on it: no partial file, no clobber
without overwrite (also for a file that appears after the caller checked), the user's umask."""
from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from run_support import with_report

from sr_cli.batch import Job
from sr_cli.batch_run import RunSettings, run_jobs
from sr_cli.data.training import _save_npy_atomic
from sr_cli.errors import OutputError
from sr_cli.files.atomic import atomic_write, write_bytes_atomic
from sr_cli.imageio import write_image
from sr_cli.train.checkpointing import save_checkpoint
from sr_cli.weights.safetensors_io import save_safetensors

PIXELS = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_an_existing_file_is_kept_without_overwrite_and_replaced_with_it(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"theirs")
    with pytest.raises(OutputError, match="out.bin: exists.*kept.*--overwrite"):
        write_bytes_atomic(target, b"ours", overwrite=False)
    assert target.read_bytes() == b"theirs" and _leftovers(tmp_path) == []
    write_bytes_atomic(target, b"ours", overwrite=True)
    assert target.read_bytes() == b"ours" and _leftovers(tmp_path) == []


def test_ctrl_c_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.pt"
    with pytest.raises(KeyboardInterrupt), atomic_write(target, overwrite=False) as handle:
        torch.save({"a": torch.zeros(3)}, handle)
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_appears_after_planning_fails_that_job_and_is_kept(tmp_path: Path) -> None:
    """issue 11 cause 6: the batch checks outputs when it plans; a file created later must survive."""
    jobs = []
    for index in range(3):
        write_image(tmp_path / f"in{index}.png", PIXELS)
        jobs.append(Job(tmp_path / f"in{index}.png", tmp_path / f"out{index}.png", "png"))
    intruder = jobs[1].output

    def upscale_while_someone_writes(image: np.ndarray, progress: object) -> np.ndarray:
        if not intruder.exists():
            intruder.write_bytes(b"another program's file")
        return np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)

    results = {result.output: result for result in run_jobs(jobs, with_report(upscale_while_someone_writes), RunSettings())}
    lost = results[str(intruder)]
    assert lost.status == "failed" and lost.exit_code == OutputError.exit_code
    assert "exists" in (lost.reason or "") and "--overwrite" in (lost.reason or "")
    assert intruder.read_bytes() == b"another program's file"
    assert [results[str(job.output)].status for job in (jobs[0], jobs[2])] == ["done", "done"]
    assert _leftovers(tmp_path) == []

    replaced = run_jobs([jobs[1]], with_report(upscale_while_someone_writes), RunSettings(overwrite=True))
    assert replaced[0].status == "done" and intruder.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def both_writers_ready(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hold each writer after its data is on disk until the other is there too: the publish steps race."""
    barrier = threading.Barrier(2, timeout=20)
    real_fsync = os.fsync

    def fsync_then_wait(descriptor: int) -> None:
        real_fsync(descriptor)
        if stat.S_ISREG(os.fstat(descriptor).st_mode):  # the file, not the folder fsync after publishing
            barrier.wait()

    monkeypatch.setattr(os, "fsync", fsync_then_wait)
    yield


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("both_writers_ready")
def test_two_concurrent_writers_into_one_path_one_wins_whole_the_other_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    first, second = PIXELS, 255 - PIXELS
    outcomes: dict[str, BaseException | None] = {}

    def writer(name: str, pixels: np.ndarray) -> Callable[[], None]:
        def run() -> None:
            try:
                write_image(target, pixels)
                outcomes[name] = None
            except BaseException as error:
                outcomes[name] = error
        return run

    threads = [threading.Thread(target=writer("first", first)), threading.Thread(target=writer("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = {name: error for name, error in outcomes.items() if error is not None}
    assert len(outcomes) == 2 and len(failed) == 1, outcomes
    assert isinstance(next(iter(failed.values())), OutputError)
    from sr_cli.imageio import read_image

    winner = first if "second" in failed else second
    np.testing.assert_array_equal(read_image(target).pixels, winner)
    assert _leftovers(tmp_path) == []


def test_without_hard_links_an_existing_file_is_still_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # FAT, some network shares

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.bin"
    write_bytes_atomic(target, b"first", overwrite=False)
    with pytest.raises(OutputError, match="exists"):
        write_bytes_atomic(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_writer_creates_files_with_the_users_umask(tmp_path: Path, umask: int,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: images were 0644 but safetensors (blends, model.safetensors) and the training cache 0600."""
    from sr_cli.weights.cache import store_verified

    previous = os.umask(umask)
    try:
        written = [tmp_path / "image.png", tmp_path / "model.safetensors", tmp_path / "last.pt", tmp_path / "patch.npy"]
        write_image(written[0], PIXELS)
        save_safetensors(written[1], {"w": torch.ones(2)}, {})
        save_checkpoint(written[2], {"step": 1})
        _save_npy_atomic(written[3], np.zeros(3, np.float32))
        monkeypatch.setenv("SR_CACHE_DIR", str(tmp_path / "cache"))
        written.append(store_verified(written[0], "0" * 64, "copied.png", how="copy"))
    finally:
        os.umask(previous)
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in written}
    assert modes == {path.name: oct(0o666 & ~umask) for path in written}

"""run_jobs: the reader/compute/writer pipeline on its own (no CLI)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from run_support import with_report

from sr_cli.batch import Job
from sr_cli.batch_run import FileResult, RunSettings, run_jobs, upscale_at_bit_depth
from sr_cli.imageio import read_image, write_image

RNG = np.random.default_rng(3)


def doubled(image: np.ndarray, progress: object = None) -> np.ndarray:
    return np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)


def make_jobs(folder: Path, count: int) -> list[Job]:
    jobs = []
    for index in range(count):
        write_image(folder / f"in{index}.png", RNG.integers(0, 256, (4, 3, 3)).astype(np.uint8))
        jobs.append(Job(folder / f"in{index}.png", folder / f"out{index}.png", "png"))
    return jobs


def test_every_job_gets_one_result_and_skips_are_not_computed(tmp_path: Path) -> None:
    jobs = make_jobs(tmp_path, 5)
    jobs[1] = Job(jobs[1].source, jobs[1].output, "png", skip=True)
    computed: list[tuple[int, ...]] = []

    def counting(image: np.ndarray, progress: object) -> np.ndarray:
        computed.append(image.shape)
        return doubled(image)

    results = run_jobs(jobs, with_report(counting), RunSettings())
    assert sorted(result.input for result in results) == sorted(str(job.source) for job in jobs)
    assert len(computed) == 4
    assert {result.status for result in results if result.input == str(jobs[1].source)} == {"skipped"}
    assert not jobs[1].output.exists() and all(job.output.exists() for job in jobs if not job.skip)


def test_a_model_error_fails_that_file_only(tmp_path: Path) -> None:
    jobs = make_jobs(tmp_path, 3)

    calls = 0

    def flaky(image: np.ndarray, progress: object) -> np.ndarray:
        nonlocal calls
        calls += 1
        if image.shape[0] == 4 and calls == 2:  # the second image
            raise RuntimeError("CUDA error: an illegal memory access")
        return doubled(image)

    results = {result.input: result for result in run_jobs(jobs, with_report(flaky), RunSettings())}
    failed = [result for result in results.values() if result.status == "failed"]
    assert len(failed) == 1 and failed[0].exit_code == 1
    assert "RuntimeError: CUDA error" in (failed[0].reason or "") and failed[0].input in (failed[0].reason or "")
    assert sum(result.status == "done" for result in results.values()) == 2


@pytest.mark.timeout(60)
def test_a_crashing_result_callback_stops_the_run_instead_of_hanging(tmp_path: Path) -> None:
    jobs = make_jobs(tmp_path, 6)

    def broken_pipe(result: FileResult) -> None:
        raise BrokenPipeError("stdout closed")

    with pytest.raises(BrokenPipeError):
        run_jobs(jobs, with_report(doubled), RunSettings(), on_result=broken_pipe)
    assert not any(path.suffix == ".tmp" for path in tmp_path.iterdir())


def test_upscale_at_bit_depth_runs_in_float_when_depths_differ() -> None:
    seen: list[np.dtype] = []

    def identity(image: np.ndarray, progress: object) -> np.ndarray:
        seen.append(image.dtype)
        return image

    pixels8 = np.array([[[0, 1, 128, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(upscale_at_bit_depth(with_report(identity), pixels8, 16, None)[0], pixels8.astype(np.uint16) * 257)
    pixels16 = np.array([[[0, 128, 129, 385, 65535]]], dtype=np.uint16)
    np.testing.assert_array_equal(upscale_at_bit_depth(with_report(identity), pixels16, 8, None)[0], np.array([[[0, 0, 1, 1, 255]]], np.uint8))
    assert upscale_at_bit_depth(with_report(identity), pixels8, 8, None)[0].dtype == np.uint8
    assert seen == [np.float32, np.float32, np.uint8]


def test_progress_callbacks_reach_the_caller(tmp_path: Path) -> None:
    jobs = make_jobs(tmp_path, 2)
    ticks: list[tuple[int, int]] = []
    started: list[str] = []

    def with_progress(image: np.ndarray, progress: object) -> np.ndarray:
        assert callable(progress)
        progress(1, 2)
        progress(2, 2)
        return doubled(image)

    run_jobs(jobs, with_report(with_progress), RunSettings(),
             on_file_start=lambda job, index: started.append(job.source.name), on_tiles=lambda d, t: ticks.append((d, t)))
    assert started == ["in0.png", "in1.png"] and ticks == [(1, 2), (2, 2)] * 2
    np.testing.assert_array_equal(read_image(jobs[0].output).pixels, doubled(read_image(jobs[0].source).pixels))

"""Issue 11, batch side: odd inputs are named, refused or skipped with a reason, never opened blindly.

Causes covered here: 7 (collision names vs argument order, --skip-existing pairing), 8 (FIFOs),
11 (folders that cannot be listed), 12 (names over the 255-byte limit), 16 (-o GOOD.png for good.png,
broken links named as missing). The tests run as root in CI containers, where chmod 000 does not stop
a listing: permission failures are injected into os.scandir / os.listdir instead.
"""
from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from test_batch import plan, touch

from sr_cli.batch import NAME_MAX_BYTES, ExistingPolicy, InputFile, expand_inputs, plan_jobs
from sr_cli.errors import InputError, UsageError
from sr_cli.files.atomic import write_bytes_atomic


def refuse_listing(monkeypatch: pytest.MonkeyPatch, forbidden: Path) -> None:
    """Make listing `forbidden` fail as it does for a folder without read permission."""
    def guarded(original: Callable[..., object]) -> Callable[..., object]:
        def call(path: str | os.PathLike[str] = ".", *args: object) -> object:
            if os.path.realpath(path) == os.path.realpath(forbidden):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return original(path, *args)
        return call

    monkeypatch.setattr(os, "scandir", guarded(os.scandir))
    monkeypatch.setattr(os, "listdir", guarded(os.listdir))


# --- cause 7: names are a function of the input set ------------------------------------------------


def test_cause7_collision_names_do_not_depend_on_argument_order(tmp_path: Path) -> None:
    a, b = touch(tmp_path / "a" / "x.png"), touch(tmp_path / "b" / "x.png")
    forward, _ = plan([InputFile(a), InputFile(b)], output=tmp_path / "out")
    backward, _ = plan([InputFile(b), InputFile(a)], output=tmp_path / "out")
    assert {job.source: job.output for job in forward} == {job.source: job.output for job in backward}
    assert len({job.output for job in forward}) == 2
    for job in forward:  # the run says why the name carries a suffix
        other = b if job.source == a else a
        assert job.note is not None and str(other) in job.note


def test_cause7_skip_existing_never_pairs_an_input_with_another_inputs_output(tmp_path: Path) -> None:
    a, b = touch(tmp_path / "a" / "x.png"), touch(tmp_path / "b" / "x.png")
    first, _ = plan([InputFile(a), InputFile(b)], output=tmp_path / "out")
    touch(next(job.output for job in first if job.source == a))  # the run stopped after writing a's output
    resumed, _ = plan([InputFile(b), InputFile(a)], output=tmp_path / "out", existing=ExistingPolicy.SKIP)
    assert {job.source: job.skip for job in resumed} == {a: True, b: False}
    # A plain-named output of an earlier run with only one of them is not taken for either.
    touch(tmp_path / "out" / "x_x4_edsr.png")
    again, _ = plan([InputFile(a), InputFile(b)], output=tmp_path / "out", existing=ExistingPolicy.SKIP)
    assert all(job.output.name != "x_x4_edsr.png" for job in again)


def test_cause7_a_tagged_output_beside_its_input_is_not_taken_as_an_input_on_rerun(tmp_path: Path) -> None:
    touch(tmp_path / "a.png")
    touch(tmp_path / "a_x4_edsr.png")
    jobs, _ = plan([InputFile(tmp_path / "a.png"), InputFile(tmp_path / "a_x4_edsr.png")])
    for job in jobs:
        touch(job.output)
    files, _ = expand_inputs([tmp_path], recursive=False)
    rerun, dropped = plan(files, existing=ExistingPolicy.SKIP)
    assert sorted(item.path.name for item in dropped) == sorted(["a_x4_edsr.png", jobs[0].output.name, jobs[1].output.name])
    assert [(job.source.name, job.skip) for job in rerun] == [("a.png", True)]


# --- cause 8: FIFOs and other special files -------------------------------------------------------


def test_cause8_a_fifo_named_directly_is_refused_by_its_type(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe\.png: is a named pipe \(FIFO\), not a regular file"):
        expand_inputs([fifo, touch(tmp_path / "a.png")], recursive=False)


def test_cause8_a_fifo_inside_a_folder_is_skipped_with_a_note(tmp_path: Path) -> None:
    touch(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    files, ignored = expand_inputs([tmp_path], recursive=True)
    assert [item.path.name for item in files] == ["a.png"]
    reasons = {item.path.name: item.reason for item in ignored}
    assert "FIFO" in reasons["pipe.png"] and "broken link" in reasons["dangling.png"]
    assert not any(item.failed for item in ignored)


def test_cause16_a_broken_link_or_a_loop_is_named_as_such_not_as_missing(tmp_path: Path) -> None:
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    with pytest.raises(InputError, match="broken link"):
        expand_inputs([tmp_path / "dangling.png"], recursive=False)
    with pytest.raises(InputError, match="symlink loop"):
        expand_inputs([tmp_path / "loop.png"], recursive=False)


# --- cause 11: folders that cannot be listed --------------------------------------------------------


def test_cause11_a_named_folder_that_cannot_be_listed_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "locked" / "a.png")
    refuse_listing(monkeypatch, tmp_path / "locked")
    with pytest.raises(InputError, match=r"locked: cannot list the folder \(Permission denied\)"):
        expand_inputs([tmp_path / "locked"], recursive=False)


def test_cause11_a_subfolder_that_cannot_be_listed_under_recursive_is_a_reported_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "a.png")
    touch(tmp_path / "locked" / "b.png")
    refuse_listing(monkeypatch, tmp_path / "locked")
    files, ignored = expand_inputs([tmp_path], recursive=True)
    assert [item.path.name for item in files] == ["a.png"]
    failures = [item for item in ignored if item.failed]
    assert [item.path for item in failures] == [tmp_path / "locked"] and "Permission denied" in failures[0].reason


def test_cause11_recursive_links_to_visited_folders_are_not_walked_again(tmp_path: Path) -> None:
    touch(tmp_path / "a.png")
    os.symlink(tmp_path, tmp_path / "again")
    files, _ = expand_inputs([tmp_path], recursive=True)
    assert [item.path.name for item in files] == ["a.png"]


# --- cause 12: names over the file-name limit -------------------------------------------------------


def test_cause12_a_240_character_input_gets_a_shortened_tagged_output_name(tmp_path: Path) -> None:
    long_input = touch(tmp_path / ("é" * 5 + "n" * 235 + ".png"))  # 240 characters, 245 bytes
    files, _ = expand_inputs([tmp_path], recursive=False)
    jobs, _ = plan_jobs(files, output=None, factor=4.0, model="realesrgan-x4plus", out_format=None,
                        existing=ExistingPolicy.ERROR, recursive=False)
    name = jobs[0].output.name
    assert len(name.encode()) <= NAME_MAX_BYTES < 255 and name.startswith("é" * 5)  # room for the temporary's suffix
    assert re.search(r"_x4_realesrgan-x4plus-[0-9a-f]{8}\.png$", name)  # the label survives the cut
    assert jobs[0].note is not None and "over the" in jobs[0].note
    write_bytes_atomic(jobs[0].output, b"x", overwrite=False)  # the atomic writer's temporary fits too
    again, _ = plan_jobs(files, output=None, factor=4.0, model="realesrgan-x4plus", out_format=None,
                         existing=ExistingPolicy.SKIP, recursive=False)
    assert again[0].output == jobs[0].output and again[0].skip
    assert long_input.exists()


def test_cause12_two_long_names_sharing_a_prefix_stay_apart(tmp_path: Path) -> None:
    first, second = touch(tmp_path / ("p" * 250 + "1.png")), touch(tmp_path / ("p" * 250 + "2.png"))
    jobs, _ = plan([InputFile(first), InputFile(second)])
    assert len({job.output for job in jobs}) == 2 and all(len(job.output.name.encode()) <= 255 for job in jobs)


# --- cause 16: -o that differs from the input only in case --------------------------------------------


def test_cause16_output_differing_from_the_input_only_in_case(tmp_path: Path) -> None:
    source = touch(tmp_path / "good.png")
    case_insensitive = (tmp_path / "GOOD.png").exists()
    if case_insensitive:  # macOS/Windows: GOOD.png is good.png, so it must be refused
        with pytest.raises(UsageError, match="input itself"):
            plan([InputFile(source)], output=tmp_path / "GOOD.png")
    else:
        jobs, _ = plan([InputFile(source)], output=tmp_path / "GOOD.png")
        assert jobs[0].output == tmp_path / "GOOD.png" and jobs[0].source == source
    with pytest.raises(UsageError, match="input itself"):
        os.link(source, tmp_path / "hard.png")
        plan([InputFile(source)], output=tmp_path / "hard.png")

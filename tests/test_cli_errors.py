"""Every failure of the `sr` entry point is one line and an exit code; a hidden SR_DEBUG=1 shows the traceback.

Issue 11's acceptance: "No traceback for any user error anywhere". Errors of ours map by class; an
exception nobody foresaw (an OSError deep in a library, a bug) is still one line that says what it is.
"""
from __future__ import annotations

import errno

import pytest
from cli_support import run_cli

import sr_cli.batch


def raise_in_planning(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def planner(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(sr_cli.batch, "expand_inputs", planner)  # the command imports it when it runs


@pytest.mark.parametrize(("error", "expected"), [
    (RuntimeError("something odd"), "error: unexpected RuntimeError: something odd -- a bug in sr; rerun with SR_DEBUG=1"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/y.png"), "error: /x/y.png: Permission denied (errno 13)"),
    (MemoryError(), "error: out of memory"),
])
def test_an_unforeseen_exception_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                             error: BaseException, expected: str) -> None:
    monkeypatch.delenv("SR_DEBUG", raising=False)
    raise_in_planning(monkeypatch, error)
    result = run_cli(capsys, ["upscale", "a.png", "--model", "vdsr", "--scale", "2"])
    assert result.returncode == 1
    assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_sr_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_DEBUG", "1")
    raise_in_planning(monkeypatch, RuntimeError("something odd"))
    with pytest.raises(RuntimeError, match="something odd"):
        run_cli(capsys, ["upscale", "a.png", "--model", "vdsr", "--scale", "2"])


def test_a_typo_of_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, ["upscal", "a.png"])
    assert result.returncode == 2 and "Traceback" not in result.stderr

"""Run the `sr` CLI in-process (a subprocess would re-import torch for every call) and capture it."""
from __future__ import annotations

from typing import NamedTuple

import pytest

from sr_cli.cli.app import main


class CliResult(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> CliResult:
    """`sr ARGV...` through the real entry point (its exit-code mapping included)."""
    capsys.readouterr()  # drop output of earlier steps of the same test
    try:
        main(argv)
        code = 0
    except SystemExit as exited:
        code = int(exited.code or 0)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)

"""Weights paths and caches that are not what they seem (issue 11, causes 4, 8 and 16): each gets one line
saying what the path really is, and the exit code of its kind of problem, without ever opening a FIFO or
reading a device."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_support import run_cli
from odd_paths import ODD_PATHS

from sr_cli.weights.cache import entry_path
from sr_cli.weights.manifest import load_manifest

pytestmark = pytest.mark.timeout(120)  # a FIFO opened by mistake would block forever


# what each odd path must be called (tests/odd_paths.py builds them)
EXPECTED: dict[str, str] = {
    "folder": "is a folder, not a weights file",
    "fifo": r"is a named pipe \(FIFO\)",
    "dev_zero_link": r"is a character device \(/dev/zero, through a link\)",
    "symlink_loop": "a symbolic link loop",
    "dangling_link": r"a symbolic link to .*gone-weights\.pth, which does not exist",
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
@pytest.mark.parametrize("command", ["upscale", "inspect"])
def test_an_odd_weights_path_is_named_for_what_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     case: str, command: str) -> None:
    expected = EXPECTED[case]
    weights = ODD_PATHS[case](tmp_path, "weights.pth")
    image = tmp_path / "in.png"
    image.write_bytes(b"")  # never read: the weights are refused first
    argv = (["upscale", str(image), "--weights", str(weights), "--scale", "2", "-o", str(tmp_path / "out")]
            if command == "upscale" else ["weights", "inspect", str(weights)])
    result = run_cli(capsys, argv)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such file" not in lines[0], lines

    assert re.search(expected, lines[0]), lines[0]


def test_a_cache_dir_that_is_a_file_is_said_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    not_a_folder = tmp_path / "cache.txt"
    not_a_folder.write_text("x")
    monkeypatch.setenv("SR_CACHE_DIR", str(not_a_folder))
    for argv in (["weights", "verify"], ["weights", "list"], ["weights", "path", "vdsr"]):
        result = run_cli(capsys, argv)
        assert result.returncode == 2, (argv, result)
        assert f"SR_CACHE_DIR={not_a_folder}" in result.stderr and "is a file, not a folder" in result.stderr
        assert "empty" not in result.stderr


def _truncated_cache_entry(name: str) -> Path:
    entry = load_manifest().get(name)
    assert entry is not None and entry.sha256 is not None and entry.size is not None
    path = entry_path(entry.sha256, entry.filename)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * 1000)  # an interrupted copy into the cache, a full disk...
    return path


def test_a_truncated_cached_file_is_called_damaged_not_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cached = _truncated_cache_entry("vdsr")
    result = run_cli(capsys, ["weights", "path", "vdsr"])
    assert result.returncode == 3
    assert f"{cached} is damaged (1000 bytes" in result.stderr and "not in the cache" not in result.stderr
    monkeypatch.setenv("SR_OFFLINE", "1")
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    offline = run_cli(capsys, ["upscale", str(image), "--model", "vdsr", "--scale", "2", "-o", str(tmp_path / "o")])
    assert offline.returncode == 6
    assert f"{cached} is damaged" in offline.stderr and "network is off" in offline.stderr
    assert "not in the cache" not in offline.stderr



def test_weights_list_marks_a_truncated_cached_file_as_damaged(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    cached = _truncated_cache_entry("vdsr")
    listed = run_cli(capsys, ["weights", "list"])
    assert listed.returncode == 0, listed.stderr
    row = next(line.split() for line in listed.stdout.splitlines() if line.split()[:1] == ["vdsr"])
    assert "damaged" in row and "yes" not in row, row
    assert f"{cached} is damaged (1000 bytes" in listed.stderr  # the fix, once, on stderr
    as_json = run_cli(capsys, ["weights", "list", "--json"])
    record = next(item for item in [json.loads(line) for line in as_json.stdout.splitlines()] if item["name"] == "vdsr")
    assert record["cached"] is False and record["damaged"] == str(cached)
    healthy = next(item for item in [json.loads(line) for line in as_json.stdout.splitlines()] if item["name"] != "vdsr")
    assert healthy["damaged"] is None

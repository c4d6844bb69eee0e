"""The README and docs/ examples work as written.

Two checks, from cheap to real:
- every `sr ...` command line in a fenced code block of README.md and docs/*.md parses against the real
  CLI: each command, option and option value exists (a renamed flag or a removed choice fails here);
- the examples that need no network run, verbatim, in a scratch folder with SR_OFFLINE=1 on tiny
  images, and write what their comment promises (`# -> NAME`).
Synopsis lines (`sr upscale INPUT... [--model NAME | ...]`) are not commands and are passed over.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli
from PIL import Image

from sr_cli.cli import console
from sr_cli.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```")
SHELL_OPERATORS = {">", ">>", "|", "&&", ";", "2>", "2>&1", "<"}
# `[optional]`, `INPUT...`, `NAME|FILE`, or an option followed by a placeholder (`--alpha A`, `--weights FILE`)
SYNOPSIS_MARK = re.compile(r"\s\[|\.\.\.|\bNAME\b\||-[a-z-]+ (?:A|S|F|N|Q|NAME|FILE|DIR|PATH)(?:\s|$)")

# Examples that run here as written: offline (the bundled default), on tiny inputs. Each must still be in
# the docs: a test below fails when one is edited away, so this list follows the docs.
RUNNABLE = {
    "sr upscale photo.png": ["photo_x4_realesrgan-x4plus.png"],
    "sr upscale dir/ --ensemble": ["dir/a_x4_realesrgan-x4plus.png"],
}


def command_lines() -> list[tuple[str, str]]:
    """(where, command) for every `sr` line in a fenced block; `\\` continuations joined, comments cut."""
    found: list[tuple[str, str]] = []
    for path in DOCS:
        inside = False
        pending = ""
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if FENCE.match(raw.strip()):
                inside = not inside
                pending = ""
                continue
            if not inside:
                continue
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if SYNOPSIS_MARK.search(re.split(r"\s#", line, maxsplit=1)[0]):
                continue
            command = _strip_comment(line).removeprefix("$ ").strip()
            command = re.sub(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+", "", command)  # SR_OFFLINE=1 sr ...
            command = re.sub(r"^torchrun\s.*?-m sr_cli\s", "sr ", command)  # the torchrun launches run sr too
            if command.startswith("sr "):
                found.append((f"{path.relative_to(ROOT)}:{number}", command))
    return found


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` inside quotes is kept)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:
        return line
    return shlex.join(words) if words else ""


def _argv(command: str) -> list[str]:
    words = shlex.split(command)
    for index, word in enumerate(words):
        if word in SHELL_OPERATORS or word.startswith((">", "2>")):
            words = words[:index]
            break
    return words[1:]  # without the leading `sr`


def _parse(argv: list[str]) -> None:
    """Parse ARGV the way `sr` would, down to the leaf command, without running it."""
    import typer

    command = typer.main.get_command(app)
    context = command.make_context("sr", list(argv))
    while hasattr(command, "resolve_command"):  # a group: its subcommand's words are still to parse
        remaining = [*context._protected_args, *context.args]
        if not remaining:
            return
        name, found, rest = command.resolve_command(context, remaining)
        assert found is not None and name is not None, f"no command in {remaining}"
        command = found
        context = command.make_context(name, list(rest), parent=context)


COMMANDS = command_lines()


def test_the_docs_have_commands() -> None:
    assert len(COMMANDS) > 40  # the parser below found the examples, not an empty list


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_documented_command_parses(where: str, command: str) -> None:
    try:
        _parse(_argv(command))
    except Exception as error:  # click's UsageError, BadParameter, NoSuchOption, typer's value checks
        pytest.fail(f"{where}: `{command}` does not parse: {error}")
    finally:
        console.set_verbosity(console.Verbosity.NORMAL)  # a documented -q/-v set it while parsing


def test_the_parse_check_can_fail() -> None:
    with pytest.raises(Exception, match="no-such-flag"):
        _parse(["upscale", "photo.png", "--no-such-flag"])
    with pytest.raises(Exception, match="valid (number|float)"):
        _parse(["upscale", "photo.png", "--scale", "two"])


def test_every_runnable_example_is_still_documented() -> None:
    documented = {command for _, command in COMMANDS}
    assert set(RUNNABLE) <= documented, set(RUNNABLE) - documented


SIDE = 12  # pixels: the bundled RRDB runs 8 ensemble views of it in seconds on 2 cores


def _tiny_photo(path: Path, seed: int) -> None:
    generator = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, SIDE, dtype=np.float32)
    pixels = (ramp[None, :, None] * 0.6 + generator.uniform(0, 100, (SIDE, SIDE, 3))).clip(0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


@pytest.mark.parametrize("command", sorted(RUNNABLE))
def test_offline_examples_run_as_written(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SR_OFFLINE", "1")
    monkeypatch.setenv("SR_CACHE_DIR", str(tmp_path / "cache"))  # an empty cache: only the bundled file can run
    _tiny_photo(tmp_path / "photo.png", 0)
    (tmp_path / "dir").mkdir()
    _tiny_photo(tmp_path / "dir" / "a.png", 1)

    result = run_cli(capsys, _argv(command))

    assert result.returncode == 0, result.stderr
    for name in RUNNABLE[command]:
        written = tmp_path / name
        assert written.is_file(), f"`{command}` did not write {name}: {result.stderr}"
        with Image.open(written) as image:
            assert image.size == (4 * SIDE, 4 * SIDE)

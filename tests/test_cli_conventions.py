"""The conventions every command shares: -h, --version, completion, the epilog, flags shown as flags,
arguments as INPUTS..., and `sr env`."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import typer
from cli_support import run_cli
from typer.core import TyperArgument, TyperOption

from sr_cli import __version__, errors
from sr_cli.cli.app import app
from sr_cli.cli.conventions import ENVIRONMENT, EXIT_CODES, VARIABLE_NAMES, SrCommand, SrGroup

REPO_ROOT = Path(__file__).resolve().parents[1]


def command_tree() -> Iterator[tuple[list[str], typer.core._click.Command]]:
    """Every command and group of `sr`, with the words that name it (`[]` is `sr` itself)."""
    root = typer.main.get_command(app)
    stack: list[tuple[list[str], typer.core._click.Command]] = [([], root)]
    while stack:
        path, command = stack.pop()
        yield path, command
        for name, child in getattr(command, "commands", {}).items():
            stack.append(([*path, name], child))


ALL_COMMANDS = sorted((path for path, _ in command_tree()), key=" ".join)


def test_the_tree_has_every_command_and_each_follows_the_conventions() -> None:
    names = {" ".join(path) for path in ALL_COMMANDS}
    assert {"", "upscale", "eval", "downscale", "blend", "train", "env", "weights", "weights list",
            "weights rm", "weights prune"} <= names
    for path, command in command_tree():
        expected = SrGroup if hasattr(command, "commands") else SrCommand
        assert isinstance(command, expected), f"sr {' '.join(path)} is registered without cls={expected.__name__}"


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "sr")
def test_dash_h_is_help_everywhere_and_flags_show_no_type(path: list[str], capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one row per option, so each line can be checked alone
    code, out, err = run_cli(capsys, [*path, "-h"])
    assert code == 0, err
    assert out.lstrip().startswith(f"Usage: {' '.join(['sr', *path])} ")
    assert "<bool>" not in out
    assert "{" not in out.splitlines()[1], "Typer's {argument} notation in the usage line"
    assert "-h" in out and "--help" in out
    assert run_cli(capsys, [*path, "--help"]).stdout == out


def _flags_and_arguments() -> Iterator[tuple[list[str], TyperOption | TyperArgument]]:
    for path, command in command_tree():
        for parameter in command.params:
            if isinstance(parameter, (TyperOption, TyperArgument)):
                yield path, parameter


def test_every_flag_row_has_no_type_and_every_value_option_keeps_its_type(capsys: pytest.CaptureFixture[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    helps: dict[str, str] = {}
    flags = values = 0
    for path, parameter in _flags_and_arguments():
        if not isinstance(parameter, TyperOption) or parameter.hidden or not parameter.opts[0].startswith("--"):
            continue
        key = " ".join(path)
        if key not in helps:
            helps[key] = run_cli(capsys, [*path, "-h"]).stdout
        pattern = re.compile(rf"^│\s+(\*\s+)?{re.escape(parameter.opts[0])}(\s|,)")
        row = next((line for line in helps[key].splitlines() if pattern.search(line)), None)
        assert row is not None, f"sr {key} -h has no row for {parameter.opts[0]}"
        if parameter.is_flag:
            flags += 1
            assert "<" not in row.split(parameter.opts[0], 1)[1][:40], f"sr {key} {parameter.opts[0]}: {row}"
        else:
            values += 1
            assert "<" in row, f"sr {key} {parameter.opts[0]} lost its type: {row}"  # the check above can fail
    assert flags > 10 and values > 10


def test_positional_arguments_are_named_in_capitals(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, ["upscale", "-h"]).stdout
    assert "Usage: sr upscale [OPTIONS] INPUTS..." in out
    assert "INPUTS..." in out.split("Arguments", 1)[1]
    out = run_cli(capsys, ["weights", "download", "-h"]).stdout
    assert "Usage: sr weights download [OPTIONS] [NAMES]..." in out  # optional and repeatable
    out = run_cli(capsys, ["weights", "import", "-h"]).stdout
    assert "Usage: sr weights import [OPTIONS] NAME FILE" in out
    for path, parameter in _flags_and_arguments():
        if isinstance(parameter, TyperArgument):
            usage = run_cli(capsys, [*path, "-h"]).stdout.strip().splitlines()[0]
            assert (parameter.name or "").upper() in usage, (path, usage)


def test_a_missing_argument_is_named_as_the_usage_line_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, ["upscale"])
    assert code == 2 and "INPUTS" in err


@pytest.mark.parametrize("word", ["true", "False", "1", "yes"])
def test_a_value_after_a_flag_is_refused_as_such(word: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, ["upscale", "photo.png", "--ensemble", word])
    assert code == 2
    assert "--ensemble is a flag and takes no value" in err and f"not `--ensemble {word}`" in err
    (tmp_path / word).write_bytes(b"not an image")  # a file of that name: it is an input after all
    code, _, err = run_cli(capsys, ["upscale", word, "--ensemble", word])
    assert "is a flag" not in err and code == 3


def test_version_names_sr_torch_and_the_devices(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    for flag in ("--version", "-V"):
        code, out, _ = run_cli(capsys, [flag])
        lines = out.splitlines()
        assert code == 0
        assert lines[0] == f"sr {__version__}"
        assert lines[1].startswith(f"torch {torch.__version__} (")
        assert lines[2].startswith("devices: ") and lines[2].endswith("cpu")
        assert ("cuda:0" in lines[2]) == torch.cuda.is_available()


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o default -F _sr_completion sr"),
                                               ("zsh", "#compdef sr"), ("fish", "complete --command sr")])
def test_show_completion_writes_the_script_for_the_shell_given(shell: str, marker: str, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Typer detects the shell of the parent process unless told not to; then the shell is an argument.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    code, out, _ = run_cli(capsys, ["--show-completion", shell])
    assert code == 0
    assert marker in out and f"complete_{shell}" in out


def test_the_completion_script_completes_commands_and_options(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # what the bash script runs on <TAB>: sr itself, told by _SR_COMPLETE what the line holds so far
    monkeypatch.setenv("_SR_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "sr wei")
    monkeypatch.setenv("COMP_CWORD", "1")
    assert run_cli(capsys, []).stdout.split() == ["weights"]
    monkeypatch.setenv("COMP_WORDS", "sr upscale --ens")
    monkeypatch.setenv("COMP_CWORD", "2")
    assert run_cli(capsys, []).stdout.split() == ["--ensemble"]


def test_the_epilog_lists_every_exit_code_and_every_variable_sr_reads(capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_cli(capsys, ["--help"]).stdout
    listed = {code for codes, _ in EXIT_CODES for code in codes.split("/")}
    classes = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.SRError)]
    assert {str(cls.exit_code) for cls in classes} <= listed
    assert {"0", "1", "130", "143"} <= listed
    for names, _ in ENVIRONMENT:
        assert names in out
    monkeypatch.setenv("COLUMNS", "80")
    narrow = run_cli(capsys, ["--help"]).stdout
    for rows in (EXIT_CODES, ENVIRONMENT):  # each row on one line at 80 columns
        for key, text in rows:
            assert any(line.strip().startswith(key) and line.rstrip().endswith(text) for line in narrow.splitlines()), key
    # the variables the code reads, found in its source (SR_LAYOUT is a safetensors metadata key, not a variable)
    source = "\n".join(path.read_text() for path in (REPO_ROOT / "sr_cli").rglob("*.py")
                       if path.name != "conventions.py")
    read = set(re.findall(r'"((?:SR|HF|XDG|OMP)_[A-Z_]+)"', source)) - {"SR_LAYOUT"}
    assert read and read <= set(VARIABLE_NAMES), f"not in the epilog: {sorted(read - set(VARIABLE_NAMES))}"


def test_env_reports_versions_devices_caches_and_the_variables_set(capsys: pytest.CaptureFixture[str],
                                                                  isolated_caches: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    stored = isolated_caches / "sr" / "weights" / ("0" * 64) / "w.pth"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"x" * 12345)
    monkeypatch.setenv("SR_OFFLINE", "1")
    monkeypatch.setenv("SR_NOT_A_VARIABLE_OF_OURS", "secret")
    monkeypatch.setenv("SR_BENCHMARK_BASE_URL", "https://me:hunter2@mirror.example/sets")
    code, out, _ = run_cli(capsys, ["env", "--json"])
    assert code == 0 and len(out.splitlines()) == 1
    record = json.loads(out)
    assert record["command"] == "env" and record["status"] == "ok"
    assert record["sr"] == __version__
    assert record["torch"] == metadata.version("torch") and record["numpy"] == metadata.version("numpy")
    assert record["huggingface_hub"] == metadata.version("huggingface-hub")
    assert record["Pillow"] == metadata.version("pillow")
    assert record["cpu_count"] >= 1 and record["torch_threads"] >= 1
    assert record["offline"] is True
    assert record["hf_endpoint"] == "http://127.0.0.1:9"  # conftest's
    assert record["weights_cache"] == str(isolated_caches / "sr" / "weights")
    assert record["weights_cache_bytes"] == 12345 and record["sr_cache_bytes"] == 12345
    assert record["hf_hub_cache"] == str(isolated_caches / "hf" / "hub")
    assert record["variables"]["SR_OFFLINE"] == "1" and "SR_CACHE_DIR" in record["variables"]
    assert "SR_NOT_A_VARIABLE_OF_OURS" not in record["variables"]
    assert record["variables"]["SR_BENCHMARK_BASE_URL"] == "https://me:***@mirror.example/sets"

    code, text, _ = run_cli(capsys, ["env"])
    assert code == 0
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.splitlines())
    assert rows["sr"] == __version__ and rows["torch"] == metadata.version("torch")
    assert rows["offline"].startswith("yes")
    assert rows["weights"] == f"{isolated_caches / 'sr' / 'weights'} (0.0 MB)"
    assert "SR_OFFLINE=1" in rows["variables"]


def test_help_prose_is_wrapped_by_the_terminal_and_example_blocks_keep_their_indentation(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    out = run_cli(capsys, ["weights", "prune", "-h"]).stdout
    lines = [line.strip() for line in out.splitlines()]
    # the docstring's second paragraph is 4 source lines; at 400 columns it is one
    assert any(line.startswith("Partial downloads") and line.endswith("per file.") for line in lines)
    for path in (["env"], ["weights", "prune"]):  # Examples right after the first line, and after prose
        out = run_cli(capsys, [*path, "-h"]).stdout
        example = next(line for line in out.splitlines() if line.strip() == f"sr {' '.join(path)}")
        heading = next(line for line in out.splitlines() if line.strip() == "Examples:")
        assert len(example) - len(example.lstrip()) > len(heading) - len(heading.lstrip())


def test_version_and_env_describe_cuda_devices(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # no GPU here: torch's answers are stood in for, to check what sr makes of them
    import types

    import torch

    gpu = types.SimpleNamespace(name="NVIDIA H200", total_memory=150 * 2**30)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: gpu)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    code, out, _ = run_cli(capsys, ["-V"])
    assert code == 0
    assert out.splitlines()[1:] == [f"torch {torch.__version__} (CUDA 12.8 build)",
                                    "devices: cuda:0 NVIDIA H200 (150.0 GiB), cuda:1 NVIDIA H200 (150.0 GiB), cpu"]
    record = json.loads(run_cli(capsys, ["env", "--json"]).stdout)
    assert record["torch_cuda_build"] == "12.8"
    assert record["cuda_devices"] == [{"index": i, "name": "NVIDIA H200", "memory_bytes": 150 * 2**30} for i in (0, 1)]


def test_each_invocation_starts_at_the_default_verbosity() -> None:
    """-q in one in-process invocation (typer's CliRunner, as tests and embedders use) must not silence the
    next one: the root callback resets it before the command's own -q/-v are parsed."""
    from typer.testing import CliRunner

    from sr_cli.cli import console
    from sr_cli.cli.app import app

    quiet = CliRunner().invoke(app, ["weights", "list", "-q"])
    assert quiet.exit_code == 0 and console.verbosity() is console.Verbosity.QUIET
    plain = CliRunner().invoke(app, ["weights", "list"])
    assert plain.exit_code == 0 and console.verbosity() is console.Verbosity.NORMAL

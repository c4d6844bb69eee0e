"""What `sr train` tells a person and a script (issue 12): the summary, --json records, plain log lines
when stderr is no terminal, bicubic's PSNR beside the model's, --resume from the run folder alone, every
mismatch in one error, --data-dir for validation, exports named after the run.

One tiny run (EDSR 2x8, 6 updates, seconds on a CPU) is shared by the tests of this module."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli
from PIL import Image
from train_support import tiny_options, write_images
from typer.testing import CliRunner

from sr_cli.cli.app import app
from sr_cli.errors import UsageError
from sr_cli.metrics import psnr, y_channel
from sr_cli.resize import downscale_like_benchmark, imresize
from sr_cli.train.export import adopt_earlier_export, export_path
from sr_cli.train.options import TrainOverrides
from sr_cli.train.run_options import read_run_options, recorded_values, resolve_run_options, write_run_options
from sr_cli.train.validation import resolve_val_folder

STEPS, LOG_EVERY, VAL_EVERY = 6, 2, 3


@dataclass(frozen=True)
class Run:
    folder: Path
    data: Path
    benchmarks: Path  # holds Set5/HR, the EDSR benchmark layout --data-dir takes
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("train_cli")
    data = write_images(root / "hr", count=3, size=(40, 48))
    # Odd sizes: the HR is mod-cropped to a multiple of the scale, for the model and for bicubic alike.
    benchmarks = root / "benchmarks"
    write_images(benchmarks / "Set5" / "HR", count=2, size=(25, 31), seed=7)
    folder = root / "runs" / "tiny-x2"
    argv = ["train", "--model", "edsr-baseline", "--scale", "2", "--data", str(data), "--val", "set5",
            "--data-dir", str(benchmarks), "--out", str(folder), "--steps", str(STEPS), "--batch", "2",
            "--patch", "8", "--blocks", "2", "--features", "8", "--log-every", str(LOG_EVERY),
            "--val-every", str(VAL_EVERY), "--device", "cpu", "--json"]
    # No network and an empty cache: Set5 can only come from --data-dir.
    env = {"SR_CACHE_DIR": str(root / "cache"), "SR_OFFLINE": "1", "SR_BENCHMARK_BASE_URL": "http://127.0.0.1:9"}
    result = CliRunner().invoke(app, argv, env=env)
    return Run(folder, data, benchmarks, result.exit_code, result.stdout, result.stderr)


def _records(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def _metrics(folder: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _bicubic_psnr(hr_dir: Path, scale: int) -> float:
    """Independently: LR = MATLAB imresize(modcrop(HR), 1/s), bicubic back up, Y PSNR with border = scale."""
    values = []
    for path in sorted(hr_dir.glob("*.png")):
        hr = np.asarray(Image.open(path).convert("RGB"))
        up = imresize(downscale_like_benchmark(hr, scale), float(scale))
        values.append(psnr(y_channel(up, rounded=False), y_channel(hr[: up.shape[0], : up.shape[1]], rounded=False),
                           border=scale))
    return float(np.mean(values))


def test_json_lines_stream_each_validation_then_the_result(run: Run) -> None:
    assert run.exit_code == 0, run.stderr
    records = _records(run.stdout)  # with --json stdout holds JSON lines only
    assert all(r["command"] == "train" for r in records)
    assert [r["status"] for r in records] == ["validated", "validated", "done"]
    validations = [r for r in _metrics(run.folder) if "val_psnr" in r]
    for record, measured in zip(records[:2], validations, strict=True):
        assert record["step"] == measured["step"] and record["psnr"] == round(measured["val_psnr"], 4)
        assert record["bicubic_psnr"] == round(measured["bicubic_psnr"], 4)
    best = max(validations, key=lambda r: r["val_psnr"])
    done = records[-1]
    exported = run.folder / "tiny-x2.safetensors"
    assert done["path"] == str(exported) and exported.is_file()
    assert (done["best_psnr"], done["best_step"]) == (round(best["val_psnr"], 4), best["step"])
    assert (done["step"], done["total_steps"], done["start_step"]) == (STEPS, STEPS, 0)
    assert done["device"] == "cpu" and done["model"] == "edsr-baseline" and done["scales"] == [2]
    assert isinstance(done["seconds"], float) and done["seconds"] > 0
    assert isinstance(done["steps_per_second"], float) and done["steps_per_second"] > 0
    assert [r["path"] is not None for r in records[:2]] == [r["best"] for r in records[:2]]


def test_off_a_terminal_a_plain_line_every_log_every_steps_and_a_summary(run: Run) -> None:
    assert "\x1b" not in run.stderr  # no terminal control codes in a log file
    steps = [int(m.group(1)) for m in re.finditer(r"^step (\d+)/6  .* it/s  ETA \S+  lr \S+  l1 \S+", run.stderr, re.M)]
    assert steps == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert len(re.findall(r"^val @ \d+: PSNR [\d.]+ dB, bicubic [\d.]+ dB", run.stderr, re.M)) == STEPS // VAL_EVERY
    summary = run.stderr.splitlines()[-2:]
    assert summary[0].startswith(f"trained {run.folder}: steps 1-{STEPS} of {STEPS} in ")
    assert re.search(r" \(training [\d.]+ it/s\), on cpu$", summary[0]), summary[0]
    done = _records(run.stdout)[-1]
    assert summary[1].startswith(f"best val PSNR {done['best_psnr']:.3f} dB at step {done['best_step']} (bicubic ")
    assert summary[1].endswith(f"exported {run.folder / 'tiny-x2.safetensors'}")


def test_bicubic_psnr_is_measured_like_an_independent_computation(run: Run) -> None:
    expected = _bicubic_psnr(run.benchmarks / "Set5" / "HR", 2)
    assert all(abs(r["bicubic_psnr"] - expected) < 1e-9 for r in _metrics(run.folder) if "val_psnr" in r)
    assert f"bicubic PSNR {expected:.3f} dB" in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("val @ ")]
    assert lines and all(f"bicubic {expected:.3f} dB" in line for line in lines)  # beside the model's PSNR


def test_resume_needs_only_the_run_folder_and_records_the_new_length(
        run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tiny-x2"
    shutil.copytree(run.folder, folder)
    result = run_cli(capsys, ["train", "--resume", "--out", str(folder), "--steps", "8", "--data-dir",
                              str(run.benchmarks), "--json", "-q"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # -q: errors only
    done = _records(result.stdout)[-1]
    assert (done["status"], done["start_step"], done["step"], done["total_steps"]) == ("done", STEPS, 8, 8)
    assert done["path"] == str(folder / "tiny-x2.safetensors")
    verbose = run_cli(capsys, ["train", "--resume", "--out", str(folder), "--steps", "8", "-v", "--val", "SET5"])
    assert verbose.returncode == 0, verbose.stderr  # at step 8 already: nothing to train, the export is kept
    assert f"resuming with the options recorded in {folder / 'options.toml'}" in verbose.stderr
    assert "options: model=edsr-baseline, scale=2," in verbose.stderr  # -v: the resolved options
    assert verbose.stdout == f"{folder / 'tiny-x2.safetensors'}\n"
    recorded = read_run_options(folder)
    assert recorded is not None and recorded.steps == 8 and recorded.batch == 2 and recorded.val == "set5"


def test_every_option_that_defines_the_run_is_listed_in_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "a"
    out.mkdir(parents=True)
    write_run_options(out, tiny_options(tmp_path / "hr", out, val="set5"))
    changed = TrainOverrides(out=out, resume=True, batch=8, patch=12, seed=3, val="set14", steps=9, lr=1e-3)
    with pytest.raises(UsageError) as caught:
        resolve_run_options(changed)
    message = str(caught.value)
    for expected in ("--batch was 4, now 8", "--patch was 8, now 12", "--seed was 0, now 3", "--val was set5, now set14"):
        assert expected in message
    assert "--steps" not in message and "--lr" not in message  # these may change on resume
    # The same through the CLI: one line, exit code 2, nothing trained.
    result = run_cli(capsys, ["train", "--resume", "--out", str(out), "--batch", "8", "--seed", "3"])
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--batch was 4, now 8; --seed was 0, now 3" in result.stderr
    # Spelled differently, the same values are no change.
    same = resolve_run_options(TrainOverrides(out=out, resume=True, val="Set5", data=str(tmp_path / "elsewhere")))
    assert same.batch == 4 and same.val == "Set5" and same.data == str(tmp_path / "elsewhere")
    recorded = recorded_values(resolve_run_options(TrainOverrides(model="edsr-baseline", scale=2, data="div2k",
                                                                  val="Set5", out=out)))
    assert (recorded["data"], recorded["val"]) == ("div2k", "set5")  # the DIV2K training set, not div2k-val


def test_resume_without_a_recorded_run_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="holds no run to continue"):
        resolve_run_options(TrainOverrides(out=tmp_path / "nothing", resume=True))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "last.pt").write_bytes(b"")  # a run of an sr that did not record its options
    with pytest.raises(UsageError, match="give the run's options again"):
        resolve_run_options(TrainOverrides(out=tmp_path / "old", resume=True))


def test_validation_set_errors_name_val_and_data_dir(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--val .*nowhere: neither a known set nor an existing folder"):
        resolve_val_folder(str(tmp_path / "nowhere"), (2,))
    from sr_cli.errors import DatasetError

    with pytest.raises(DatasetError, match="--data-dir .*: not a folder"):
        resolve_val_folder("set5", (2,), data_dir=tmp_path / "missing")


def test_the_export_name_is_the_model_name_in_upscale_outputs_and_eval_rows(
        run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((6, 7, 3), 90, np.uint8)).save(photo)
    weights = run.folder / "tiny-x2.safetensors"
    result = run_cli(capsys, ["upscale", str(photo), "--weights", str(weights), "-o", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "photo_x2_tiny-x2.png").is_file()
    from sr_cli.evaluate import model_label

    assert model_label(str(weights), "edsr", ensemble=False) == "tiny-x2"
    from sr_cli.weights.safetensors_io import read_safetensors

    assert read_safetensors(weights)[1]["sr.run"] == "tiny-x2"


def test_a_resumed_run_keeps_one_export_under_its_new_name(tmp_path: Path) -> None:
    folder = tmp_path / "renamed"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")  # what an older sr exported
    said = adopt_earlier_export(folder, None)
    assert said is not None and "renamed.safetensors" in said
    assert export_path(folder).read_bytes() == b"weights" and not (folder / "model.safetensors").exists()
    assert adopt_earlier_export(folder, None) is None  # nothing left to rename


def test_help_is_grouped_and_fits_80_columns() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for panel in ("Run", "Data and validation", "Recipe overrides", "Checkpoints and logging", "Hardware"):
        assert any(line.startswith(f"╭─ {panel} ") for line in lines), panel
    assert "--data-dir" in result.stdout and "Examples" in result.stdout


def test_the_live_view_shows_bicubic_beside_the_model() -> None:
    """On a terminal the same figures are drawn in place: rendered here into a recording console."""
    from rich.console import Console

    from sr_cli.cli.train_report import _LiveView
    from sr_cli.train.loop import StepInfo, ValInfo
    from sr_cli.train.validation import ValResult

    view = _LiveView()
    view.on_progress("prepare training images", 1, 3)
    view.on_step(StepInfo(step=40, total=100, losses={"l1": 0.0213}, lr=1e-4, steps_per_second=2.0, eta_seconds=30))
    view.on_val(ValInfo(40, ValResult(28.85, 0.81, {2: (28.85, 0.81)}), True, ValResult(27.01, 0.78, {2: (27.01, 0.78)})))
    screen = Console(record=True, width=100, color_system=None)
    screen.print(view._render())
    text = screen.export_text()
    assert "train" in text and "40/100" in text and "prepare training images" in text and "1/3" in text
    assert "PSNR 28.850 dB" in text and "bicubic 27.010 (+1.840)" in text and "l1 0.0213" in text


def test_ctrl_c_ends_the_json_stream_with_an_interrupted_record(
        run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_cli.train import loop

    original = loop._after_update

    def interrupt_after_step_2(*args: object) -> None:
        original(*args)  # type: ignore[arg-type]  # the loop's own arguments, passed through
        if args[3] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_after_update", interrupt_after_step_2)
    out = tmp_path / "stopped"
    result = run_cli(capsys, ["train", "--model", "edsr-baseline", "--scale", "2", "--data", str(run.data),
                              "--val", "none", "--out", str(out), "--steps", "5", "--batch", "2", "--patch", "8",
                              "--blocks", "2", "--features", "8", "--device", "cpu", "--json"])
    assert result.returncode == 130
    last = _records(result.stdout)[-1]
    assert (last["status"], last["step"], last["checkpoint"]) == ("interrupted", 2, str(out / "last.pt"))


def test_vdsr_bicubic_is_its_own_input_scored_like_its_output(tmp_path: Path) -> None:
    """VDSR validates on Y; its input is the bicubic-upscaled Y, so bicubic's figure is that input's."""
    from sr_cli.color import rgb_to_ycbcr_uint8
    from sr_cli.resize import modcrop
    from sr_cli.train.validation import bicubic_baseline, prepare_validation

    folder = write_images(tmp_path / "val", count=2, size=(25, 31), seed=3)
    data = prepare_validation(folder, (2,), "y-upscaled", tmp_path / "cache")
    values = []
    for path in sorted(folder.glob("*.png")):
        y = modcrop(rgb_to_ycbcr_uint8(np.asarray(Image.open(path).convert("RGB")))[..., 0].astype(np.float64) / 255, 2)
        up = imresize(imresize(y, 0.5), output_shape=y.shape)
        values.append(psnr(np.clip(up, 0, 1) * 255, y * 255, border=2))
    assert abs(bicubic_baseline(data).psnr - float(np.mean(values))) < 1e-3  # the cache stores float32


@pytest.mark.parametrize("model, scale", [("edsr-baseline", 2), ("mdsr-baseline", None), ("mdsr-baseline", 3)])
def test_the_recorded_options_give_the_same_run_back(tmp_path: Path, model: str, scale: int | None) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "val").mkdir()
    options = resolve_run_options(TrainOverrides(
        model=model, scale=scale, data=str(tmp_path / "hr"), out=out, val=str(tmp_path / "val"),
        data_dir=tmp_path / "bench", steps=7, batch=3, patch=12, lr=0.5, init="edsr-x2", amp="bf16", ema=0.99,
        seed=3, workers=1, val_every=5, save_every=6, log_every=2, device="cpu", blocks=2, features=8,
        clip_theta=0.25, vgg_weights=tmp_path / "vgg.pth", random_vgg=False))
    write_run_options(out, options)
    recorded = read_run_options(out)
    assert recorded is not None
    assert resolve_run_options(TrainOverrides(out=out, resume=True)) == dataclasses.replace(options, resume=True)


def test_a_missing_validation_set_fails_before_the_training_images_are_prepared(run: Run, tmp_path: Path) -> None:
    from sr_cli.train.loop import TrainCallbacks, train

    prepared: list[str] = []
    options = tiny_options(run.data, tmp_path / "run", val="set5", data_dir=tmp_path / "no-benchmarks")
    from sr_cli.errors import DatasetError

    with pytest.raises(DatasetError, match="--data-dir"):
        train(options, TrainCallbacks(progress=lambda what, done, total: prepared.append(what)))
    assert prepared == [] and not (tmp_path / "run").exists()

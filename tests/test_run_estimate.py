"""The estimate before a long CPU run: said once above a minute, with the faster choices; never timed here
(the rate is injected), silent with -q and for a short run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_cli

from sr_cli.api import UpscaleOptions, Upscaler
from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.archs.runtime import SRNet, build_module
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.cli import console, estimate
from sr_cli.cli.console import Verbosity
from sr_cli.engine.progress import profile_forward
from sr_cli.imageio import write_image
from sr_cli.imageio.reader import peek_header

CPU = torch.device("cpu")


def tiny_upscaler(ensemble: bool = False) -> Upscaler:
    torch.manual_seed(0)
    net = SRNet(build_module("srvgg", SRVGGParams(num_feat=4, num_conv=1, upscale=2))).eval()
    return Upscaler(net, name="tiny", output_scale=2, options=UpscaleOptions(tile=0, ensemble=ensemble, device="cpu"))


def test_work_is_macs_per_pixel_x_pixels_x_views_x_passes() -> None:
    upscaler = tiny_upscaler(ensemble=True)
    per_pixel = upscaler.forward_profile().macs_per_pixel
    assert upscaler.work_macs(10, 20) == pytest.approx(per_pixel * 200 * 8)
    assert upscaler.work_macs(10, 20, has_alpha=True) == pytest.approx(per_pixel * 200 * 8 * 2)
    run = estimate.estimate_run(upscaler, [(20, 10, False), (5, 4, False)], macs_per_second=per_pixel)
    assert run.images == 2 and run.seconds == pytest.approx((200 + 20) * 8)
    many = estimate.estimate_run(upscaler, [(20, 10, False), (5, 4, False)], macs_per_second=per_pixel, images=10)
    assert many.images == 10 and many.seconds == pytest.approx(5 * run.seconds)  # the sample stands for the rest


def test_slow_rate_says_so_once_with_the_faster_choices() -> None:
    upscaler = tiny_upscaler(ensemble=True)
    run = estimate.estimate_run(upscaler, [(500, 500, False)], macs_per_second=1e6)
    assert run.seconds > estimate.LONG_RUN_SECONDS
    message = estimate.long_run_message(run)
    assert message is not None and message.startswith("this will take about ")
    assert "1 image," in message and "on the CPU" in message
    assert "a GPU (--device cuda)" in message and "no --ensemble" in message
    assert "smaller model" not in message  # this model is already cheaper than the compact one


def test_fast_rate_says_nothing() -> None:
    run = estimate.estimate_run(tiny_upscaler(), [(500, 500, False)], macs_per_second=1e15)
    assert estimate.long_run_message(run) is None


def test_choices_name_only_what_applies() -> None:
    heavy = estimate.RunEstimate(images=1, macs=1e13, macs_per_second=1e9, on_cpu=True, ensemble=False,
                                 macs_per_input_pixel=18e6, runs_at_output_size=False)
    assert estimate.faster_choices(heavy) == ["a GPU (--device cuda)", estimate.SMALLER_MODEL]
    output_sized = estimate.RunEstimate(images=1, macs=1e13, macs_per_second=1e9, on_cpu=False, ensemble=False,
                                        macs_per_input_pixel=1e5, runs_at_output_size=True)
    assert estimate.faster_choices(output_sized) == [
        "a smaller --outscale (this model's work grows with the output size)"]


def test_compact_figure_is_the_engines_count_of_srvgg_compact() -> None:
    net = SRNet(build_module("srvgg", SRVGGParams())).eval()  # realesr-general-x4v3's shape
    measured = profile_forward(net, in_channels=3, size_multiple=1, device=CPU).macs_per_pixel
    assert measured == pytest.approx(estimate.COMPACT_MACS_PER_PIXEL, rel=0.01)


@pytest.mark.parametrize(("seconds", "text"), [(45, "45 s"), (420, "7 min"), (5400, "1.5 h")])
def test_duration(seconds: float, text: str) -> None:
    assert estimate.duration(seconds) == text


def test_peek_header_reads_sizes_and_alpha_without_decoding(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", np.zeros((6, 9, 4), np.uint8))
    write_image(tmp_path / "b.jpg", np.zeros((5, 7, 3), np.uint8))
    (tmp_path / "c.png").write_bytes(b"not an image")
    assert peek_header(tmp_path / "a.png") == (9, 6, True)
    assert peek_header(tmp_path / "b.jpg") == (7, 5, False)
    assert peek_header(tmp_path / "c.png") is None and peek_header(tmp_path) is None


@pytest.fixture
def tiny_edsr(tmp_path: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    weights = tmp_path / "tiny_edsr.pt"
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), weights)
    image = tmp_path / "in.png"
    write_image(image, np.zeros((12, 10, 3), np.uint8))
    return weights, image


class FakeClock:
    """Advances `step` seconds at every reading."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.time = 0.0

    def __call__(self) -> float:
        self.time += self.step
        return self.time


class FakeJob:
    def __init__(self, source: Path) -> None:
        self.source = source


def check_after(upscaler: Upscaler, sources: list[Path], clock: FakeClock,
                reports: list[tuple[int, int]]) -> estimate.LongRunCheck:
    """Feed a LongRunCheck the first file's start and progress reports, as the batch would."""
    moved: list[tuple[int, int]] = []
    check = estimate.LongRunCheck(upscaler, sources, clock=clock)
    check.file_started(lambda job, index: None)(FakeJob(sources[0]), 0)  # type: ignore[arg-type]
    progress = check.progress(lambda done, total: moved.append((done, total)))
    for done, total in reports:
        progress(done, total)
    assert moved == reports  # the wrapped callback sees every report
    return check


def test_rate_comes_from_the_first_units_and_covers_every_input(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    sources = []
    for index in range(3):
        sources.append(tmp_path / f"{index}.png")
        write_image(sources[-1], np.zeros((100, 100, 3), np.uint8))
    upscaler = tiny_upscaler()
    work = upscaler.work_macs(100, 100)
    # the clock is read at the start and at each report, 2 s apart; the rate is taken from the first unit
    # on (what came before it is warm-up), over at least CALIBRATION_SECONDS
    check = check_after(upscaler, sources, FakeClock(2.0), [(1, 100), (2, 100)])
    assert check.message is None
    # 2 % of the first image in the 4 s after its first unit: 200 s an image, 3 images
    check = check_after(upscaler, sources, FakeClock(2.0), [(0, 100), (1, 100), (2, 100), (3, 100)])
    assert check.message is not None and "about 10 min (3 images" in check.message
    assert f"{estimate.engineering(3 * work)}MAC" in check.message
    assert capsys.readouterr().err.count("this will take about") == 1
    check = check_after(upscaler, sources, FakeClock(1.0), [(5, 10), (10, 10)])  # done in 3 s: short
    assert check.message is None and "this will take" not in capsys.readouterr().err


def test_quiet_or_a_gpu_decides_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "big.png", np.zeros((400, 300, 3), np.uint8))
    console.set_verbosity(Verbosity.QUIET)
    try:
        check = check_after(tiny_upscaler(True), [tmp_path / "big.png"], FakeClock(100.0), [(1, 1000), (2, 1000)])
    finally:
        console.set_verbosity(Verbosity.NORMAL)
    assert check.message is None and capsys.readouterr().err == ""

    class OnGpu:
        device = torch.device("cuda")

    check = check_after(OnGpu(), [tmp_path / "big.png"], FakeClock(100.0), [(1, 1000)])  # type: ignore[arg-type]
    assert check.message is None


def cli(capsys: pytest.CaptureFixture[str], weights: Path, image: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = run_cli(capsys, ["upscale", str(image), "-o", str(out), "--weights", str(weights), "--scale", "2",
                              "--tile", "0", "--device", "cpu", *extra])
    return result.returncode, result.stderr


def test_sr_upscale_says_a_long_run_once(tiny_edsr: tuple[Path, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    weights, image = tiny_edsr
    monkeypatch.setattr(estimate, "now", FakeClock(1000.0))  # every unit seems to take 1000 s
    code, err = cli(capsys, weights, image, tmp_path / "slow.png", "--ensemble")
    assert code == 0, err
    assert err.count("this will take about") == 1 and "faster: a GPU (--device cuda), no --ensemble" in err


def test_sr_upscale_is_silent_for_a_short_run(tiny_edsr: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    weights, image = tiny_edsr
    monkeypatch.setattr(estimate, "now", FakeClock(1e-6))
    code, err = cli(capsys, weights, image, tmp_path / "fast.png")
    assert code == 0 and "this will take" not in err


def test_sr_upscale_quiet_says_nothing_of_a_long_run(tiny_edsr: tuple[Path, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    weights, image = tiny_edsr
    readings = FakeClock(1000.0)
    monkeypatch.setattr(estimate, "now", readings)
    code, err = cli(capsys, weights, image, tmp_path / "quiet.png", "--ensemble", "-q")
    assert code == 0 and err == "" and readings.time == 0.0  # not even timed

"""sr_cli.cli.progress: the one bar builder -- what its columns say, and that it draws only for a person."""
from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from rich.console import Console
from rich.progress import Task, TaskID

from sr_cli.cli import console, progress
from sr_cli.cli.console import Verbosity


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def a_task(*, total: float | None, done: float = 0, seconds: float = 0.0, kind: str = "count",
           unit: str = "img") -> Task:
    """A task that has done `done` of `total` in the `seconds` since it started, on a clock of its own. Its
    progress is set, not advanced: rich has no speed samples, the columns fall back to the average since the start."""
    clock = FakeClock()
    task = Task(TaskID(0), "x", total, 0, _get_time=clock, fields={"kind": kind, "unit": unit})
    task.start_time = clock.now
    clock.now += seconds
    task.completed = done
    return task


def text(column: object, task: Task) -> str:
    return str(column.render(task))  # type: ignore[attr-defined]


def test_eta_is_the_work_left_over_the_rate_since_the_start() -> None:
    task = a_task(total=10, done=4, seconds=40.0)  # 0.1 img/s: the average since the start
    assert progress.rate_of(task) == pytest.approx(0.1)
    assert progress.eta_seconds(task) == pytest.approx(60.0)
    assert text(progress.EtaColumn(), task) == "eta 1:00"
    assert text(progress.RateColumn(), task) == "10 s/img"
    assert text(progress.AmountColumn(), task) == "4/10"


def test_unknown_total_or_rate_shows_no_eta() -> None:
    unknown_total = a_task(total=None, done=3, seconds=5)
    assert progress.eta_seconds(unknown_total) is None
    assert text(progress.AmountColumn(), unknown_total) == "3/?"
    nothing_done = a_task(total=8)
    assert progress.eta_seconds(nothing_done) is None
    assert text(progress.EtaColumn(), nothing_done) == ""


def test_bytes_and_percent_tasks() -> None:
    download = a_task(total=80_000_000, done=8_000_000, seconds=2, kind="bytes")
    assert text(progress.AmountColumn(), download) == "8.0/80.0 MB"
    assert progress.byte_amount(900_000, 1_200_000) == "900.0 kB/1.2 MB"
    assert progress.byte_amount(5, None) == "5 bytes"
    assert text(progress.RateColumn(), download) == "4.0 MB/s"
    assert progress.eta_seconds(download) == pytest.approx(18.0)
    work = a_task(total=400, done=100, seconds=3, kind="percent")
    assert text(progress.AmountColumn(), work).strip() == "25.0%"
    assert text(progress.RateColumn(), work) == ""  # engine units mean nothing to a person
    assert text(progress.EtaColumn(), work) == "eta 0:09"


def test_fast_rates_read_per_second() -> None:
    task = a_task(total=100, done=10, seconds=4, unit="file")
    assert text(progress.RateColumn(), task) == "2.5 file/s"


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0:00"), (59.6, "1:00"), (754, "12:34"), (3723, "1:02:03")])
def test_clock(seconds: float, shown: str) -> None:
    assert progress.clock(seconds) == shown


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """stderr is a terminal (the console.stderr every bar and shows_progress() look at)."""
    buffer = io.StringIO()
    fake = Console(file=buffer, force_terminal=True, width=100)
    monkeypatch.setattr(console, "stderr", fake)
    monkeypatch.setattr(progress, "stderr", fake)
    yield buffer
    console.set_verbosity(Verbosity.NORMAL)


def test_bars_draw_on_a_terminal(terminal: io.StringIO) -> None:
    console.set_verbosity(Verbosity.NORMAL)
    with progress.progress_bar("weights.pth", kind="count", unit="img", total=4) as update:
        update(2, 4)
    assert "weights.pth" in terminal.getvalue()


def test_no_bars_with_quiet(terminal: io.StringIO) -> None:
    console.set_verbosity(Verbosity.QUIET)
    bars = progress.progress_bars()
    assert bars.disable
    with progress.progress_bar("weights.pth", total=4) as update:
        update(2, 4)
    assert terminal.getvalue() == ""


def test_no_bars_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    fake = Console(file=buffer, force_terminal=False)
    monkeypatch.setattr(console, "stderr", fake)
    monkeypatch.setattr(progress, "stderr", fake)
    assert progress.progress_bars().disable
    with progress.progress_bar("weights.pth", kind="bytes", total=10) as update:
        update(5, 10)
    assert buffer.getvalue() == ""


def test_a_line_fits_80_columns_and_no_figure_is_cut() -> None:
    bars = progress.progress_bars()
    clock = FakeClock()
    bars.get_time = clock
    lines = {}
    for label, kind, unit, total, done in [
        ("files", "count", "file", 12, 3),
        ("a_really_long_photo_name_from_a_camera_2026_12_01.png", "percent", "", 4000, 1234),
        ("download", "bytes", "", 67_000_000, 12_000_000),
    ]:
        task, update = progress.add_bar(bars, label, kind=kind, unit=unit, total=total)  # type: ignore[arg-type]
        lines[task] = done
    clock.now += 3725  # over an hour: the longest clocks
    for task, done in lines.items():
        bars.update(task, completed=done)
    out = Console(width=80, color_system=None, record=True, file=io.StringIO())
    out.print(bars.make_tasks_table(bars.tasks))
    rendered = out.export_text().splitlines()
    assert len(rendered) == 3 and all(len(line) <= 80 for line in rendered)
    # 3 files in 3725 s: 1242 s a file, 9 left
    assert "3/12" in rendered[0] and "21 min/file" in rendered[0] and "eta 3:06:15" in rendered[0]
    cut = rendered[1].split()[0]  # where rich places the ellipsis moved between versions: check what it promises
    label = "a_really_long_photo_name_from_a_camera_2026_12_01.png"
    assert cut.endswith("…") and label.startswith(cut[:-1]) and len(cut) <= progress.DESCRIPTION_WIDTH + 1
    assert "30.9%" in rendered[1]
    assert "12.0/67.0 MB" in rendered[2]


def test_a_piped_stdout_keeps_its_lines_while_bars_run(terminal: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
    """rich sent what was printed on stdout while bars ran to the bars' console (stderr): `sr eval --json | jq`
    on a terminal lost its records to the screen. A stdout that is no terminal is left alone."""
    console.set_verbosity(Verbosity.NORMAL)
    capsys.readouterr()
    with progress.progress_bar("eval", total=2) as update:
        update(1, 2)
        console.json_line({"command": "eval", "status": "ok"})
    assert capsys.readouterr().out == '{"command": "eval", "status": "ok"}\n'
    assert "status" not in terminal.getvalue() and "eval" in terminal.getvalue()

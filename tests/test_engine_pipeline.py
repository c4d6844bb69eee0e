"""The tile pipeline (engine/pipeline.py): batches, the overlapped issue order, out-of-memory recovery.

The scheduler is device-independent: `RecordingLane` has the interface of the CUDA stream lane (upload,
launch, collect; `overlaps` = True) but computes on the CPU and records the order in which the driver
issues the steps. The CUDA lane itself is checked against the direct lane only where CUDA exists.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from sr_cli.engine import EnginePlan, TileStats, upscale_tensor
from sr_cli.engine import upscale as upscale_module
from sr_cli.engine.memory import DEFAULT_COST_PER_PIXEL
from sr_cli.engine.pipeline import (
    MAX_BATCH,
    DirectLane,
    Lane,
    PipelineStats,
    TileQueue,
    Unit,
    batch_for_budget,
    make_lane,
    run_pipeline,
)
from sr_cli.engine.tiling import Tile, crop, tile_grid
from sr_cli.engine.upscale import upscale_bands
from sr_cli.errors import DeviceError

CPU = torch.device("cpu")
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


class TinyNet(nn.Module):
    """x2, receptive radius 2: tiles with overlap >= 2 reproduce the whole image to float rounding."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.tail(torch.relu(self.head(x))))


NET = TinyNet().eval()


def per_sample(x: Tensor) -> Tensor:
    """NET on each window of a batch alone: batch-invariant by construction, so a batched run must give
    the very bytes of one tile at a time (what is left to check is the engine's stacking and pasting)."""
    return torch.cat([NET(window[None]) for window in x])


# A conv kernel may block a batch differently from one image (oneDNN here): last-bit differences only.
KERNEL_ROUNDING = 1e-6
IMAGE = torch.rand(3, 52, 60, generator=torch.Generator().manual_seed(7))


def _run(model: Callable[[Tensor], Tensor], *, tile: int = 16, batch: int | None = None,
         stats: TileStats | None = None, ensemble: bool = False, image: Tensor = IMAGE) -> Tensor:
    plan = EnginePlan(scale=2, device=CPU, precision="fp32", tile=tile, overlap=4, ensemble=ensemble, batch=batch)
    return upscale_tensor(model, image, plan, stats=stats)


def _queue(grid: list[Tile], image: Tensor, *, reach: int, max_batch: int) -> TileQueue:
    return TileQueue(grid, cut=lambda t: crop(image, t.window_rows, t.window_cols), height=image.shape[-2],
                     width=image.shape[-1], reach=reach, multiple=1, min_tile=16, max_batch=max_batch,
                     stats=PipelineStats())


class RecordingLane:
    """The CUDA lane's interface on the CPU: launch computes, collect hands the result over; every step
    is logged as (step, first core of the unit, tiles in it)."""

    overlaps = True

    def __init__(self, compute: Callable[[Tensor], Tensor], fail: Callable[[str, Tensor], bool] | None = None) -> None:
        self.compute = compute
        self.fail = fail or (lambda step, x: False)
        self.log: list[tuple[str, int]] = []
        self._ids: dict[int, int] = {}
        self._kept: list[Tensor] = []  # every staged tensor stays alive, so no two share a data_ptr
        self.resident = 0  # units uploaded and not yet collected: what the device would hold
        self.most_resident = 0

    def _unit_id(self, x: Tensor) -> int:
        return self._ids.setdefault(x.data_ptr(), len(self._ids))

    def upload(self, windows: Tensor) -> object:
        if self.fail("upload", windows):
            raise torch.cuda.OutOfMemoryError(OOM)
        staged = windows.clone()
        self._kept.append(staged)
        self.log.append(("upload", self._unit_id(staged)))
        self.resident += 1
        self.most_resident = max(self.most_resident, self.resident)
        return staged

    def launch(self, staged: object) -> object:
        assert isinstance(staged, Tensor)
        if self.fail("launch", staged):
            self.resident -= 1
            raise torch.cuda.OutOfMemoryError(OOM)
        self.log.append(("launch", self._unit_id(staged)))
        return staged, self.compute(staged).float().contiguous()

    def collect(self, launched: object) -> Tensor:
        assert isinstance(launched, tuple)
        staged, output = launched
        self.log.append(("collect", self._unit_id(staged)))
        self.resident -= 1
        return output


def _with_lane(monkeypatch: pytest.MonkeyPatch, lane: RecordingLane) -> None:
    """upscale_tensor runs its units through `lane` (given the engine's compute function)."""
    def make(compute: Callable[[Tensor], Tensor], *args: object, **kwargs: object) -> RecordingLane:
        lane.compute = compute
        return lane

    monkeypatch.setattr(upscale_module, "make_lane", make)


# --- the issue order of an overlapping lane ------------------------------------------------------------


def test_overlapped_order_uploads_ahead_and_collects_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    lane = RecordingLane(NET)
    _with_lane(monkeypatch, lane)
    stats = TileStats()
    _run(NET, stats=stats, batch=1)
    units = len(tile_grid(52, 60, 16, 4 + 2))
    steps = {(step, unit): i for i, (step, unit) in enumerate(lane.log)}
    assert sorted(unit for step, unit in lane.log if step == "collect") == list(range(units))
    for unit in range(units):  # each unit: uploaded, launched, collected, once and in that order
        assert [s for s, u in lane.log if u == unit] == ["upload", "launch", "collect"]
    for unit in range(1, units - 1):  # tile unit+1 uploads while tile unit runs and tile unit-1 comes back
        assert steps["launch", unit] < steps["upload", unit + 1] < steps["collect", unit - 1] \
            < steps["launch", unit + 1]
    assert lane.most_resident <= 3  # staged, running, downloading: the device holds at most three units
    assert stats.tiles_pasted == units and stats.overlapped_transfers


def test_overlapped_lane_gives_the_same_bytes_as_the_direct_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    direct = _run(NET)
    _with_lane(monkeypatch, RecordingLane(NET))
    assert torch.equal(_run(NET), direct)


def test_rows_in_flight_are_held_back_from_the_streamed_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    """A band is handed out only when no unit reading it is pending, staged, running or downloading."""
    tall = torch.rand(3, 90, 40, generator=torch.Generator().manual_seed(6))

    def bands() -> list[tuple[int, Tensor]]:
        return [(start, band.clone()) for start, band in upscale_bands(
            NET, tall, EnginePlan(scale=2, device=CPU, precision="fp32", tile=16, overlap=4, batch=2))]

    direct = bands()
    _with_lane(monkeypatch, RecordingLane(NET))
    overlapped = bands()
    assert len(direct) > 2 and [s for s, _ in overlapped] == [s for s, _ in direct]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(overlapped, direct, strict=True))


def test_the_cpu_gets_the_direct_lane_whatever_is_asked() -> None:
    stats = PipelineStats()
    for overlap in (None, True, False):
        assert isinstance(make_lane(NET, CPU, "fp32", False, stats, overlap_transfers=overlap), DirectLane)


# --- batches -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ensemble", [False, True])
def test_batched_tiles_equal_one_tile_at_a_time(ensemble: bool) -> None:
    one, batched = TileStats(), TileStats()
    single = _run(per_sample, batch=1, stats=one, ensemble=ensemble)
    assert torch.equal(_run(per_sample, batch=4, stats=batched, ensemble=ensemble), single)
    assert (_run(NET, batch=4, ensemble=ensemble) - single).abs().max().item() <= KERNEL_ROUNDING
    assert one.largest_batch == 1 and batched.largest_batch > 1
    assert batched.tiles_pasted == one.tiles_pasted == len(tile_grid(52, 60, 16, 6))


def test_a_batch_holds_only_windows_of_one_shape() -> None:
    grid = tile_grid(52, 60, 16, 6)
    queue = _queue(grid, IMAGE, reach=6, max_batch=MAX_BATCH)
    popped: list[Unit] = []
    while (unit := queue.pop()) is not None:
        popped.append(unit)
    assert [t for unit in popped for t in unit.tiles] == grid  # every tile once, in grid order
    for unit in popped:
        shapes = {(t.window_rows.length, t.window_cols.length) for t in unit.tiles}
        assert len(shapes) == 1 and tuple(unit.windows.shape[-2:]) == shapes.pop()
        for index, t in enumerate(unit.tiles):
            assert torch.equal(unit.windows[index], IMAGE[:, t.window_rows.start:t.window_rows.stop,
                                                          t.window_cols.start:t.window_cols.stop])
    assert max(len(unit.tiles) for unit in popped) > 1


def test_batch_size_follows_the_memory_budget() -> None:
    gpu = torch.device("cuda")  # a device object only: nothing runs on it
    window = 100 * 100
    cost = DEFAULT_COST_PER_PIXEL
    assert batch_for_budget(window, device=CPU, budget_bytes=10**12, cost_per_pixel=cost, views=1) == 1
    assert batch_for_budget(window, device=gpu, budget_bytes=None, cost_per_pixel=cost, views=1) == 1
    assert batch_for_budget(window, device=gpu, budget_bytes=int(3.5 * cost * window), cost_per_pixel=cost,
                            views=1) == 3
    assert batch_for_budget(window, device=gpu, budget_bytes=int(3.5 * cost * window), cost_per_pixel=cost,
                            views=8) == 1  # ensemble views share the budget
    assert batch_for_budget(window, device=gpu, budget_bytes=10**15, cost_per_pixel=cost, views=1) == MAX_BATCH
    assert batch_for_budget(window, device=gpu, budget_bytes=10**5, cost_per_pixel=None, views=1) == 1


# --- out of memory -------------------------------------------------------------------------------------


class RunsOutAbove(nn.Module):
    """Out of memory when a forward would hold more than `limit` input pixels (batch x window)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.calls: list[tuple[str, int, int]] = []  # (outcome, batch, window pixels)

    def forward(self, x: Tensor) -> Tensor:
        pixels = x.shape[-2] * x.shape[-1]
        if x.shape[0] * pixels > self.limit:
            self.calls.append(("oom", x.shape[0], pixels))
            raise torch.cuda.OutOfMemoryError(OOM)
        self.calls.append(("ok", x.shape[0], pixels))
        return per_sample(x)


def test_out_of_memory_halves_the_batch_before_the_tile() -> None:
    window = max(t.window_rows.length * t.window_cols.length for t in tile_grid(52, 60, 16, 6))
    model = RunsOutAbove(limit=window)  # one window fits, two do not
    stats = TileStats()
    result = _run(model, batch=8, stats=stats)
    assert torch.equal(result, _run(per_sample, batch=1))  # the batch was halved, never the tile
    assert stats.oom_batch_halvings >= 1 and stats.oom_splits == 0
    failed_batches = [batch for outcome, batch, _ in model.calls if outcome == "oom"]
    assert failed_batches == sorted(failed_batches, reverse=True) and len(failed_batches) <= 3
    assert sum(batch for outcome, batch, _ in model.calls if outcome == "ok") == stats.tiles_pasted


def test_out_of_memory_then_halves_the_tile_and_pastes_each_pixel_once() -> None:
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(8))
    model = RunsOutAbove(limit=30 * 30)
    pasted: list[tuple[int, int, int, int]] = []
    real_pipeline = upscale_module.run_pipeline

    def recording(queue: TileQueue, lane: Lane, **kwargs: Any) -> Iterator[tuple[Unit, Tensor]]:
        for unit, output in real_pipeline(queue, lane, **kwargs):
            pasted.extend((t.rows.start, t.rows.stop, t.cols.start, t.cols.stop) for t in unit.tiles)
            yield unit, output

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(upscale_module, "run_pipeline", recording)
        stats = TileStats()
        result = _run(model, tile=0, batch=4, stats=stats, image=image)
    whole = NET(image[None])[0]
    assert (result - whole).abs().max().item() < 1e-5  # overlap 4 >= the radius 2: tiles equal the whole
    assert stats.oom_splits >= 1
    covered = torch.zeros(40, 40, dtype=torch.int32)
    for r0, r1, c0, c1 in pasted:
        covered[r0:r1, c0:c1] += 1
    assert bool((covered == 1).all())  # cores partition the image: no tile pasted twice, none lost
    assert stats.tiles_pasted == len(pasted)


def test_out_of_memory_at_the_minimum_tile_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="out of cpu memory even for a .* tile"):
        _run(RunsOutAbove(limit=4), tile=40, batch=2)


@pytest.mark.parametrize("step", ["upload", "launch"])
def test_out_of_memory_while_a_unit_is_in_flight(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """The first time the third unit fails (the device is then holding two), the one in flight is pasted
    and the failed one retried whole; nothing is pasted twice, and the bytes are the direct lane's."""
    failures: list[str] = []
    seen: list[int] = []

    def fail(kind: str, x: Tensor) -> bool:
        if kind != step:
            return False
        seen.append(x.data_ptr())
        if len(seen) == 3 and not failures:
            failures.append(kind)
            return True
        return False

    lane = RecordingLane(NET, fail)
    _with_lane(monkeypatch, lane)
    stats = TileStats()
    result = _run(NET, batch=1, stats=stats)
    assert failures == [step]
    assert stats.oom_splits == 0 and stats.oom_batch_halvings == 0  # retried as it was, not halved
    assert stats.tiles_pasted == len(tile_grid(52, 60, 16, 6))
    monkeypatch.undo()
    assert torch.equal(result, _run(NET, batch=1))


def test_other_errors_in_the_pipeline_are_not_swallowed() -> None:
    def broken(x: Tensor) -> Tensor:
        raise RuntimeError("expected input to have 3 channels")

    queue = _queue(tile_grid(20, 20, 10, 2), torch.rand(3, 20, 20), reach=2, max_batch=1)
    with pytest.raises(RuntimeError, match="expected input"):
        list(run_pipeline(queue, RecordingLane(broken), device=CPU, on_start=lambda unit: None))


# --- the CUDA lane, where there is one -----------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the stream lane is measured by bench/gpu.py")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_stream_lane_equals_the_direct_lane(precision: str) -> None:
    gpu = torch.device("cuda")
    net = TinyNet().eval().to(gpu)
    runs = [upscale_tensor(net, IMAGE, EnginePlan(scale=2, device=gpu, precision=precision, tile=16, overlap=4,  # type: ignore[arg-type]
                                                  batch=batch, overlap_transfers=overlapped))
            for overlapped, batch in ((False, 1), (True, 1), (True, 4))]
    assert torch.equal(runs[0], runs[1])
    assert (runs[0] - runs[2]).abs().max().item() < 1e-3  # batched kernels may round differently on a GPU


def test_later_tiles_are_cut_to_the_size_that_fitted_even_below_the_minimum_halving() -> None:
    """After a halving, every later tile larger than the size that fitted is cut down to it; a cut that
    cannot go further (the minimum tile) runs as it is instead of being queued again forever."""
    image = torch.rand(3, 70, 58, generator=torch.Generator().manual_seed(9))
    stats = TileStats()
    result = _run(RunsOutAbove(limit=60 * 60), tile=0, stats=stats, image=image)
    assert (result - NET(image[None])[0]).abs().max().item() < 1e-5
    assert stats.oom_splits >= 1

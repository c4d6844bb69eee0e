"""The tile pipeline: which windows run together (batches), in what order, and how they travel.

`upscale_tensor` hands its tile grid to a `TileQueue` and a `Lane` and lets `run_pipeline` drive them:

- `TileQueue` pops the next `Unit`: up to `max_batch` consecutive tiles whose windows have the same shape
  (interior tiles), stacked into one [B,C,h,w] host tensor. On out-of-memory it halves the batch first,
  then the tile (cores halved, the blend weights of the parts still sum to 1), and never hands out a
  tile that was already pasted: a unit is pasted only after its forward succeeded, and once.
- A `Lane` moves a unit to the device, runs it and brings the result back. `DirectLane` does that one
  step after the other (the CPU, and any device when overlap is off). `CudaStreamLane` stages windows in
  pinned host memory, uploads on a side stream and downloads on another while the compute stream runs, so
  with the order `run_pipeline` issues (launch i, upload i+1, collect i-1) tile i+1 uploads while tile i
  runs and tile i-1 downloads. Streams are ordered by events; a tensor allocated on one stream and used on
  another is marked with `record_stream` so the caching allocator does not hand its memory out early.

The order of pastes is the order of the queue in both lanes, so a run pastes the same tiles in the same
order whichever lane carries them (the float sums of the blend are then the same).
"""
from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from sr_cli.engine.heap import reuse_freed_heap
from sr_cli.engine.memory import DEFAULT_COST_PER_PIXEL, is_out_of_memory
from sr_cli.engine.precision import Precision, autocast_for, run_at_precision
from sr_cli.engine.tiling import Span, Tile, halve, make_tile
from sr_cli.errors import DeviceError

Model = Callable[[Tensor], Tensor]
MAX_BATCH = 16  # tiles per forward; beyond this a GPU is already saturated and the batch only costs memory


@dataclass(frozen=True)
class Unit:
    """Tiles that run in one forward pass, and their windows stacked [B,C,h,w] on the host."""

    tiles: tuple[Tile, ...]
    windows: Tensor

    @property
    def core_area(self) -> int:
        return sum(t.rows.length * t.cols.length for t in self.tiles)


@dataclass
class PipelineStats:
    """What the pipeline did (merged into the engine's TileStats)."""

    oom_splits: int = 0  # tiles halved after an out-of-memory error
    oom_batch_halvings: int = 0  # batches halved after an out-of-memory error
    fp32_redos: int = 0  # tiles recomputed in fp32 because the half-precision result had NaN/Inf
    largest_batch: int = 0  # the most tiles that ran in one forward pass


def split_tile(
    current: Tile, max_core: tuple[int, int], overlap: int, height: int, width: int, multiple: int,
    min_tile: int = 1,
) -> list[Tile]:
    """Sub-tiles of `current` whose cores are no larger than `max_core` (each axis halved as needed)."""
    def pieces(span: Span, limit: int) -> list[Span]:
        spans = [span]
        while any(s.length > limit for s in spans):
            refined = [half for s in spans for half in (halve(s, min_tile, multiple) if s.length > limit else [s])]
            if len(refined) == len(spans):
                break
            spans = refined
        return spans

    return [make_tile(r, c, overlap, height, width, multiple)
            for r in pieces(current.rows, max_core[0]) for c in pieces(current.cols, max_core[1])]


def _window_shape(tile: Tile) -> tuple[int, int]:
    return tile.window_rows.length, tile.window_cols.length


class TileQueue:
    """The tiles still to run, in paste order, grouped into units of equal window shape.

    It also answers `top_row`: the first input row any tile not yet pasted reads, counting the units
    handed out and not yet pasted (staged, running, downloading), so rows above it are final. The rows are
    kept as counts in a heap: a rescan per tile would cost tiles^2 on a huge image with small tiles.
    """

    def __init__(self, tiles: Sequence[Tile], *, cut: Callable[[Tile], Tensor], height: int, width: int,
                 reach: int, multiple: int, min_tile: int, max_batch: int, stats: PipelineStats) -> None:
        self._cut = cut  # a tile's float32 [C,h,w] window from the padded host image
        self._height, self._width = height, width
        self._stack: list[Tile] = []  # the next tile is last
        self._rows: Counter[int] = Counter()  # tiles not yet pasted per first window row
        self._heap: list[int] = []  # first rows; entries whose count fell to 0 are dropped lazily
        self._reach = reach
        self._multiple = multiple
        self._min_tile = min_tile
        self.max_batch = max(1, max_batch)
        self.max_core = (height, width)  # lowered after an out-of-memory error: later tiles start smaller
        self._stats = stats
        self._push(list(tiles), count=True)

    def __len__(self) -> int:
        return len(self._stack)

    def pop(self) -> Unit | None:
        """The next unit, or None when every tile has been handed out."""
        group: list[Tile] = []
        while self._stack and len(group) < self.max_batch:
            current = self._stack.pop()
            if current.rows.length > self.max_core[0] or current.cols.length > self.max_core[1]:
                parts = self._split(current, self.max_core, min_tile=1)  # down to the size that last fitted
                if len(parts) > 1:
                    self._replace(current, parts)
                    continue
            if group and _window_shape(current) != _window_shape(group[0]):
                self._stack.append(current)
                break
            group.append(current)
        if not group:
            return None
        windows = [self._cut(t) for t in group]
        # one tile: the window as the sequential engine always took it; several: one stacked copy
        stacked = windows[0].unsqueeze(0) if len(windows) == 1 else torch.stack(windows)
        self._stats.largest_batch = max(self._stats.largest_batch, len(group))
        return Unit(tuple(group), stacked)

    def give_back(self, unit: Unit) -> None:
        """Put a unit that was handed out but not run back at the front (its tiles come next again)."""
        self._push(list(unit.tiles), count=False)

    def pasted(self, unit: Unit) -> None:
        """The unit's tiles are in the output: they no longer hold rows back."""
        for tile in unit.tiles:
            self._rows[tile.window_rows.start] -= 1

    def top_row(self, default: int) -> int:
        """The first input row any tile not yet pasted reads; `default` when every tile is pasted."""
        while self._heap and self._rows[self._heap[0]] == 0:
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else default

    def recover(self, unit: Unit, device: torch.device) -> None:
        """After `unit` ran out of memory: halve the batch, or (one tile) halve the tile; its tiles run again.

        Raises DeviceError when the tile is already at the minimum size.
        """
        if len(unit.tiles) > 1:
            self.max_batch = max(1, len(unit.tiles) // 2)
            self._stats.oom_batch_halvings += 1
            self.give_back(unit)
            return
        current = unit.tiles[0]
        halved = (max(current.rows.length // 2, self._min_tile), max(current.cols.length // 2, self._min_tile))
        parts = self._split(current, halved, min_tile=self._min_tile)
        if len(parts) == 1:
            raise DeviceError(
                f"out of {device} memory even for a {current.window_rows.length}x"
                f"{current.window_cols.length} tile (minimum core {self._min_tile} px); free memory, lower "
                "--overlap, drop --ensemble, or use --device cpu"
            )
        self.max_core = (min(self.max_core[0], halved[0]), min(self.max_core[1], halved[1]))
        self._stats.oom_splits += 1
        self._replace(current, parts)

    def _replace(self, current: Tile, parts: list[Tile]) -> None:
        """`parts` (a split of `current`, starting no higher than it) run next instead of it."""
        self._rows[current.window_rows.start] -= 1
        self._push(parts, count=True)

    def _push(self, tiles: list[Tile], *, count: bool) -> None:
        for tile in reversed(tiles):
            self._stack.append(tile)
            if count:
                start = tile.window_rows.start
                if self._rows[start] == 0:
                    heapq.heappush(self._heap, start)
                self._rows[start] += 1

    def _split(self, current: Tile, max_core: tuple[int, int], *, min_tile: int) -> list[Tile]:
        return split_tile(current, max_core, self._reach, self._height, self._width, self._multiple, min_tile)


# --- lanes -------------------------------------------------------------------------------------------


class Lane(Protocol):
    """Carries a unit's windows to the device, runs the forward, brings the float32 output back."""

    @property
    def overlaps(self) -> bool:
        """True when `launch` returns before the forward finished (a result is ready only at `collect`)."""
        ...

    def upload(self, windows: Tensor) -> object:
        """Start moving [B,C,h,w] host windows to the device; the handle goes to `launch`."""
        ...

    def launch(self, staged: object) -> object:
        """Start the forward pass on uploaded windows; the handle goes to `collect`."""
        ...

    def collect(self, launched: object) -> Tensor:
        """The float32 [B,C',H,W] host output of a launched forward (waits for it)."""
        ...


class _LaneBase:
    """What every lane is given: the forward, where and at which precision it runs, the layout, the counters."""

    def __init__(self, compute: Model, device: torch.device, precision: Precision, channels_last: bool,
                 stats: PipelineStats) -> None:
        self._compute = compute
        self._device = device
        self._precision = precision
        self._channels_last = channels_last
        self._stats = stats


class DirectLane(_LaneBase):
    """One step after the other on `device`: what the engine always did (the CPU path, overlap off)."""

    overlaps = False

    def upload(self, windows: Tensor) -> object:
        x = windows.to(self._device)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def launch(self, staged: object) -> object:
        assert isinstance(staged, Tensor)
        # On the CPU the feature maps live in host memory: freed ones are kept for the next layer
        # (engine/heap.py), for this forward only -- held across tiles, the heap would also keep every freed
        # band and tile output of a streamed run resident (+0.2 GB at 16384 px wide, bench/huge_image.py).
        with reuse_freed_heap() if self._device.type == "cpu" else nullcontext():
            result, redone = run_at_precision(self._compute, staged, self._device, self._precision)
        self._stats.fp32_redos += int(redone) * staged.shape[0]
        return result.to("cpu", torch.float32).contiguous()

    def collect(self, launched: object) -> Tensor:
        assert isinstance(launched, Tensor)
        return launched


@dataclass
class _Staged:
    device_windows: Tensor
    uploaded: torch.cuda.Event
    host_windows: Tensor  # the pinned source, kept alive until the copy has run


@dataclass
class _Launched:
    staged: _Staged
    host_output: Tensor  # pinned; valid once `downloaded` has completed
    host_finite: Tensor | None  # pinned [B] bool: which tiles came out finite (None in fp32)
    downloaded: torch.cuda.Event


class CudaStreamLane(_LaneBase):
    """Pinned host staging, uploads and downloads on side streams overlapped with the compute stream."""

    overlaps = True

    def __init__(self, compute: Model, device: torch.device, precision: Precision, channels_last: bool,
                 stats: PipelineStats) -> None:
        super().__init__(compute, device, precision, channels_last, stats)
        self._compute_stream = torch.cuda.current_stream(device)
        self._upload_stream = torch.cuda.Stream(device)
        self._download_stream = torch.cuda.Stream(device)  # its own, so H2D and D2H use both copy engines

    def upload(self, windows: Tensor) -> object:
        host = torch.empty(windows.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(windows)  # the window is a strided view of the image: one host copy, as .to() makes
        with torch.cuda.stream(self._upload_stream):
            x = host.to(self._device, non_blocking=True)
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            uploaded = torch.cuda.Event()
            uploaded.record(self._upload_stream)
        return _Staged(x, uploaded, host)

    def launch(self, staged: object) -> object:
        assert isinstance(staged, _Staged)
        self._compute_stream.wait_event(staged.uploaded)
        staged.device_windows.record_stream(self._compute_stream)  # allocated on the upload stream
        with torch.cuda.stream(self._compute_stream), autocast_for(self._device, self._precision):
            output = self._compute(staged.device_windows).float()
        finite = None if self._precision == "fp32" else torch.isfinite(output).flatten(1).all(dim=1)
        computed = torch.cuda.Event()
        computed.record(self._compute_stream)
        with torch.cuda.stream(self._download_stream):
            self._download_stream.wait_event(computed)
            output.record_stream(self._download_stream)  # allocated on the compute stream, read here
            host = torch.empty(output.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(output, non_blocking=True)
            host_finite = None
            if finite is not None:
                finite.record_stream(self._download_stream)
                host_finite = torch.empty(finite.shape, dtype=torch.bool, pin_memory=True)
                host_finite.copy_(finite, non_blocking=True)
            downloaded = torch.cuda.Event()
            downloaded.record(self._download_stream)
        return _Launched(staged, host, host_finite, downloaded)

    def collect(self, launched: object) -> Tensor:
        assert isinstance(launched, _Launched)
        launched.downloaded.synchronize()
        if launched.host_finite is None or bool(launched.host_finite.all()):
            return launched.host_output
        # a half-precision overflow: those tiles again in fp32, synchronously (rare; never accepted black)
        bad = (~launched.host_finite).nonzero().flatten().tolist()
        redo = launched.staged.device_windows[bad]
        launched.host_output[bad] = self._compute(redo).float().to("cpu")
        self._stats.fp32_redos += len(bad)
        return launched.host_output


def make_lane(compute: Model, device: torch.device, precision: Precision, channels_last: bool,
              stats: PipelineStats, *, overlap_transfers: bool | None = None) -> Lane:
    """CudaStreamLane on CUDA (unless overlap_transfers=False), DirectLane elsewhere."""
    overlapped = device.type == "cuda" if overlap_transfers is None else overlap_transfers and device.type == "cuda"
    lane_class = CudaStreamLane if overlapped else DirectLane
    return lane_class(compute, device, precision, channels_last, stats)


def batch_for_budget(window_pixels: int, *, device: torch.device, budget_bytes: int | None,
                     cost_per_pixel: float | None, views: int) -> int:
    """Tiles per forward: as many windows as fit the memory budget, 1 on the CPU (no gain there, and the
    CPU path stays what it was), at most MAX_BATCH; 1 when the budget is unknown."""
    if device.type == "cpu" or budget_bytes is None or window_pixels <= 0:
        return 1
    cost = (cost_per_pixel if cost_per_pixel and cost_per_pixel > 0 else DEFAULT_COST_PER_PIXEL) * views
    return int(max(1, min(MAX_BATCH, budget_bytes // max(cost * window_pixels, 1.0))))


# --- the driver --------------------------------------------------------------------------------------


def run_pipeline(
    queue: TileQueue, lane: Lane, *, device: torch.device, on_start: Callable[[Unit], None],
) -> Generator[tuple[Unit, Tensor], None, None]:
    """Run every unit of `queue` through `lane`; yields (unit, float32 host output) once per unit, in queue
    order, with the unit already counted as pasted in `queue.top_row` (the caller pastes it before asking
    for the next).

    Issue order per step on an overlapping lane: launch i, upload i+1, collect i-1 (yield), so at most three
    units are on the device at once; a direct lane collects each unit right after its launch. `on_start`
    is called just before a unit's forward on a direct lane (progress then counts its layers as they run)
    and just before it is yielded on an overlapping one. Out of memory while another unit is in flight:
    that unit is yielded first and the failed one retried as it was (the memory in flight is free then); out
    of memory with nothing in flight: the unit goes back smaller (`TileQueue.recover`). Nothing is yielded
    twice or lost. The one case that changes the order: an fp32 redo (`collect`) out of memory, whose tile is
    redone in parts after the unit launched behind it.
    """
    in_flight: tuple[Unit, object] | None = None
    staged: tuple[Unit, object] | None = None

    def drain() -> Iterator[tuple[Unit, Tensor]]:
        nonlocal in_flight
        if in_flight is None:
            return
        unit, launched = in_flight
        in_flight = None
        try:
            output = lane.collect(launched)
        except Exception as error:  # noqa: BLE001 -- only out-of-memory is handled, the rest re-raised
            if not is_out_of_memory(error):
                raise
            del error
            release_cached_memory(device)
            queue.recover(unit, device)
            return
        if lane.overlaps:
            on_start(unit)
        queue.pasted(unit)
        yield unit, output

    def out_of_memory(unit: Unit) -> Iterator[tuple[Unit, Tensor]]:
        """Retry `unit` once what is in flight is yielded; halve it when nothing was."""
        if in_flight is not None:
            queue.give_back(unit)
            yield from drain()
        else:
            queue.recover(unit, device)
        release_cached_memory(device)

    while True:
        if staged is None:
            unit = queue.pop()
            if unit is None:
                break
            try:
                staged = (unit, lane.upload(unit.windows))
            except Exception as error:  # noqa: BLE001 -- as above
                if not is_out_of_memory(error):
                    raise
                del error
                yield from out_of_memory(unit)
                continue
        unit, handle = staged
        staged = None
        if not lane.overlaps:
            on_start(unit)
        try:
            launched = lane.launch(handle)
        except Exception as error:  # noqa: BLE001 -- as above
            if not is_out_of_memory(error):
                raise
            del error, handle
            yield from out_of_memory(unit)
            continue
        del handle
        if lane.overlaps:  # prefetch: the next upload runs while this unit computes
            following = queue.pop()
            if following is not None:
                try:
                    staged = (following, lane.upload(following.windows))
                except Exception as error:  # noqa: BLE001 -- as above
                    if not is_out_of_memory(error):
                        raise
                    del error
                    queue.give_back(following)  # uploaded at the top of the loop, once more memory is free
        yield from drain()
        in_flight = (unit, launched)
        if not lane.overlaps:
            yield from drain()
    yield from drain()


def release_cached_memory(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory error so the smaller retry can use them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


__all__ = ["Unit", "TileQueue", "PipelineStats", "Lane", "DirectLane", "CudaStreamLane", "make_lane",
           "batch_for_budget", "run_pipeline", "split_tile", "release_cached_memory", "MAX_BATCH"]

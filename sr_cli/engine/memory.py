"""Memory planning: the auto tile size, the cost of one input pixel, and recognising out-of-memory.

The auto tile minimises the modelled work of the whole grid among the tiles whose windows fit a budget:
  work(tile) = (sum of window areas) + TILE_OVERHEAD_PIXELS * tiles     (input pixels of forward pass),
  fits(tile) = forward_pixels(largest window area) * cost_per_pixel <= budget,
where a window is a core plus `reach` context on each side that is not the image border (the windows of
the real grid, so a 2-tile axis pays one reach per window, not two), cost_per_pixel is the peak bytes one
input pixel of a window costs during the forward pass, and forward_pixels is the window's pixels times the
ensemble views batched into one forward with it (all 8, or on the CPU as many as fit `view_batch_pixels`:
engine/ensemble.py runs the others in further forwards). The sum of window areas is the sum of row-window
lengths times the sum of column-window lengths, and a grid depends only on its tile count per axis
(split_axis balances the cores), so every distinct grid is one candidate count per axis. The budget is a
fraction of the free device memory (CUDA: `mem_get_info`; CPU: MemAvailable from /proc/meminfo) so that the
rest of the machine (and fragmentation, cuDNN workspaces) keeps room. If the estimate is wrong, the
out-of-memory path in `upscale.py` halves the tile and retries.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch
from torch import Tensor, nn

from sr_cli.engine.tiling import round_down, round_up, split_axis, window_of

MIN_TILE = 16  # halving stops here: a tile this small is all context and no core
DEVICE_BUDGET_FRACTION = 0.7  # of the free GPU memory
CPU_BUDGET_FRACTION = 0.25  # of MemAvailable: the CPU is shared with everything else the user runs
FALLBACK_CPU_BYTES = 2 * 1024**3  # when /proc/meminfo is unreadable (macOS, Windows)
DEFAULT_COST_PER_PIXEL = 16 * 1024.0  # bytes; an RRDB x4 needs about this much, the most of our families
# What one more tile costs besides its pixels, as input pixels of forward work: a pass launches every conv
# once whatever the window (RRDB: 351 convs, ~10-20 us each to dispatch), and the window is cut, copied
# and blended. About a 32x32 window's work for RRDB on a CPU: it decides only between near-equal grids.
TILE_OVERHEAD_PIXELS = 1024.0
SMALLER_CANDIDATES = 8  # fitting grids tried after the first (largest) one that fits
# What a streamed run (output written in row bands) may hold in host memory for its float band and, on the
# CPU, the tile's activations too: a 16384-wide x4 RGB band then keeps SRVGG tiles near 400 px (work ~1.2x
# the whole image's), so the whole process stays under 1.5 GB (768 MiB gave 1.63 GB; docs/benchmarks.md).
STREAMED_HOST_BUDGET_BYTES = 512 * 1024**2
# ...unless tiles that small would cost more than this many times the image's own work: the budget then grows
# (`streamed_tile_size`), up to the budget a run held in memory would get.
STREAMED_MAX_WORK = 1.5


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and the RuntimeErrors other backends raise ("out of memory")."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_memory_bytes(device: torch.device) -> int:
    """Bytes the next tile may use on `device` before the budget fraction is applied."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        current = getattr(torch.mps, "current_allocated_memory", None)
        if recommended is not None and current is not None:
            return max(int(recommended()) - int(current()), 0)
    return available_ram_bytes()


def available_ram_bytes() -> int:
    """MemAvailable (Linux), else a conservative fixed figure."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return FALLBACK_CPU_BYTES


def memory_budget(device: torch.device) -> int:
    fraction = CPU_BUDGET_FRACTION if device.type == "cpu" else DEVICE_BUDGET_FRACTION
    return int(free_memory_bytes(device) * fraction)


def auto_tile_size(
    height: int, width: int, *, cost_per_pixel: float | None, overlap: int, views: int,
    size_multiple: int, budget_bytes: int, view_batch_pixels: int | None = None,
) -> int:
    """The tile side (core, input pixels) of least modelled work whose windows fit the budget (module doc);
    0 (whole image) when the whole image fits. `overlap` is how far windows reach past their cores."""
    cost = _cost(cost_per_pixel)

    def fits(rows: AxisPlan, cols: AxisPlan) -> bool:
        return forward_pixels(rows.largest * cols.largest, views, view_batch_pixels) * cost <= budget_bytes

    return least_work_tile(height, width, overlap=overlap, size_multiple=size_multiple, fits=fits)


def least_work_tile(
    height: int, width: int, *, overlap: int, size_multiple: int, fits: Callable[[AxisPlan, AxisPlan], bool]
) -> int:
    """The tile of least modelled work among the grids that `fits` accepts (given each axis's plan); 0 when
    the whole image (one window per axis) fits, the smallest tile when nothing does (the out-of-memory path
    halves from there)."""
    if fits(AxisPlan(1, height, height), AxisPlan(1, width, width)):
        return 0
    floor = round_down(max(MIN_TILE, size_multiple), size_multiple)
    best: tuple[float, int] | None = None  # (work, -tile): least work, then the larger tile
    left = SMALLER_CANDIDATES
    for tile in candidate_tiles(height, width, size_multiple, floor):
        rows, cols = axis_plan(height, tile, overlap, size_multiple), axis_plan(width, tile, overlap, size_multiple)
        if not fits(rows, cols):
            continue
        key = (grid_work(rows, cols), -tile)
        best = key if best is None or key < best else best
        left -= 1
        if left < 0:  # more, smaller tiles only add context bands and tiles (tests check against all tiles)
            break
    return floor if best is None else -best[1]


def _cost(cost_per_pixel: float | None) -> float:
    return cost_per_pixel if cost_per_pixel and cost_per_pixel > 0 else DEFAULT_COST_PER_PIXEL


def forward_pixels(window_pixels: int, views: int, view_batch_pixels: int | None) -> int:
    """Input pixels of the largest forward a window's views take: all `views` batched, or with a limit as
    many as engine/ensemble.py puts in one forward (at most view_batch_pixels // window, at least one)."""
    if view_batch_pixels is None or views == 1:
        return window_pixels * views
    return window_pixels * min(views, max(1, view_batch_pixels // max(window_pixels, 1)))


class AxisPlan:
    """One axis of a grid: how many cores, the sum of its window lengths and the longest window."""

    __slots__ = ("count", "total", "largest")

    def __init__(self, count: int, total: int, largest: int) -> None:
        self.count, self.total, self.largest = count, total, largest


def axis_plan(length: int, tile: int, reach: int, multiple: int) -> AxisPlan:
    """A grid axis depends only on its core count (split_axis balances the cores): cached by count."""
    return _axis_plan(length, -(-length // max(round_up(tile, multiple), multiple)), reach, multiple)


@lru_cache(maxsize=4096)
def _axis_plan(length: int, count: int, reach: int, multiple: int) -> AxisPlan:
    tile = round_up(-(-length // count), multiple)
    windows = [window_of(core, reach, length, multiple).length for core in split_axis(length, tile, multiple)]
    return AxisPlan(len(windows), sum(windows), max(windows))


def grid_work(rows: AxisPlan, cols: AxisPlan) -> float:
    """Modelled work of a grid in input pixels: its window areas plus a fixed cost per tile."""
    return float(rows.total) * cols.total + TILE_OVERHEAD_PIXELS * rows.count * cols.count


def candidate_tiles(height: int, width: int, multiple: int, floor: int) -> list[int]:
    """One tile per distinct grid, largest first: for each tile count n of either axis, the smallest
    aligned tile that cuts the axis into n cores (split_axis's count is ceil(length / tile))."""
    found: set[int] = set()
    for length in (height, width):
        for count in range(1, length // max(floor, 1) + 1):
            tile = max(round_up(-(-length // count), multiple), floor)
            if -(-length // tile) == count:
                found.add(tile)
    return sorted(found, reverse=True) or [floor]


def estimate_cost_per_pixel(
    model: nn.Module, *, in_channels: int, size_multiple: int, device: torch.device, probe_side: int | None = None
) -> float:
    """Peak bytes per input pixel of one forward pass of `model` on `device` (already moved there).

    CUDA: measured (peak allocated during a probe forward). Elsewhere: from forward hooks, as 4x the
    largest single activation plus the input and output -- under inference_mode a layer's input is freed
    once the next layer ran, so about 2-3 activations (plus a residual trunk or a dense block's
    concatenation) are alive at the peak; 4x covers the dense blocks of RRDB.
    """
    if probe_side is None:  # activations scale linearly with pixels: a small probe suffices off the GPU
        probe_side = 64 if device.type == "cuda" else 16
    side = max(probe_side - probe_side % size_multiple, size_multiple)
    probe = torch.rand(1, in_channels, side, side, device=device)
    pixels = float(side * side)
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            output = model(probe)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
            return max(float(peak), float(output.numel() * output.element_size())) / pixels
        largest = 0

        def record(_module: nn.Module, _inputs: tuple[Tensor, ...], output: object) -> None:
            nonlocal largest
            if isinstance(output, Tensor):
                largest = max(largest, output.numel() * output.element_size())

        handles = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
        try:
            output = model(probe)
        finally:
            for handle in handles:
                handle.remove()
    in_bytes = probe.numel() * probe.element_size()
    out_bytes = output.numel() * output.element_size()
    return (4.0 * largest + in_bytes + out_bytes) / pixels



def streamed_tile_size(
    height: int, width: int, *, cost_per_pixel: float | None, overlap: int, views: int, size_multiple: int,
    device_budget_bytes: int, host_budget_bytes: int, band_bytes_per_row: float, shares_host: bool,
    view_batch_pixels: int | None = None, host_ceiling_bytes: int | None = None,
) -> tuple[int, int]:
    """The auto tile of a streamed run and the host budget it was planned for: `auto_tile_size`'s least-work
    choice among the grids whose largest window fits the device budget and whose float band (about one window
    high: band_bytes_per_row per input row of the window) fits the host budget -- together with the window's
    activations when the device is the host (`shares_host`). Tile 0 when the whole image fits.

    The host budget starts at `host_budget_bytes` (small, so that a huge image streams in little memory) and
    doubles, up to `host_ceiling_bytes`, while the best grid under it costs more than STREAMED_MAX_WORK times
    the image's own work: a model that needs much context and memory per pixel (RRDB: 80 px, ~16 KiB) would
    otherwise get tiles of a few pixels, all context (measured: 105x the work at 2048x2048 under 512 MiB)."""
    cost = _cost(cost_per_pixel)
    ceiling = max(host_ceiling_bytes if host_ceiling_bytes is not None else host_budget_bytes, host_budget_bytes)
    budget = host_budget_bytes
    while True:
        def fits(rows: AxisPlan, cols: AxisPlan, host: int = budget) -> bool:
            activations = forward_pixels(rows.largest * cols.largest, views, view_batch_pixels) * cost
            band = band_bytes_per_row * rows.largest
            if shares_host:
                return activations + band <= min(device_budget_bytes, host)
            return activations <= device_budget_bytes and band <= host

        tile = least_work_tile(height, width, overlap=overlap, size_multiple=size_multiple, fits=fits)
        if tile == 0 or budget >= ceiling:
            return tile, budget
        rows, cols = axis_plan(height, tile, overlap, size_multiple), axis_plan(width, tile, overlap, size_multiple)
        if grid_work(rows, cols) <= STREAMED_MAX_WORK * height * width:
            return tile, budget
        budget = min(2 * budget, ceiling)

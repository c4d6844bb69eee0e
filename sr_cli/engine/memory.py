"""Memory planning: the auto tile size, the cost of one input pixel, and recognising out-of-memory.

The auto tile is the largest square window whose activations fit a budget:
  window_side = sqrt(budget / (cost_per_pixel * views)),  tile = window_side - 2 * overlap,
where cost_per_pixel is the peak bytes one input pixel of a window costs during the forward pass, and
views is the number of ensemble views batched together (1 without ensemble). The budget is a fraction
of the free device memory (CUDA: `mem_get_info`; CPU: MemAvailable from /proc/meminfo) so that the rest
of the machine (and fragmentation, cuDNN workspaces) keeps room. If the estimate is wrong, the
out-of-memory path in `upscale.py` halves the tile and retries.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sr_cli.engine.tiling import round_down

MIN_TILE = 16  # halving stops here: a tile this small is all context and no core
DEVICE_BUDGET_FRACTION = 0.7  # of the free GPU memory
CPU_BUDGET_FRACTION = 0.25  # of MemAvailable: the CPU is shared with everything else the user runs
FALLBACK_CPU_BYTES = 2 * 1024**3  # when /proc/meminfo is unreadable (macOS, Windows)
DEFAULT_COST_PER_PIXEL = 16 * 1024.0  # bytes; an RRDB x4 needs about this much, the most of our families


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
    size_multiple: int, budget_bytes: int,
) -> int:
    """The tile side (core, input pixels) for the budget; 0 (whole image) when the whole image fits."""
    cost = (cost_per_pixel if cost_per_pixel and cost_per_pixel > 0 else DEFAULT_COST_PER_PIXEL) * views
    if (height + 0.0) * width * cost <= budget_bytes:
        return 0
    window_side = math.isqrt(max(int(budget_bytes / cost), 1))
    tile = round_down(window_side - 2 * overlap, size_multiple)
    return max(tile, round_down(max(MIN_TILE, size_multiple), size_multiple))


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


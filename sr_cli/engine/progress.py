"""Progress in small units with the total fixed before the first forward, and the cost of a forward.

A unit is one convolution layer applied to one image view: one forward of a model with C conv calls
over a batch of V ensemble views is C x V units, so a job of T tiles is T x V x C units, known before
anything runs. Forward hooks on the model's conv modules count the units as the layers run; they are
added for one `upscale_tensor` call and removed after it (also when it raises), and only count: the
output is bit-identical with and without them. A model that is not an nn.Module (or has no convs)
counts one unit per tile view.

`profile_forward` runs one tiny probe through the model and returns what the engine needs to plan:
the conv calls of one forward (the unit count above) and the multiply-accumulates per input pixel
(from each conv's output shape and kernel), from which a caller estimates how long a job takes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Progress = Callable[[int, int], None]
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)
PROBE_SIDE = 4  # px: conv calls do not depend on the size, MACs scale with the pixels; 4 keeps RRDB's probe at 0.3 GMAC


@dataclass(frozen=True)
class ForwardProfile:
    """One forward pass of a model on one image: its conv calls and its cost per input pixel."""

    conv_calls: int  # 0: not an nn.Module, or no convolutions (progress then counts tiles)
    macs_per_pixel: float  # multiply-accumulates per input pixel (convs only: they are nearly all of it)


def conv_modules(model: object) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, CONV_TYPES)] if isinstance(model, nn.Module) else []


def conv_macs(module: nn.Module, output: Tensor) -> float:
    """Multiply-accumulates of one conv call, from its output shape and its kernel."""
    weight = module.weight  # [out, in/groups, *kernel] (transposed: [in, out/groups, *kernel])
    assert isinstance(weight, Tensor)
    if isinstance(module, nn.ConvTranspose2d):  # an output value gathers (kernel / stride) taps of each input
        stride = module.stride[0] * module.stride[1]
        per_output = weight.shape[0] / module.groups * weight[0, 0].numel() / stride
    else:
        per_output = weight[0].numel()
    return float(output.numel()) * float(per_output)


@contextmanager
def counting_convs(model: object, on_conv: Callable[[nn.Module, Tensor], None]) -> Iterator[int]:
    """Hooks on every conv of `model` calling on_conv(module, output) after each call; yields how many
    convs there are. The hooks are removed when the block ends, however it ends. A hook costs a few
    microseconds a call (measured: 2.5 us on a 2-core CPU, against milliseconds for a conv of a real tile)."""
    modules = conv_modules(model)

    def hook(module: nn.Module, _inputs: tuple[Tensor, ...], output: object) -> None:
        if isinstance(output, Tensor):
            on_conv(module, output)

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield len(modules)
    finally:
        for handle in handles:
            handle.remove()


def profile_forward(
    model: Callable[[Tensor], Tensor], *, in_channels: int, size_multiple: int, device: torch.device,
    probe_side: int = PROBE_SIDE,
) -> ForwardProfile:
    """Conv calls and MACs per input pixel of one forward of `model` (on `device`), from a tiny probe."""
    if not conv_modules(model):
        return ForwardProfile(0, 0.0)
    side = max(-(-probe_side // size_multiple) * size_multiple, size_multiple)
    calls = 0
    macs = 0.0

    def count(module: nn.Module, output: Tensor) -> None:
        nonlocal calls, macs
        calls += 1
        macs += conv_macs(module, output)

    with torch.inference_mode(), counting_convs(model, count):
        model(torch.rand(1, in_channels, side, side, device=device))
    return ForwardProfile(calls, macs / (side * side))


class WorkMeter:
    """Reports (done, total) for one `upscale_tensor` call: total = tiles x views x conv calls, fixed.

    Each tile is worth its share of the image's area (cores partition the padded image, and a tile split
    after an out-of-memory error hands its share to its parts), counted up as its convs run; a tile that
    failed and is redone in parts never moves the count backwards. The last report is (total, total).
    """

    def __init__(self, progress: Progress | None, *, tiles: int, views: int, conv_calls: int, area: int) -> None:
        self._progress = progress
        self._per_tile = views * max(conv_calls, 1)  # raw units one tile's forward produces
        self._counts_convs = conv_calls > 0
        self.total = tiles * self._per_tile
        self._area = area
        self._finished_area = 0
        self._tile_area = 0
        self._raw = 0
        self._reported = -1

    def begin(self) -> None:
        """(0, total): the total is on the bar before the first forward."""
        self._report()

    def start_tile(self, core_area: int) -> None:
        self._tile_area = core_area
        self._raw = 0

    def on_conv(self, _module: nn.Module, output: Tensor) -> None:
        self._raw += int(output.shape[0])  # the views batched into this call
        self._report()

    def finish_tile(self) -> None:
        self._finished_area += self._tile_area
        self._tile_area = 0
        self._raw = 0
        self._report()

    def _report(self) -> None:
        if self._progress is None:
            return
        # exact integers: done = total x (finished area + this tile's area x its share done) / area
        within = min(self._raw, self._per_tile) if self._counts_convs else 0
        scaled = self._finished_area * self._per_tile + self._tile_area * within
        done = min(self.total * scaled // (self._area * self._per_tile), self.total)
        if done > self._reported:
            self._reported = done
            self._progress(done, self.total)


__all__ = ["ForwardProfile", "profile_forward", "counting_convs", "conv_macs",
           "WorkMeter", "CONV_TYPES"]

"""Engine progress units (conv layer x view x tile, total fixed up front) and the cost of a forward."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from sr_cli.archs.runtime import SRNet, build_module
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.engine import EnginePlan, TileStats, upscale_tensor
from sr_cli.engine.progress import (
    CONV_TYPES,
    ForwardProfile,
    WorkMeter,
    conv_macs,
    profile_forward,
)

CPU = torch.device("cpu")


class ThreeConvsX2(nn.Module):
    """conv 3->8 at 1x, pixel shuffle x2, conv 2->4 and 4->3 at 2x: known conv calls and MACs per pixel."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.body = nn.Conv2d(2, 4, 3, padding=1)
        self.tail = nn.Conv2d(4, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.tail(self.body(self.shuffle(self.head(x))))


CONVS = 3
# per input pixel: head 8 outputs x 3*9; body and tail run on 4 pixels per input pixel
MACS_PER_PIXEL = 8 * 3 * 9 + 4 * (4 * 2 * 9) + 4 * (3 * 4 * 1)
NET = ThreeConvsX2().eval()


PLAN = EnginePlan(scale=2, device=CPU, precision="fp32", overlap=2)  # the whole image


def run(model: Callable[[Tensor], Tensor], image: Tensor, plan: EnginePlan = PLAN, *,
        progress: Callable[[int, int], None] | None = None, profile: ForwardProfile | None = None,
        stats: TileStats | None = None) -> Tensor:
    return upscale_tensor(model, image, plan, progress=progress, profile=profile, stats=stats)


def recorded(model: nn.Module, image: Tensor, plan: EnginePlan = PLAN, *,
             stats: TileStats | None = None) -> tuple[Tensor, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    result = run(model, image, plan, progress=lambda done, total: calls.append((done, total)), stats=stats)
    return result, calls


def hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_profile_counts_conv_calls_and_macs_by_shape() -> None:
    profile = profile_forward(NET, in_channels=3, size_multiple=1, device=CPU)
    assert profile.conv_calls == CONVS
    assert profile.macs_per_pixel == pytest.approx(MACS_PER_PIXEL)
    assert hooks_left(NET) == 0


def test_profile_of_a_family_matches_its_layer_count() -> None:
    params = SRVGGParams(num_feat=8, num_conv=3, upscale=2)
    net = SRNet(build_module("srvgg", params)).eval()
    convs = [m for m in net.modules() if isinstance(m, CONV_TYPES)]
    profile = profile_forward(net, in_channels=3, size_multiple=1, device=CPU)
    assert profile.conv_calls == len(convs) == params.num_conv + 2  # first conv, the body, the last conv
    # all SRVGG convs run at the input resolution, so MACs per pixel is the sum of their weights' sizes
    assert profile.macs_per_pixel == pytest.approx(sum(m.weight.numel() for m in convs if isinstance(m, nn.Conv2d)))


@pytest.mark.parametrize(("shape", "tile", "ensemble"), [
    ((3, 24, 24), 0, False), ((3, 30, 20), 10, False), ((3, 20, 12), 0, True), ((3, 16, 16), 8, True),
])
def test_total_is_tiles_x_views_x_convs_from_the_first_report(shape: tuple[int, int, int], tile: int,
                                                              ensemble: bool) -> None:
    stats = TileStats()
    _result, calls = recorded(NET, torch.rand(*shape), replace(PLAN, tile=tile, ensemble=ensemble), stats=stats)
    views = 8 if ensemble else 1
    total = stats.tiles_pasted * views * CONVS
    assert calls[0] == (0, total)  # before the first forward
    assert {t for _, t in calls} == {total}
    done = [d for d, _ in calls]
    assert done == sorted(set(done)) and done[-1] == total  # strictly increasing, ends at the total
    # small units: every conv call of every view batch moves it
    assert len(calls) >= stats.tiles_pasted * CONVS


def test_whole_image_progress_moves_inside_the_forward() -> None:
    """One tile (a small image, or the whole image) no longer sits at 0/1 until done."""
    seen_inside: list[int] = []

    class Watch(ThreeConvsX2):
        def forward(self, x: Tensor) -> Tensor:
            out = super().forward(x)
            seen_inside.append(len(calls))
            return out

    model = Watch().eval()
    calls: list[tuple[int, int]] = []
    run(model, torch.rand(3, 12, 12), progress=lambda d, t: calls.append((d, t)))
    # (the first forward is the profile's probe) (0, total), then one report per conv, before the forward returned
    assert seen_inside[-1] == 1 + CONVS
    assert calls[-1] == (CONVS, CONVS)


def test_output_is_bit_identical_with_and_without_progress() -> None:
    image = torch.rand(3, 26, 22, generator=torch.Generator().manual_seed(1))
    for plan in (PLAN, replace(PLAN, tile=10), replace(PLAN, ensemble=True)):
        plain = run(NET, image, plan)
        counted, _ = recorded(NET, image, plan)
        assert torch.equal(plain, counted)
    assert hooks_left(NET) == 0


def test_no_hooks_left_after_an_exception() -> None:
    class FailsAfterTheHead(ThreeConvsX2):
        def forward(self, x: Tensor) -> Tensor:
            self.head(x)
            raise ValueError("broken model")

    model = FailsAfterTheHead().eval()
    calls: list[tuple[int, int]] = []
    with pytest.raises(ValueError, match="broken model"):  # in the profile's probe forward
        run(model, torch.rand(3, 8, 8), progress=lambda d, t: calls.append((d, t)))
    assert hooks_left(model) == 0 and calls == []
    with pytest.raises(ValueError, match="broken model"):  # in the job itself
        run(model, torch.rand(3, 8, 8), progress=lambda d, t: calls.append((d, t)),
            profile=ForwardProfile(CONVS, MACS_PER_PIXEL))
    assert hooks_left(model) == 0
    assert calls == [(0, CONVS), (1, CONVS)]


class RunsOutAbove(nn.Module):
    """NET for windows up to `limit` pixels, an out-of-memory error above (after running its first conv)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.net = ThreeConvsX2()
        self.limit = limit

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] * x.shape[-1] > self.limit:
            self.net.head(x)
            raise RuntimeError("CPU out of memory (simulated)")
        return self.net(x)


def test_total_stays_fixed_when_out_of_memory_splits_tiles() -> None:
    stats = TileStats()
    _result, calls = recorded(RunsOutAbove(limit=20 * 20), torch.rand(3, 40, 36), replace(PLAN, overlap=1), stats=stats)
    assert stats.oom_splits >= 1 and stats.tiles_pasted > 1
    assert {t for _, t in calls} == {CONVS}  # planned as one whole-image tile; the split parts share it
    done = [d for d, _ in calls]
    assert done == sorted(set(done)) and done[-1] == CONVS


def test_a_model_without_convs_counts_tile_views() -> None:
    def doubler(x: Tensor) -> Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    calls: list[tuple[int, int]] = []
    upscale_tensor(doubler, torch.rand(3, 30, 20), replace(PLAN, tile=10, overlap=0),
                   progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 6) for i in range(0, 7)]


CONV, ONE_VIEW = nn.Conv2d(1, 1, 1), torch.zeros(1, 1, 1, 1)


def test_meter_never_goes_back_and_ends_at_the_total() -> None:
    calls: list[tuple[int, int]] = []
    meter = WorkMeter(lambda d, t: calls.append((d, t)), tiles=2, views=1, conv_calls=4, area=100)
    meter.begin()
    meter.start_tile(50)
    for _ in range(3):
        meter.on_conv(CONV, ONE_VIEW)
    meter.start_tile(25)  # the tile failed after 3 convs and is redone in two halves
    meter.on_conv(CONV, ONE_VIEW)
    meter.finish_tile()
    meter.start_tile(25)
    meter.finish_tile()
    meter.start_tile(50)
    for _ in range(6):  # more calls than planned (a half-precision tile redone in fp32) cap at the tile
        meter.on_conv(CONV, ONE_VIEW)
    meter.finish_tile()
    assert calls[0] == (0, 8) and calls[-1] == (8, 8)
    done = [d for d, _ in calls]
    assert done == sorted(set(done))


def test_conv_macs_of_a_grouped_and_a_transposed_conv() -> None:
    grouped = nn.Conv2d(8, 4, 3, groups=2)
    assert conv_macs(grouped, torch.zeros(1, 4, 5, 5)) == 4 * 25 * (8 // 2) * 9
    transposed = nn.ConvTranspose2d(6, 4, 2, stride=2, groups=2)
    # counted from the input side: each of the 6 x 5 x 5 inputs meets out_channels/groups x kernel weights
    assert conv_macs(transposed, torch.zeros(1, 4, 10, 10)) == 6 * 25 * (4 // 2) * 4

"""The batched self-ensemble (views stacked into one forward: 8 for square windows, 4 + 4 otherwise, in
smaller batches under a pixel limit)
equals the definition run one view at a time, for a random-weight net of every family's descriptor,
whole image and tiled, and its progress counts every view."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from sr_cli.archs.descriptor import FamilyDescriptor
from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.families import FAMILIES
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.rrdb import RRDBParams
from sr_cli.archs.runtime import SRNet, build_module, to_srnets
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.archs.vdsr import VDSRParams
from sr_cli.engine import EnginePlan, upscale_tensor
from sr_cli.engine.ensemble import ensemble_forward

CPU = torch.device("cpu")
TOLERANCE = 1e-5  # relative to the output's magnitude: only the order of float sums differs
TINY: dict[str, Any] = {  # small but with every part of the architecture (pixel_unshuffle for RRDB x2)
    "edsr": EDSRParams(n_resblocks=2, n_feats=8, scale=3),
    "mdsr": MDSRParams(n_resblocks=1, n_feats=8),
    "rrdb": RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2),
    "vdsr": VDSRParams(num_layers=4, num_features=8),
    "srvgg": SRVGGParams(num_feat=8, num_conv=2, upscale=4),
}


def _nets(descriptor: FamilyDescriptor[Any]) -> list[SRNet]:
    torch.manual_seed(len(descriptor.name))
    return [net.eval() for net in to_srnets(build_module(descriptor.name, TINY[descriptor.name])).values()]


def rotation_ensemble(net: SRNet, image: Tensor) -> Tensor:
    """The definition (EDSR's "+" models), written with rotations rather than the engine's
    transpose/flip: k quarter turns and an optional mirror, each run alone, undone, averaged in float64."""
    outputs = []
    with torch.inference_mode():
        for turns in range(4):
            for mirror in (False, True):
                view = torch.rot90(image, turns, dims=(-2, -1))
                view = torch.flip(view, dims=(-1,)) if mirror else view
                out = net(view[None].contiguous())[0]
                out = torch.flip(out, dims=(-1,)) if mirror else out
                outputs.append(torch.rot90(out, -turns, dims=(-2, -1)).double())
    return torch.stack(outputs).mean(dim=0)


def _close(result: Tensor, expected: Tensor) -> None:
    scale = max(float(expected.abs().max()), 1.0)
    assert float((result.double() - expected).abs().max()) <= TOLERANCE * scale


def test_every_family_has_a_tiny_net_here() -> None:
    assert set(TINY) == {descriptor.name for descriptor in FAMILIES}


@pytest.mark.parametrize("descriptor", FAMILIES, ids=[d.name for d in FAMILIES])
@pytest.mark.parametrize(("height", "width"), [(12, 12), (10, 14)])  # one batch of 8; two of 4 (transposed shapes)
def test_batched_views_equal_the_views_one_at_a_time(descriptor: FamilyDescriptor[Any], height: int, width: int) -> None:
    for net in _nets(descriptor):
        m = net.size_multiple
        image = torch.rand(net.in_channels, height * m, width * m, generator=torch.Generator().manual_seed(height))
        with torch.inference_mode():
            batched = ensemble_forward(net, image[None])[0]
        assert batched.dtype == torch.float32
        _close(batched, rotation_ensemble(net, image))


@pytest.mark.parametrize(("height", "width", "limit", "batches"), [
    (12, 12, None, [8]), (12, 12, 8 * 144, [8]), (12, 12, 4 * 144, [4, 4]), (12, 12, 3 * 144, [3, 3, 2]),
    (12, 12, 1, [1] * 8), (10, 14, 2 * 140, [2, 2, 2, 2]), (10, 14, 3 * 140, [2, 2, 2, 2]),
])
def test_views_run_in_batches_within_the_pixel_limit_and_give_the_same_mean(
    height: int, width: int, limit: int | None, batches: list[int]
) -> None:
    """The CPU's limit on a forward's pixels (engine/ensemble.py) cuts the views into near-equal batches
    of one shape, none over the limit unless a single view is; the mean is the definition's."""
    net = _nets(FAMILIES[0])[0]
    image = torch.rand(net.in_channels, height, width, generator=torch.Generator().manual_seed(3))
    seen: list[tuple[int, ...]] = []

    def recording(x: Tensor) -> Tensor:
        seen.append(tuple(x.shape))
        return net(x)

    with torch.inference_mode():
        result = ensemble_forward(recording, image[None], max_batch_pixels=limit)[0]
    assert [shape[0] for shape in seen] == batches
    assert all(shape[0] * shape[-2] * shape[-1] <= max(limit or 10**9, height * width) for shape in seen)
    _close(result, rotation_ensemble(net, image))


def test_the_engine_limits_view_batches_on_the_cpu() -> None:
    """On the CPU a window of 96x96 runs its 8 views in batches of at most CPU_VIEW_BATCH_PIXELS."""
    from sr_cli.engine.ensemble import CPU_VIEW_BATCH_PIXELS

    net = SRNet(build_module("srvgg", SRVGGParams(num_feat=4, num_conv=1, upscale=2))).eval()
    batches: list[int] = []
    net.register_forward_pre_hook(lambda _module, inputs: batches.append(inputs[0].shape[0]))
    upscale_tensor(net, torch.rand(3, 96, 96), EnginePlan(scale=2, device=CPU, precision="fp32", ensemble=True))
    assert sum(batches) == 8 and len(batches) > 1
    assert max(batches) * 96 * 96 <= CPU_VIEW_BATCH_PIXELS


@pytest.mark.parametrize("descriptor", FAMILIES, ids=[d.name for d in FAMILIES])
def test_tiled_ensemble_equals_the_whole_image_definition(descriptor: FamilyDescriptor[Any]) -> None:
    """Tiles whose windows are clipped at the border (not square) take the 4 + 4 path; with the net's
    full receptive radius as overlap a tiled run is the whole-image run, up to float rounding."""
    net = _nets(descriptor)[0]
    m = net.size_multiple
    image = torch.rand(net.in_channels, 18 * m, 13 * m, generator=torch.Generator().manual_seed(3))
    calls: list[tuple[int, int]] = []
    plan = EnginePlan(scale=net.scale, device=CPU, precision="fp32", tile=6 * m,
                      overlap=net.descriptor.receptive_radius(net.module.params), size_multiple=m, ensemble=True)
    result = upscale_tensor(net, image, plan, progress=lambda done, total: calls.append((done, total)))
    _close(result, rotation_ensemble(net, image))
    assert calls[-1][0] == calls[-1][1] and len({total for _, total in calls}) == 1


def test_progress_counts_each_view_of_a_batched_forward() -> None:
    """Units are conv layer x view x tile (engine/progress.py) even though the 8 views run as one batch."""
    net = _nets(FAMILIES[0])[0]
    convs = sum(isinstance(module, torch.nn.Conv2d) for module in net.modules())
    image = torch.rand(3, 9, 9)
    for ensemble, views in ((False, 1), (True, 8)):
        calls: list[tuple[int, int]] = []

        def record(done: int, total: int, seen: list[tuple[int, int]] = calls) -> None:
            seen.append((done, total))

        upscale_tensor(net, image, EnginePlan(scale=net.scale, device=CPU, precision="fp32", ensemble=ensemble),
                       progress=record)
        assert calls[-1] == (convs * views, convs * views)
        assert [done for done, _ in calls] == sorted({done for done, _ in calls})  # never backwards


def test_the_auto_tile_budgets_for_the_views_each_forward_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU the views of a window of CPU_VIEW_BATCH_PIXELS or more run one per forward, so a budget
    that holds the whole image for one view keeps the whole image with --ensemble too (no smaller tiles,
    no extra context work); where all 8 views share one forward (no limit: accelerators) the same budget
    needs tiles. Every forward the model sees fits the budget; the result is the whole-image ensemble."""
    from sr_cli.engine import TileStats
    from sr_cli.engine.ensemble import CPU_VIEW_BATCH_PIXELS
    from sr_cli.engine.memory import auto_tile_size, axis_plan, estimate_cost_per_pixel

    net = _nets(FAMILIES[0])[0]
    side = 128
    assert side * side >= CPU_VIEW_BATCH_PIXELS  # one view per forward on the CPU
    image = torch.rand(3, side, side, generator=torch.Generator().manual_seed(8))
    cost = estimate_cost_per_pixel(net, in_channels=3, size_multiple=1, device=CPU)
    budget = int(cost * side * side * 1.01)
    monkeypatch.setattr("sr_cli.engine.upscale.memory_budget", lambda device: budget)
    seen: dict[bool, list[tuple[int, ...]]] = {False: [], True: []}
    results = {}
    for ensemble in (False, True):
        def recording(x: Tensor, shapes: list[tuple[int, ...]] = seen[ensemble]) -> Tensor:
            shapes.append(tuple(x.shape))
            return net(x)

        stats = TileStats()
        plan = EnginePlan(scale=net.scale, device=CPU, precision="fp32", tile=None, overlap=net.min_overlap,
                          ensemble=ensemble, cost_per_pixel=cost)
        results[ensemble] = upscale_tensor(recording, image, plan, stats=stats)
        assert stats.tile_size == 0  # the whole image, with and without the ensemble
    assert seen[False] == [(1, 3, side, side)]
    assert seen[True] == [(1, 3, side, side)] * 8
    assert all(n * height * width * cost <= budget for n, _, height, width in seen[True])
    with torch.inference_mode():
        _close(results[True], ensemble_forward(net, image[None])[0].double())
    all_views = auto_tile_size(side, side, cost_per_pixel=cost, overlap=net.min_overlap, views=8, size_multiple=1,
                               budget_bytes=budget)
    rows, cols = axis_plan(side, all_views, net.min_overlap, 1), axis_plan(side, all_views, net.min_overlap, 1)
    assert 0 < all_views < side and rows.largest * cols.largest * 8 * cost <= budget


@pytest.mark.parametrize("limit", [1, 1000, 4096, 16384, 10**9])
def test_the_memory_plan_counts_at_least_the_views_a_forward_batches(limit: int) -> None:
    """memory.forward_pixels never undercounts what ensemble_forward puts in one forward (square and
    transposed windows, every size up to 160x160)."""
    from sr_cli.engine.ensemble import VIEWS, view_batches
    from sr_cli.engine.memory import forward_pixels

    for pixels in range(1, 160 * 160, 97):
        for group in (VIEWS, VIEWS[:4]):
            largest = max(len(batch) for batch in view_batches(group, pixels, limit)) * pixels
            assert largest <= forward_pixels(pixels, 8, limit)
            assert largest <= max(limit, pixels)  # and within the limit unless one view alone exceeds it

"""Tiled inference equals the whole-image forward for overlap >= the model's min_overlap: to float32
rounding (1e-5) where min_overlap is the exact receptive radius, within 1/255 where it is smaller.

The reference is computed here, independently of the engine: reflect-pad the image bottom/right to the
model's size multiple, one forward pass, crop. Models: random-init small EDSR (x3), RRDB x2 (pixel-unshuffle,
size_multiple 2), MDSR (x4), and the real VDSR weights on a Set5 crop.
"""
from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.rrdb import RRDBParams
from sr_cli.archs.runtime import SRNet, build_module, receptive_radius, to_srnets
from sr_cli.engine import EnginePlan, TileStats, upscale_tensor
from sr_cli.engine.blending import BlendPlan, blend_plan, feather_radius, tile_weights
from sr_cli.engine.memory import (
    MIN_TILE,
    STREAMED_MAX_WORK,
    auto_tile_size,
    axis_plan,
    grid_work,
    streamed_tile_size,
)
from sr_cli.engine.pipeline import split_tile as _split
from sr_cli.engine.tiling import split_axis, tile_grid, window_of

CPU = torch.device("cpu")
# min_overlap = the exact receptive radius (EDSR, MDSR, VDSR, SRVGG, small RRDBs): every tile sees every
# input pixel the whole pass sees, so only the order of float32 sums differs (measured: 1.2e-7 for the EDSR
# below). 1/255 would pass tiles with half the context they need (test_the_exact_bound_is_the_stricter_one).
EXACT = 1e-5
# min_overlap below the radius (large RRDBs, capped by measurement: bench/min_overlap.py): within 1/255.
APPROXIMATE = 1 / 255
# Real-ESRGAN x4plus at its default context (80 px, fade inside): within 1 level on the photo strips of
# bench/min_overlap.py --engine (worst 0.5, docs/benchmarks.md).
RRDB_BOUND = APPROXIMATE
TOLERANCE = APPROXIMATE  # what "really differs" below must exceed


def _small_edsr() -> SRNet:
    torch.manual_seed(1)
    return SRNet(build_module("edsr", EDSRParams(n_resblocks=2, n_feats=8, scale=3))).eval()


def _small_rrdb_x2() -> SRNet:
    torch.manual_seed(2)
    return SRNet(build_module("rrdb", RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2))).eval()


def _small_mdsr_x4() -> SRNet:
    torch.manual_seed(3)
    return to_srnets(build_module("mdsr", MDSRParams(n_resblocks=1, n_feats=8)))[4].eval()


MODELS = {"edsr": _small_edsr(), "rrdb_x2": _small_rrdb_x2(), "mdsr_x4": _small_mdsr_x4()}


def whole_reference(net: SRNet, image: torch.Tensor) -> torch.Tensor:
    """One forward pass over the image reflect-padded to the size multiple, cropped back."""
    m = net.size_multiple
    height, width = image.shape[-2:]
    padded = F.pad(image[None], (0, (-width) % m, 0, (-height) % m), mode="reflect")
    with torch.inference_mode():
        out = net(padded)[0]
    return out[:, :height * net.scale, :width * net.scale]


def tolerance(net: SRNet) -> float:
    exact = net.min_overlap >= receptive_radius(net.family, net.module.params)
    return EXACT if exact else APPROXIMATE


def run_engine(net: SRNet, image: torch.Tensor, tile: int, overlap: int, *, min_overlap: int | None = None,
               exact_overlap: int | None = None, stats: TileStats | None = None) -> torch.Tensor:
    plan = EnginePlan(scale=net.scale, device=CPU, precision="fp32", tile=tile, overlap=overlap,
                      min_overlap=min_overlap, exact_overlap=exact_overlap, size_multiple=net.size_multiple)
    return upscale_tensor(net, image, plan, stats=stats)


def run_as_api(net: SRNet, image: torch.Tensor, tile: int, *, stats: TileStats | None = None) -> torch.Tensor:
    """What sr_cli.api runs: the model's own context, with its measured and exact needs (the fade inside)."""
    return run_engine(net, image, tile, net.min_overlap, min_overlap=net.min_overlap,
                      exact_overlap=net.exact_overlap, stats=stats)


def test_models_are_what_the_tests_claim() -> None:
    assert MODELS["rrdb_x2"].size_multiple == 2 and MODELS["rrdb_x2"].scale == 2
    assert MODELS["edsr"].scale == 3 and MODELS["mdsr_x4"].scale == 4
    assert all(tolerance(net) == EXACT for net in MODELS.values())  # each gets the strict bound


def draw_image_and_tile(data: st.DataObject) -> tuple[torch.Tensor, int]:
    """A random 2..37 px image (its pixels seeded by its size) and a 1..48 px tile: tiles of one pixel, tiles
    that cut the image anywhere and tiles larger than the image."""
    height = data.draw(st.integers(2, 37), label="height")
    width = data.draw(st.integers(2, 37), label="width")
    tile = data.draw(st.integers(1, 48), label="tile")
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(height * 100 + width)), tile


@pytest.mark.parametrize("name", sorted(MODELS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tiled_equals_whole_random_images(name: str, data: st.DataObject) -> None:
    net = MODELS[name]
    image, tile = draw_image_and_tile(data)
    overlap = net.min_overlap + data.draw(st.integers(0, 3), label="extra overlap")
    stats = TileStats()
    result = run_engine(net, image, tile, overlap, stats=stats)
    expected = whole_reference(net, image)
    assert result.shape == expected.shape
    assert (result - expected).abs().max().item() <= tolerance(net)
    assert stats.oom_splits == 0 and stats.fp32_redos == 0


@pytest.mark.parametrize("name", sorted(MODELS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tiled_equals_whole_with_the_api_plan(name: str, data: st.DataObject) -> None:
    """The plan the API uses (exact radius: hard seams, windows of core + 2 * context) stays exact."""
    net = MODELS[name]
    image, tile = draw_image_and_tile(data)
    assert blend_plan(net.min_overlap, min_overlap=net.min_overlap, exact_overlap=net.exact_overlap) == \
        BlendPlan(reach=net.min_overlap, feather=0)
    assert (run_as_api(net, image, tile) - whole_reference(net, image)).abs().max().item() <= EXACT


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("height", "width", "tile"), [
    (17, 9, 8),   # 1-pixel remainder on rows (17 = 2*8 + 1), odd sizes
    (9, 25, 12),  # 1-pixel remainder on columns
    (33, 33, 16),
    (5, 7, 64),   # tile much larger than the image
    (31, 30, 0),  # whole image through the engine
])
def test_tiled_equals_whole_edge_cases(name: str, height: int, width: int, tile: int) -> None:
    net = MODELS[name]
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(7))
    result = run_engine(net, image, tile, net.min_overlap)
    assert (result - whole_reference(net, image)).abs().max().item() <= tolerance(net)


def test_tiles_smaller_than_context_on_a_real_image_structure() -> None:
    """A smooth, edge-rich image (not noise): sharp gradients cross tile boundaries."""
    net = MODELS["edsr"]
    yy, xx = torch.meshgrid(torch.linspace(0, 6, 29), torch.linspace(0, 9, 31), indexing="ij")
    image = torch.stack([(torch.sin(yy * xx) + 1) / 2, (yy % 1.0), (xx > 4).float()])
    result = run_engine(net, image, 6, net.min_overlap)
    assert (result - whole_reference(net, image)).abs().max().item() <= tolerance(net)


def test_single_pixel_image_with_size_multiple_two() -> None:
    """1x1 input to RRDB x2 (needs a multiple of 2): reflection is impossible, the border is replicated."""
    net = MODELS["rrdb_x2"]
    image = torch.rand(3, 1, 1)
    with torch.inference_mode():
        expected = net(image.expand(3, 2, 2)[None].contiguous())[0][:, :2, :2]
    result = run_engine(net, image, 4, net.min_overlap)
    assert result.shape == (3, 2, 2)
    assert (result - expected).abs().max().item() <= 1e-6


def test_overlap_below_context_really_differs() -> None:
    """The property above is not vacuous: with too little context, tiles differ from the whole forward."""
    net = MODELS["edsr"]
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    result = run_engine(net, image, 8, 0)
    assert (result - whole_reference(net, image)).abs().max().item() > TOLERANCE


def test_the_exact_bound_is_the_stricter_one() -> None:
    """Half the needed context (overlap 4 of 8 for this EDSR): within 1/255, so the old bound passed it,
    but clearly outside float rounding (measured 4.4e-4; overlap 6 gives 1.2e-5, overlap 8 gives 1.2e-7)."""
    net = MODELS["edsr"]
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    error = (run_engine(net, image, 8, net.min_overlap // 2) - whole_reference(net, image)).abs().max().item()
    assert EXACT < error < APPROXIMATE


def test_tiled_equals_whole_real_vdsr_on_set5(vdsr_weights, datasets_dir) -> None:  # noqa: ANN001
    from PIL import Image

    from sr_cli.weights.loading import load_checkpoint, srnet_for

    net = srnet_for(load_checkpoint(vdsr_weights), 2.0).eval()
    hr = np.asarray(Image.open(datasets_dir / "set5" / "HR" / "butterfly.png").convert("L"), dtype=np.float32) / 255
    image = torch.from_numpy(hr[100:141, 60:95].copy())[None]  # 41 x 35: odd, edge-rich
    expected = whole_reference(net, image)
    for tile in (12, 40, 100):
        result = run_engine(net, image, tile, net.min_overlap)
        assert (result - expected).abs().max().item() <= tolerance(net), tile
    assert tolerance(net) == EXACT


# --- the grid and the weights ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(length_units=st.integers(1, 300), tile=st.integers(1, 400), multiple=st.sampled_from([1, 2, 4]))
def test_split_axis_partitions_with_aligned_bounded_cores(length_units: int, tile: int, multiple: int) -> None:
    length = length_units * multiple
    spans = split_axis(length, tile, multiple)
    assert spans[0].start == 0 and spans[-1].stop == length
    assert all(a.stop == b.start for a, b in pairwise(spans))
    limit = -(-max(tile, 1) // multiple) * multiple
    assert all(s.length > 0 and s.start % multiple == 0 and s.length <= limit for s in spans)
    assert len(spans) == -(-length // limit)  # the fewest cores that respect the limit


@settings(max_examples=80, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40), tile=st.integers(1, 45), overlap=st.integers(0, 9),
       scale=st.sampled_from([1, 2, 3]), split=st.booleans(), where=st.sampled_from(["on top", "inside", "exact"]))
def test_weights_sum_to_one_and_only_where_context_suffices(
    height: int, width: int, tile: int, overlap: int, scale: int, split: bool, where: str
) -> None:
    """A partition of unity for every plan, and each weighted pixel has the context the plan promises:
    `overlap` with the fade on top, overlap - feather with it inside (overlap at the core boundary), and
    with no fade (exact) each output pixel comes from exactly one tile."""
    plan = blend_plan(overlap, min_overlap={"on top": overlap + 1, "inside": overlap, "exact": 0}[where],
                      exact_overlap=overlap if where == "exact" else overlap + 1)
    promised = overlap if where == "on top" else plan.reach - plan.feather
    assert plan.reach == (overlap + feather_radius(overlap) if where == "on top" else overlap)
    tiles = tile_grid(height, width, tile, plan.reach)
    if split:  # what an out-of-memory retry does to the first tile
        tiles = _split(tiles[0], (max(tiles[0].rows.length // 2, 1), max(tiles[0].cols.length // 2, 1)),
                       plan.reach, height, width, 1) + tiles[1:]
    total = torch.zeros(height * scale, width * scale, dtype=torch.float64)
    for t in tiles:
        w = tile_weights(t, height, width, scale, float(plan.feather)).double()
        assert (w >= 0).all()
        if where == "exact":
            assert ((w == 0) | (w == 1)).all()
        total[t.window_rows.start * scale:t.window_rows.stop * scale,
              t.window_cols.start * scale:t.window_cols.stop * scale] += w
        rows = (torch.arange(t.window_rows.start * scale, t.window_rows.stop * scale) + 0.5) / scale
        used = rows[(w > 0).any(dim=1)]
        assert t.window_rows.start == 0 or (used - t.window_rows.start).min() >= promised
        assert t.window_rows.stop == height or (t.window_rows.stop - used).max() >= promised
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_feather_is_a_raised_cosine_crossing_at_the_boundary() -> None:
    tiles = tile_grid(1, 40, 20, 8 + feather_radius(8))
    left = tile_weights(tiles[0], 1, 40, 1, float(feather_radius(8)))[0]
    # pixel centres 19.5 and 20.5 sit 0.5 px either side of the boundary at 20: sin(+-pi/16) ramps
    expected_19 = 0.5 * (1 + np.sin(np.pi * 0.5 / (2 * 4)))  # left of the boundary: more than half
    assert left[19].item() == pytest.approx(expected_19, abs=1e-6)
    assert left[20].item() == pytest.approx(1 - expected_19, abs=1e-6)
    assert left[:16].eq(1).all() and left[24:].eq(0).all()


def test_the_fade_moves_inside_the_context_only_once_it_suffices() -> None:
    assert blend_plan(48) == BlendPlan(reach=64, feather=16)  # nothing known: on top, as before
    assert blend_plan(40, min_overlap=48, exact_overlap=349) == BlendPlan(reach=56, feather=16)
    assert blend_plan(48, min_overlap=48, exact_overlap=349) == BlendPlan(reach=48, feather=16)
    assert blend_plan(349, min_overlap=48, exact_overlap=349) == BlendPlan(reach=349, feather=0)
    assert blend_plan(36, min_overlap=36, exact_overlap=36) == BlendPlan(reach=36, feather=0)


def test_a_fade_inside_a_context_below_the_radius_stays_within_a_level() -> None:
    """An approximate model (context below its radius, fade inside): the small EDSR run with 6 of its 8
    px of radius declared sufficient. Within 1 level, and not exact, so the fade really lies inside."""
    net = MODELS["edsr"]
    yy, xx = torch.meshgrid(torch.linspace(0, 6, 40), torch.linspace(0, 9, 44), indexing="ij")
    image = torch.stack([(torch.sin(yy * xx) + 1) / 2, (yy % 1.0), (xx > 4).float()])
    result = run_engine(net, image, 12, 6, min_overlap=6, exact_overlap=net.exact_overlap)
    error = (result - whole_reference(net, image)).abs().max().item()
    assert EXACT < error <= APPROXIMATE


# --- the auto tile: least modelled work for the budget ----------------------------------------------


def brute_force_least_work(height: int, width: int, reach: int, multiple: int, cost: float, budget: int) -> float:
    """The least modelled work over EVERY tile side from the floor to the image (no candidate shortcut)."""
    floor = max(MIN_TILE, multiple) // multiple * multiple
    works = []
    for tile in range(floor, max(height, width) + multiple):
        rows, cols = axis_plan(height, tile, reach, multiple), axis_plan(width, tile, reach, multiple)
        if rows.largest * cols.largest * cost <= budget:
            works.append(grid_work(rows, cols))
    return min(works) if works else float("inf")


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 300), reach=st.integers(0, 60),
       multiple=st.sampled_from([1, 2, 4]), budget_side=st.integers(8, 400), views=st.sampled_from([1, 8]))
def test_auto_tile_minimises_the_modelled_work_for_the_budget(
    height: int, width: int, reach: int, multiple: int, budget_side: int, views: int
) -> None:
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple  # padded, as the engine
    cost = 1000.0
    budget = int(budget_side * budget_side * cost * views)
    tile = auto_tile_size(height, width, cost_per_pixel=cost, overlap=reach, views=views, size_multiple=multiple,
                          budget_bytes=budget)
    if height * width * cost * views <= budget:
        assert tile == 0
        return
    assert tile > 0 and tile % multiple == 0
    rows, cols = axis_plan(height, tile, reach, multiple), axis_plan(width, tile, reach, multiple)
    least = brute_force_least_work(height, width, reach, multiple, cost * views, budget)
    if least == float("inf"):  # nothing fits: the smallest tile (the out-of-memory path takes over)
        assert tile == max(MIN_TILE, multiple) // multiple * multiple
        return
    assert rows.largest * cols.largest * cost * views <= budget  # it fits
    assert grid_work(rows, cols) == least  # and nothing that fits does less work


@settings(max_examples=60, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 300), reach=st.integers(0, 60),
       multiple=st.sampled_from([1, 2, 4]), budget_side=st.integers(8, 400), band_share=st.floats(0.0, 0.9),
       shares_host=st.booleans())
def test_streamed_auto_tile_is_the_least_work_that_fits_device_and_band(
    height: int, width: int, reach: int, multiple: int, budget_side: int, band_share: float, shares_host: bool
) -> None:
    """The streamed run's auto tile: the same least-work rule, under the band's budget as well."""
    height, width = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    cost, budget = 1000.0, int(budget_side * budget_side * 1000.0)
    band_per_row = band_share * budget / max(budget_side, 1)  # a band of `budget_side` rows takes that share
    tile, planned_for = streamed_tile_size(
        height, width, cost_per_pixel=cost, overlap=reach, views=1, size_multiple=multiple, device_budget_bytes=budget,
        host_budget_bytes=budget, band_bytes_per_row=band_per_row, shares_host=shares_host)
    assert planned_for == budget  # no ceiling above it: the budget cannot grow

    def fits(rows_largest: int, cols_largest: int) -> bool:
        activations, band = rows_largest * cols_largest * cost, band_per_row * rows_largest
        return activations + band <= budget if shares_host else activations <= budget and band <= budget

    if fits(height, width):
        assert tile == 0
        return
    floor = max(MIN_TILE, multiple) // multiple * multiple
    works = []
    for side in range(floor, max(height, width) + multiple):  # every tile, no candidate shortcut
        rows, cols = axis_plan(height, side, reach, multiple), axis_plan(width, side, reach, multiple)
        if fits(rows.largest, cols.largest):
            works.append(grid_work(rows, cols))
    if not works:
        assert tile == floor
        return
    rows, cols = axis_plan(height, tile, reach, multiple), axis_plan(width, tile, reach, multiple)
    assert fits(rows.largest, cols.largest)
    assert grid_work(rows, cols) == min(works)


MIB = 1024**2


@pytest.mark.parametrize("side", [1200, 2048, 4096])
def test_a_streamed_run_takes_more_memory_rather_than_tiles_of_pure_context(side: int) -> None:
    """RRDB's figures (16,588 B a pixel, 80 px of context; x4 RGB out) streamed under 512 MiB: the least-work
    grid there has 16 px cores (over 75x the image's work). With a ceiling the budget grows until the work
    is within STREAMED_MAX_WORK or the ceiling is reached, and the tile fits the budget it was planned for."""
    band_per_row = 4.0 * 3 * 16 * side
    common = dict(cost_per_pixel=16588.0, overlap=80, views=1, size_multiple=1, device_budget_bytes=6144 * MIB,
                  band_bytes_per_row=band_per_row, shares_host=True, host_budget_bytes=512 * MIB)
    small, small_budget = streamed_tile_size(side, side, **common)  # type: ignore[arg-type]
    small_rows = axis_plan(side, small, 80, 1)
    assert small_budget == 512 * MIB and grid_work(small_rows, small_rows) > 50 * side * side
    tile, used = streamed_tile_size(side, side, host_ceiling_bytes=6144 * MIB, **common)  # type: ignore[arg-type]
    rows = axis_plan(side, tile, 80, 1)
    assert 512 * MIB < used <= 6144 * MIB and tile > 16
    assert grid_work(rows, rows) <= STREAMED_MAX_WORK * side * side or used == 6144 * MIB
    assert rows.largest ** 2 * 16588.0 + band_per_row * rows.largest <= used  # it fits what it was planned for
    if used < 6144 * MIB:  # and the budget half as large would not have done
        half_tile, _ = streamed_tile_size(side, side, **{**common, "host_budget_bytes": used // 2})  # type: ignore[arg-type]
        half_rows = axis_plan(side, half_tile, 80, 1)
        assert grid_work(half_rows, half_rows) > STREAMED_MAX_WORK * side * side


def test_a_streamed_run_of_a_light_model_keeps_the_small_budget() -> None:
    """SRVGG animevideov3's figures (1,228 B a pixel, 18 px; goal 3's 4096x4096 x4 run): tiles under 512 MiB
    already cost less than STREAMED_MAX_WORK times the image, so the budget stays 512 MiB."""
    tile, used = streamed_tile_size(4096, 4096, cost_per_pixel=1228.0, overlap=18, views=1, size_multiple=1,
                                    device_budget_bytes=6144 * MIB, host_budget_bytes=512 * MIB,
                                    host_ceiling_bytes=6144 * MIB, band_bytes_per_row=4.0 * 3 * 16 * 4096,
                                    shares_host=True)
    rows = axis_plan(4096, tile, 18, 1)
    assert used == 512 * MIB and 0 < tile < 4096
    assert grid_work(rows, rows) <= STREAMED_MAX_WORK * 4096 * 4096


def test_auto_tile_uses_the_border_windows_real_size() -> None:
    """512 px, reach 48, room for a 304x304 window: two cores per axis (windows 256 + 48, one context band
    each), where core + 2 * reach per window would have forced three (a third more work)."""
    cost = 100.0
    tile = auto_tile_size(512, 512, cost_per_pixel=cost, overlap=48, views=1, size_multiple=1,
                          budget_bytes=int(304 * 304 * cost))
    assert tile == 256
    assert [window_of(core, 48, 512).length for core in split_axis(512, tile)] == [304, 304]


# --- the real bundled weights (small strips keep CI cheap) ------------------------------------------

BUNDLED = Path(__file__).resolve().parents[1] / "sr_cli" / "bundled"


def _bundled(name: str) -> SRNet:
    from sr_cli.weights.loading import load_checkpoint, srnet_for

    return srnet_for(load_checkpoint(BUNDLED / name), 4).eval()


def _photo_strip(datasets_dir: Path, rows: int, cols: int) -> torch.Tensor:
    from PIL import Image

    lr = np.asarray(Image.open(datasets_dir / "set14" / "HR" / "bridge.png").convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(lr[200:200 + rows, 100:100 + cols].copy()).permute(2, 0, 1).contiguous()


def test_real_srvgg_tiles_are_exact(datasets_dir: Path) -> None:
    """animevideov3 at its exact radius (18 px): hard seams, float rounding only."""
    net = _bundled("realesr-animevideov3.fp16.safetensors")
    image = _photo_strip(datasets_dir, 20, 90)
    assert net.min_overlap == net.exact_overlap == 18
    assert (run_as_api(net, image, 24) - whole_reference(net, image)).abs().max().item() <= EXACT


def test_real_rrdb_tiles_stay_within_the_documented_bound(datasets_dir: Path) -> None:
    """Real-ESRGAN x4plus, context 80 with the fade inside it: two tiles across a 16x220 photo strip (each
    window 110 + 80 px, the boundary where the whole pass sees all 220) within RRDB_BOUND of the whole pass."""
    net = _bundled("realesrgan-x4plus.fp16.safetensors")
    image = _photo_strip(datasets_dir, 16, 220)
    assert blend_plan(net.min_overlap, min_overlap=net.min_overlap, exact_overlap=net.exact_overlap) == \
        BlendPlan(reach=80, feather=16)
    stats = TileStats()
    tiled = run_as_api(net, image, 110, stats=stats)
    error = (tiled.clamp(0, 1) - whole_reference(net, image).clamp(0, 1)).abs().max().item()
    assert stats.tiles_pasted == 2 and net.min_overlap < net.exact_overlap  # really tiled, really approximate
    assert error <= RRDB_BOUND  # measured 0.005 levels here

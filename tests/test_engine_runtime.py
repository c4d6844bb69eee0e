"""Self-ensemble, precision fallback, out-of-memory halving, progress, device/precision choice, auto tile."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.runtime import SRNet, build_module
from sr_cli.engine import EnginePlan, TileStats, resolve_device, resolve_precision, upscale_tensor
from sr_cli.engine.blending import feather_radius
from sr_cli.engine.memory import auto_tile_size, axis_plan, estimate_cost_per_pixel, is_out_of_memory
from sr_cli.errors import CheckpointError, DeviceError, ModelOutputError, UsageError

CPU = torch.device("cpu")
TOLERANCE = 1 / 255


def _edsr() -> SRNet:
    torch.manual_seed(5)
    return SRNet(build_module("edsr", EDSRParams(n_resblocks=1, n_feats=8, scale=2))).eval()


NET = _edsr()
PLAN = EnginePlan(scale=2, device=CPU, precision="fp32", overlap=NET.min_overlap)  # the whole image, fp32


def _run(model: Callable[[Tensor], Tensor], image: Tensor, plan: EnginePlan = PLAN, *, stats: TileStats | None = None,
         progress: Callable[[int, int], None] | None = None) -> Tensor:
    return upscale_tensor(model, image, plan, stats=stats, progress=progress)


def _whole(image: Tensor) -> Tensor:
    with torch.inference_mode():
        return NET(image[None])[0]


# --- self-ensemble -------------------------------------------------------------------------------------


def reference_ensemble(image: Tensor) -> Tensor:
    """EDSR's definition, written with rotations (not the engine's transpose/flip): for k quarter turns and
    an optional horizontal mirror, run the model, undo the mirror, then undo the turns; mean of the 8."""
    outputs = []
    with torch.inference_mode():
        for turns in range(4):
            for mirror in (False, True):
                view = torch.rot90(image, turns, dims=(-2, -1))
                if mirror:
                    view = torch.flip(view, dims=(-1,))
                out = NET(view[None])[0]
                if mirror:
                    out = torch.flip(out, dims=(-1,))
                outputs.append(torch.rot90(out, -turns, dims=(-2, -1)))
    return torch.stack(outputs).double().mean(dim=0).float()


@pytest.mark.parametrize(("height", "width", "tile"), [(12, 12, 0), (13, 9, 0), (21, 17, 7)])
def test_ensemble_equals_reference_definition(height: int, width: int, tile: int) -> None:
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height))
    result = _run(NET, image, replace(PLAN, tile=tile, ensemble=True))
    expected = reference_ensemble(image)
    assert (result - expected).abs().max().item() <= TOLERANCE
    # and it is really an ensemble: it differs from the single forward pass
    assert (result - _whole(image)).abs().max().item() > 1e-4


def test_ensemble_of_an_equivariant_model_is_the_model() -> None:
    """A 1x1 conv + nearest upsampling commutes with every flip/transpose: the mean of 8 equal views."""
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Upsample(scale_factor=2, mode="nearest")).eval()
    image = torch.rand(3, 6, 11)
    with torch.inference_mode():
        expected = model(image[None])[0]
    assert torch.allclose(_run(model, image, replace(PLAN, overlap=0, ensemble=True)), expected, atol=1e-6)


# --- precision -----------------------------------------------------------------------------------------


class NaNInHalf(nn.Module):
    """Returns NaN/Inf whenever autocast is on (what an fp16 overflow looks like), the real result otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.calls_in_half = 0

    def forward(self, x: Tensor) -> Tensor:
        out = NET(x)
        if torch.is_autocast_enabled("cpu"):
            self.calls_in_half += 1
            out = out.clone()
            out[..., 0, 0] = float("nan")
            out[..., -1, -1] = float("inf")
        return out


def test_half_precision_nan_tile_is_redone_in_fp32() -> None:
    image = torch.rand(3, 20, 20)
    model = NaNInHalf()
    stats = TileStats()
    result = _run(model, image, replace(PLAN, tile=10, precision="bf16"), stats=stats)
    assert torch.isfinite(result).all()
    assert stats.fp32_redos == stats.tiles_pasted == model.calls_in_half == 4
    expected = _run(NET, image, replace(PLAN, tile=10))
    assert torch.equal(result, expected)  # exactly the fp32 result: the half output was never pasted


def test_bf16_on_cpu_is_close_to_fp32() -> None:
    image = torch.rand(3, 16, 16)
    stats = TileStats()
    result = _run(NET, image, replace(PLAN, precision="bf16"), stats=stats)
    assert stats.fp32_redos == 0
    assert (result - _whole(image)).abs().max().item() < 0.05  # bf16 has 8 bits of mantissa


def test_fp16_on_cpu_is_refused_clearly() -> None:
    with pytest.raises(DeviceError, match=r"^fp16 is not supported on CPU; use --precision fp32 or bf16$"):
        resolve_precision("fp16", CPU)


def test_precision_and_device_choices() -> None:
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("BF16", CPU) == "bf16"
    assert resolve_device("cpu") == CPU
    with pytest.raises(DeviceError, match="fp64"):
        resolve_precision("fp64", CPU)
    with pytest.raises(DeviceError, match="not one of"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_requested_but_absent(spec: str) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available.*--device cpu"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_auto_device_without_gpu_is_cpu() -> None:
    assert resolve_device("auto").type in ("cpu", "mps")


# --- out of memory -------------------------------------------------------------------------------------


class RunsOutAbove(nn.Module):
    """Raises the device's out-of-memory error for windows above `limit` pixels; records the others."""

    def __init__(self, limit: int, error: type[BaseException] | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.error = error
        self.succeeded: list[tuple[int, ...]] = []
        self.failed = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] * x.shape[-1] > self.limit:
            self.failed += 1
            if self.error is None:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            raise self.error("MPS backend out of memory (simulated)")
        out = NET(x)
        self.succeeded.append(tuple(x.shape))
        return out


@pytest.mark.parametrize("error", [None, RuntimeError])
def test_out_of_memory_halves_the_tile_and_matches_whole(error: type[BaseException] | None) -> None:
    image = torch.rand(3, 70, 66, generator=torch.Generator().manual_seed(4))
    overlap = NET.min_overlap
    model = RunsOutAbove(limit=(32 + 2 * (overlap + overlap // 2)) ** 2, error=error)
    stats = TileStats()
    calls: list[tuple[int, int]] = []
    result = _run(model, image, stats=stats, progress=lambda done, total: calls.append((done, total)))
    assert (result - _whole(image)).abs().max().item() <= TOLERANCE
    assert stats.oom_splits >= 1 and model.failed >= 1
    # no tile pasted twice, none lost: one paste per successful forward; progress (this model has no convs
    # of its own: one unit per planned tile) keeps the total planned before the first forward and ends there
    assert stats.tiles_pasted == len(model.succeeded)
    assert calls[0] == (0, 1) and calls[-1] == (1, 1) and {total for _, total in calls} == {1}
    # after the first failure, later tiles start at the smaller size (no repeated failures per tile)
    assert model.failed <= 2


def test_out_of_memory_below_minimum_tile_is_a_clear_error() -> None:
    model = RunsOutAbove(limit=4)
    with pytest.raises(DeviceError, match="out of cpu memory even for a .* tile"):
        _run(model, torch.rand(3, 40, 40), replace(PLAN, tile=40))


def test_other_errors_are_not_taken_for_out_of_memory() -> None:
    def broken(x: Tensor) -> Tensor:
        raise RuntimeError("Given groups=1, weight of size [8, 3, 3, 3], expected input to have 3 channels")

    with pytest.raises(RuntimeError, match="expected input"):
        _run(broken, torch.rand(3, 8, 8))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_wrong_scale_model_is_a_model_error_not_a_usage_error() -> None:
    with pytest.raises(ModelOutputError, match=r"returned 16x16 for a 8x8 input, not x3") as raised:
        upscale_tensor(NET, torch.rand(3, 8, 8), EnginePlan(scale=3, device=CPU, precision="fp32"))
    assert raised.value.exit_code == CheckpointError.exit_code and not isinstance(raised.value, UsageError)
    assert "--" not in str(raised.value)  # the engine names no CLI flag


@pytest.mark.parametrize(("field", "bad"), [("scale", 0), ("scale", -2), ("scale", 1.5), ("tile", -1), ("overlap", -2),
                                            ("size_multiple", 0), ("batch", 0), ("batch", -1)])
def test_a_plan_refuses_bad_fields_as_programming_errors_in_engine_words(field: str, bad: float) -> None:
    with pytest.raises(ValueError, match=field) as raised:
        replace(PLAN, **{field: bad})  # type: ignore[arg-type]  # some are ill-typed on purpose (scale 1.5)
    assert "--" not in str(raised.value) and not isinstance(raised.value, UsageError)


# --- progress, auto tile, channels_last ----------------------------------------------------------------


def test_progress_counts_conv_layers_of_every_tile() -> None:
    calls: list[tuple[int, int]] = []
    _run(NET, torch.rand(3, 30, 20), replace(PLAN, tile=10), progress=lambda done, total: calls.append((done, total)))
    convs = sum(isinstance(m, nn.Conv2d) for m in NET.modules())  # each runs once per forward in EDSR
    assert calls == [(i, 6 * convs) for i in range(0, 6 * convs + 1)]  # 6 tiles of equal area


def test_auto_tile_uses_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    image = torch.rand(3, 60, 60)
    cost = estimate_cost_per_pixel(NET, in_channels=3, size_multiple=1, device=CPU)
    assert cost > 8 * 4 * 4  # at least the 8-feature activations, 4x for the x2 tail
    budget = int(cost * 40 * 40)
    monkeypatch.setattr("sr_cli.engine.upscale.memory_budget", lambda device: budget)
    stats = TileStats()
    result = _run(NET, image, replace(PLAN, tile=None, cost_per_pixel=cost), stats=stats)
    rows = axis_plan(60, stats.tile_size, NET.min_overlap + feather_radius(NET.min_overlap), 1)
    assert 0 < stats.tile_size < 60 and rows.largest ** 2 <= 40 * 40  # its windows fit the budget
    assert (result - _whole(image)).abs().max().item() <= TOLERANCE
    assert auto_tile_size(60, 60, cost_per_pixel=cost, overlap=4, views=1, size_multiple=1, budget_bytes=10**12) == 0
    ensemble_tile = auto_tile_size(600, 600, cost_per_pixel=cost, overlap=4, views=8, size_multiple=2,
                                   budget_bytes=budget * 100)
    plain_tile = auto_tile_size(600, 600, cost_per_pixel=cost, overlap=4, views=1, size_multiple=2,
                                budget_bytes=budget * 100)
    assert ensemble_tile < plain_tile and ensemble_tile % 2 == 0


def test_channels_last_gives_the_same_result() -> None:
    image = torch.rand(3, 19, 23)
    net = _edsr().to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stubs
    result = _run(net, image, replace(PLAN, tile=8, channels_last=True))
    assert (result - _run(NET, image, replace(PLAN, tile=8))).abs().max().item() <= 1e-5


def test_input_stays_on_host_and_is_not_modified() -> None:
    image = torch.rand(3, 9, 9)
    before = image.clone()
    result = _run(NET, image, replace(PLAN, tile=4))
    assert torch.equal(image, before) and result.device.type == "cpu" and result.dtype == torch.float32

"""torch.compile behind a flag (engine/compiled.py): a compile failure never fails a run, out-of-memory is
not taken for one, and the layout choice (channels_last) per device kind follows the family descriptors.

No real compile runs here (inductor on the CPU needs a C++ toolchain and tens of seconds): the compiler is
injected. bench/gpu.py measures real torch.compile on a GPU.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_cli
from torch import Tensor, nn

from sr_cli.api import UpscaleOptions, Upscaler, uses_channels_last
from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.families import FAMILIES
from sr_cli.archs.runtime import SRNet, build_module
from sr_cli.engine import EnginePlan, TileStats, compiled, upscale_tensor
from sr_cli.engine.compiled import CompiledForward
from sr_cli.errors import UsageError

CPU = torch.device("cpu")


def _net() -> SRNet:
    torch.manual_seed(11)
    return SRNet(build_module("edsr", EDSRParams(n_resblocks=1, n_feats=8, scale=2))).eval()


NET = _net()
X = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(12))


def _fails_to_compile(module: nn.Module) -> Callable[[Tensor], Tensor]:
    raise RuntimeError("InductorError: CppCompileError: C++ compile error\n(long log)")


def _fails_at_first_call(module: nn.Module) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:  # dynamo compiles lazily: failures surface at the first call
        raise AssertionError("BackendCompilerFailed: backend='inductor' raised ...")

    return run


@pytest.mark.parametrize("compiler", [_fails_to_compile, _fails_at_first_call])
def test_a_compile_failure_falls_back_to_eager_for_good(compiler: Callable[[nn.Module], Callable[[Tensor], Tensor]]) -> None:
    attempts: list[int] = []

    def counting(module: nn.Module) -> Callable[[Tensor], Tensor]:
        attempts.append(1)
        return compiler(module)

    forward = CompiledForward(NET, counting)
    with torch.inference_mode():
        assert torch.equal(forward(X), NET(X))
        assert torch.equal(forward(X), NET(X))
    assert len(attempts) == 1  # not retried on every tile
    assert forward.fallback_reason is not None and not forward.compiled
    assert "\n" not in forward.fallback_reason and forward.fallback_reason.split(":")[0] in ("RuntimeError",
                                                                                             "AssertionError")


def test_a_working_compiler_is_used() -> None:
    calls: list[tuple[int, ...]] = []

    def tracing(module: nn.Module) -> Callable[[Tensor], Tensor]:
        def run(x: Tensor) -> Tensor:
            calls.append(tuple(x.shape))
            return module(x)

        return run

    forward = CompiledForward(NET, tracing)
    with torch.inference_mode():
        assert torch.equal(forward(X), NET(X))
    assert calls == [tuple(X.shape)] and forward.compiled and forward.fallback_reason is None


def test_out_of_memory_in_the_compiled_graph_is_not_a_compile_failure() -> None:
    """It reaches the tile pipeline (which halves the tile) and compiling stays on."""
    def oom_above(module: nn.Module) -> Callable[[Tensor], Tensor]:
        def run(x: Tensor) -> Tensor:
            if x.shape[-2] * x.shape[-1] >= 64 * 64:  # the whole image does not fit, its quarters do
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
            return module(x)

        return run

    forward = CompiledForward(NET, oom_above)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(13))
    stats = TileStats()
    plan = EnginePlan(scale=2, device=CPU, precision="fp32", overlap=NET.min_overlap)  # the whole image
    result = upscale_tensor(forward, image, plan, stats=stats)
    whole = upscale_tensor(NET, image, plan)
    assert stats.oom_splits >= 1 and forward.fallback_reason is None and forward.compiled
    assert (result - whole).abs().max().item() < 1e-5  # min_overlap is EDSR's exact radius


def test_upscaler_with_compile_survives_a_failing_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "default_compiler", _fails_to_compile)
    image = (np.random.default_rng(14).random((14, 12, 3)) * 255).astype(np.uint8)
    plain = Upscaler(_net(), name="edsr", output_scale=2, options=UpscaleOptions(device="cpu"))
    asked = Upscaler(_net(), name="edsr", output_scale=2, options=UpscaleOptions(device="cpu", compile=True))
    assert asked.compile_fallback_reason is None  # compiled lazily: nothing tried yet
    assert np.array_equal(asked.upscale(image), plain.upscale(image))
    assert asked.compile_fallback_reason is not None and "CppCompileError" in asked.compile_fallback_reason
    assert plain.compile_fallback_reason is None


def test_compile_is_refused_beside_exact() -> None:
    with pytest.raises(UsageError, match="exact runs use the eager network"):
        UpscaleOptions(exact=True, compile=True)
    with pytest.raises(UsageError, match="compile must be True or False"):
        UpscaleOptions(compile="yes")  # type: ignore[arg-type]


# --- channels_last per device kind ---------------------------------------------------------------------


@pytest.mark.parametrize("descriptor", FAMILIES, ids=lambda d: d.name)
def test_channels_last_follows_the_descriptor_per_device_kind(descriptor: object) -> None:
    from sr_cli.archs.descriptor import FamilyDescriptor

    assert isinstance(descriptor, FamilyDescriptor)
    cuda, mps = torch.device("cuda", 0), torch.device("mps")  # device objects only: nothing runs on them
    assert uses_channels_last(descriptor, CPU, exact=False) is descriptor.channels_last_on_cpu
    assert uses_channels_last(descriptor, cuda, exact=False) is descriptor.channels_last_on_gpu
    assert uses_channels_last(descriptor, mps, exact=False) is False
    for device in (CPU, cuda, mps):  # exact runs measure the plain NCHW arithmetic everywhere
        assert uses_channels_last(descriptor, device, exact=True) is False


def test_cli_compile_flag_warns_once_and_writes_the_same_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from sr_cli.archs.edsr import EDSR
    from sr_cli.imageio import read_image, write_image

    torch.manual_seed(0)
    weights = tmp_path / "tiny_edsr.pt"
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), weights)
    pixels = (np.random.default_rng(15).random((9, 7, 3)) * 255).astype(np.uint8)
    write_image(tmp_path / "a.png", pixels)
    write_image(tmp_path / "b.png", pixels[::-1].copy())
    base = [str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--weights", str(weights), "--scale", "2",
            "--device", "cpu"]
    plain = run_cli(capsys, ["upscale", *base, "-o", str(tmp_path / "plain")])
    assert plain.returncode == 0, plain.stderr
    monkeypatch.setattr(compiled, "default_compiler", _fails_to_compile)
    asked = run_cli(capsys, ["upscale", *base, "-o", str(tmp_path / "compiled"), "--compile"])
    assert asked.returncode == 0, asked.stderr
    assert asked.stderr.count("--compile: torch.compile failed, the model ran without it (RuntimeError") == 1
    assert "--compile" not in plain.stderr
    for name in ("a_x2_tiny_edsr.png", "b_x2_tiny_edsr.png"):
        assert np.array_equal(read_image(tmp_path / "compiled" / name).pixels,
                              read_image(tmp_path / "plain" / name).pixels)

"""The Python API: dtypes and channels round-trip, grayscale, alpha without halos, 16-bit precision,
outscale sizes, VDSR's Y pipeline, PIL and tensor entry points, and the errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sr_cli.api import UpscaleOptions, Upscaler, fill_transparent, load_model
from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.runtime import SRNet, build_module, to_srnets
from sr_cli.errors import (
    DeviceError,
    InputError,
    ModelOutputError,
    ScaleMismatchError,
    UnknownModelError,
    UsageError,
)

CPU_WHOLE = UpscaleOptions(tile=0, device="cpu")


def _edsr(scale: int = 2) -> SRNet:
    torch.manual_seed(11)
    return SRNet(build_module("edsr", EDSRParams(n_resblocks=1, n_feats=8, scale=scale))).eval()


NET = _edsr()
UP = Upscaler(NET, name="tiny-edsr", output_scale=2, options=CPU_WHOLE)


def direct(rgb01: np.ndarray) -> np.ndarray:
    """Independent reference: one forward pass of the net on HxWx3 float, clipped."""
    with torch.inference_mode():
        out = NET(torch.from_numpy(rgb01.transpose(2, 0, 1).copy()).float()[None])[0]
    return out.clamp(0, 1).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def vdsr_checkpoint(vdsr_weights):  # noqa: ANN001, ANN201
    """The real VDSR file, read once for the module (reading it is the slow part)."""
    from sr_cli import zoo

    return zoo.load(vdsr_weights, 2).checkpoint


@pytest.fixture
def cached_zoo(vdsr_weights, vdsr_checkpoint, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """The zoo's loader answers the VDSR file from the already read checkpoint (the scale choice still runs);
    records the scales it was asked for."""
    from sr_cli import zoo

    real_checkpoint = zoo.ModelSession.checkpoint
    calls: list[float] = []

    def checkpoint(self, model, scale=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if str(model) != str(vdsr_weights):
            return real_checkpoint(self, model, scale, **kwargs)
        calls.append(scale)
        return None, vdsr_checkpoint

    monkeypatch.setattr(zoo.ModelSession, "checkpoint", checkpoint)
    return calls


def test_uint8_rgb_matches_a_direct_forward() -> None:
    image = np.random.default_rng(0).integers(0, 256, (13, 11, 3), dtype=np.uint8)
    result = UP.upscale(image)
    assert result.dtype == np.uint8 and result.shape == (26, 22, 3)
    expected = np.rint(direct(image / 255.0) * 255)
    assert np.abs(result.astype(int) - expected).max() <= 1


def test_uint16_has_no_8_bit_bottleneck() -> None:
    image = np.random.default_rng(1).integers(0, 65536, (9, 10, 3), dtype=np.uint16)
    result = UP.upscale(image)
    assert result.dtype == np.uint16 and result.shape == (18, 20, 3)
    expected = np.rint(direct(image / 65535.0) * 65535)
    assert np.abs(result.astype(np.int64) - expected).max() <= 2  # float32 rounding, never 257 (8-bit)
    assert (result % 257 != 0).mean() > 0.9  # values between the 8-bit levels exist


def test_float32_in_float32_out_and_range_checked() -> None:
    image = np.random.default_rng(2).random((8, 8, 3), dtype=np.float32)
    result = UP.upscale(image)
    assert result.dtype == np.float32 and result.min() >= 0 and result.max() <= 1
    assert np.abs(result - direct(image)).max() < 1e-5
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        UP.upscale(image * 2)
    with pytest.raises(InputError, match="NaN"):
        UP.upscale(np.full((4, 4, 3), np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="dtype"):
        UP.upscale(np.zeros((4, 4, 3), dtype=np.int8))
    with pytest.raises(InputError, match="C in 1..4"):
        UP.upscale(np.zeros((4, 4, 5), dtype=np.uint8))


@pytest.mark.parametrize("shape", [(10, 7), (10, 7, 1)])
def test_grayscale_stays_single_channel(shape: tuple[int, ...]) -> None:
    gray = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    result = UP.upscale(gray)
    assert result.shape == (20, 14) + shape[2:]
    rgb = np.repeat(gray.reshape(10, 7, 1), 3, axis=2)
    luma = direct(rgb / 255.0) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(result.reshape(20, 14).astype(int) - np.rint(luma * 255)).max() <= 1


def _sprite(hidden: float) -> np.ndarray:
    """An opaque red disk with a hard-edged alpha; `hidden` is the colour under the transparent pixels."""
    yy, xx = np.mgrid[0:24, 0:24]
    inside = (yy - 12) ** 2 + (xx - 11) ** 2 < 7**2
    rgba = np.zeros((24, 24, 4), dtype=np.float32)
    rgba[..., :3] = hidden
    rgba[inside, :3] = (0.9, 0.1, 0.1)
    rgba[..., 3] = inside
    return rgba


def test_alpha_hidden_colour_never_leaks_into_visible_pixels() -> None:
    on_black, on_white = UP.upscale(_sprite(0.0)), UP.upscale(_sprite(1.0))
    assert on_black.shape == (48, 48, 4)
    # the visible result does not depend on what was hidden under alpha == 0: no dark or light halo
    visible = on_black[..., 3] > 0
    assert np.array_equal(on_black[visible], on_white[visible])
    # and the colour at the edge is the disk's colour continued, not a mix with black
    edge = visible & (on_black[..., 3] < 0.9)
    assert on_black[edge, 0].mean() > 0.5


def test_alpha_is_upscaled_by_the_model_and_stays_in_range() -> None:
    sprite = _sprite(0.0)
    alpha = UP.upscale(sprite)[..., 3]
    with torch.inference_mode():  # reference: the net on the alpha replicated to RGB, channel mean, clipped
        replicated = torch.from_numpy(sprite[..., 3]).expand(1, 3, 24, 24).contiguous()
        expected = NET(replicated)[0].mean(dim=0).clamp(0, 1).numpy()
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert np.abs(alpha - expected).max() < 1e-5


def test_hard_edged_alpha_real_vdsr_beats_bicubic(vdsr_weights, cached_zoo) -> None:  # noqa: ANN001
    """The measurement behind upscaling alpha with the model (docs/api.md): a binary disk at 2x resolution,
    MATLAB-bicubic downscaled, upscaled back as an RGBA image's alpha."""
    from sr_cli.resize import imresize

    yy, xx = np.mgrid[0:48, 0:48]
    hr_alpha = ((yy - 23) ** 2 + (xx - 25) ** 2 < 15**2).astype(np.float32)
    lr_alpha = np.clip(imresize(hr_alpha, 0.5), 0, 1)
    rgba = np.dstack([np.full((24, 24, 3), 0.5, np.float32), lr_alpha])
    upscaler = load_model(vdsr_weights, 2, options=CPU_WHOLE)
    alpha = upscaler.upscale(rgba)[..., 3]
    bicubic = np.clip(imresize(lr_alpha, 2.0), 0, 1)

    def error(a: np.ndarray) -> float:
        return float(np.mean((a - hr_alpha) ** 2))

    assert error(alpha) < 0.5 * error(bicubic)  # at least 3 dB better
    assert alpha[23, 25] > 0.98 and alpha[2, 2] < 0.02  # hard inside and outside


def test_fill_transparent_keeps_visible_and_continues_colour() -> None:
    rgb = np.zeros((16, 16, 3), dtype=np.float32)
    rgb[:, :8] = (0.2, 0.6, 0.4)
    alpha = np.zeros((16, 16), dtype=np.float32)
    alpha[:, :8] = 1.0
    filled = fill_transparent(rgb, alpha)
    assert np.array_equal(filled[:, :8], rgb[:, :8])
    assert np.allclose(filled[:, 8:], (0.2, 0.6, 0.4), atol=1e-5)  # the only visible colour, spread


def test_la_gray_alpha_round_trips_channels() -> None:
    la = np.dstack([np.full((6, 5), 128, np.uint8), np.full((6, 5), 255, np.uint8)])
    result = UP.upscale(la)
    assert result.shape == (12, 10, 2) and result.dtype == np.uint8


@pytest.mark.parametrize(("outscale", "size"), [(3.0, (27, 21)), (3.5, (32, 25)), (1.5, (14, 11))])
def test_outscale_gives_the_exact_size(outscale: float, size: tuple[int, int]) -> None:
    upscaler = Upscaler(NET, name="tiny", output_scale=outscale, options=CPU_WHOLE)
    result = upscaler.upscale(np.random.default_rng(4).integers(0, 256, (9, 7, 3), dtype=np.uint8))
    assert result.shape[:2] == size == upscaler.output_size(9, 7)  # H * outscale rounded half up


def test_mdsr_one_model_three_scales() -> None:
    nets = to_srnets(build_module("mdsr", MDSRParams(n_resblocks=1, n_feats=8)))
    image = np.zeros((5, 6, 3), np.uint8)
    for scale, net in nets.items():
        upscaler = Upscaler(net, name="mdsr", output_scale=scale, options=CPU_WHOLE)
        assert upscaler.model_scale == scale and upscaler.upscale(image).shape == (5 * scale, 6 * scale, 3)
    assert len({id(net.module) for net in nets.values()}) == 1


def test_pil_modes_round_trip() -> None:
    rng = np.random.default_rng(5)
    for mode, array in [("RGB", rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)),
                        ("RGBA", rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)),
                        ("L", rng.integers(0, 256, (6, 7), dtype=np.uint8)),
                        ("LA", rng.integers(0, 256, (6, 7, 2), dtype=np.uint8))]:
        result = UP.upscale_pil(Image.fromarray(array))
        assert Image.fromarray(array).mode == mode
        assert result.mode == mode and result.size == (14, 12)
    sixteen = Image.fromarray(rng.integers(0, 65536, (6, 7), dtype=np.uint16))
    assert sixteen.mode.startswith("I;16")
    result16 = UP.upscale_pil(sixteen)
    assert result16.mode == "I;16" and result16.size == (14, 12)
    assert UP.upscale_pil(Image.new("P", (7, 6))).mode == "RGB"


def test_tensor_entry_point_single_and_batch() -> None:
    batch = torch.rand(2, 3, 5, 6)
    calls: list[tuple[int, int]] = []
    result = UP.upscale_tensor(batch, progress=lambda done, total: calls.append((done, total)))
    assert result.shape == (2, 3, 10, 12) and result.dtype == torch.float32
    expected = direct(batch[1].permute(1, 2, 0).numpy())
    assert np.abs(result[1].permute(1, 2, 0).numpy() - expected).max() < 1e-5
    assert torch.equal(UP.upscale_tensor(batch[0]), result[0])
    assert calls[0] == (0, calls[-1][1]) and calls[-1][0] == calls[-1][1] > 2  # both images, in conv layers
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_vdsr_pipeline_beats_bicubic_on_set5(vdsr_weights, datasets_dir, cached_zoo) -> None:  # noqa: ANN001
    from sr_cli.color import rgb_to_y
    from sr_cli.resize import imresize

    hr = np.asarray(Image.open(datasets_dir / "set5" / "HR" / "butterfly.png").convert("RGB"))[80:152, 60:132]
    lr = imresize(hr, 0.5)
    upscaler = load_model(vdsr_weights, 2, options=UpscaleOptions(tile=0, device="cpu"))
    assert (upscaler.family, upscaler.model_scale, upscaler.output_scale) == ("vdsr", 1, 2.0)
    result = upscaler.upscale(lr)
    bicubic = imresize(lr, 2.0)
    assert result.shape == hr.shape and result.dtype == np.uint8

    def y_psnr(image: np.ndarray) -> float:
        diff = (rgb_to_y(image / 255.0) - rgb_to_y(hr / 255.0))[6:-6, 6:-6] * 255
        return float(10 * np.log10(255**2 / np.mean(diff**2)))

    assert y_psnr(result) > y_psnr(bicubic) + 1.0
    # fractional scales: VDSR serves any factor above 1
    fractional = load_model(vdsr_weights, 2.5, options=UpscaleOptions(tile=0, device="cpu"))
    assert fractional.upscale(lr[:10, :9]).shape == (25, 23, 3)  # 22.5 rounds half up


def test_load_model_outscale_picks_a_served_scale(vdsr_weights, cached_zoo) -> None:  # noqa: ANN001
    upscaler = load_model(vdsr_weights, outscale=1.7, options=CPU_WHOLE)
    assert upscaler.output_scale == 1.7 and upscaler.family == "vdsr"
    assert cached_zoo == [1.7]  # VDSR serves 1.7 itself: no other scale tried


def test_load_model_errors(vdsr_weights, cached_zoo) -> None:  # noqa: ANN001
    with pytest.raises(UsageError, match="--scale .* or --outscale"):
        load_model(vdsr_weights)
    with pytest.raises(DeviceError, match="fp16 is not supported on CPU"):
        load_model(vdsr_weights, 2, options=UpscaleOptions(device="cpu", precision="fp16"))
    with pytest.raises(UsageError, match="--tile"):
        load_model(vdsr_weights, 2, options=UpscaleOptions(tile=-1))
    with pytest.raises(UsageError, match="--scale"):
        load_model(vdsr_weights, -2)
    with pytest.raises(ScaleMismatchError, match="above 1"):
        load_model(vdsr_weights, 1)
    with pytest.raises(UsageError, match="--alpha needs a model with a PSNR/GAN pair"):
        load_model(vdsr_weights, 2, alpha=0.5)
    with pytest.raises(UnknownModelError):
        load_model("no-such-model", 4)


def test_cause10_a_tile_below_the_engine_minimum_is_refused_with_the_reason() -> None:
    """Issue 11: --tile 1 was accepted and ran a 64x48 image for over 100 s."""
    from sr_cli.engine.memory import MIN_TILE

    for tile in (1, MIN_TILE - 1):
        with pytest.raises(UsageError, match=f"--tile {tile}: tiles under {MIN_TILE} px"):
            Upscaler(_edsr(2), name="x2", output_scale=2, options=UpscaleOptions(tile=tile, device="cpu"))
    smallest = Upscaler(_edsr(2), name="x2", output_scale=2, options=UpscaleOptions(tile=MIN_TILE, device="cpu"))
    assert smallest.upscale(np.zeros((20, 18, 3), np.uint8)).shape == (40, 36, 3)


def test_cause16_outscale_below_1_for_vdsr_is_an_option_error(vdsr_weights, cached_zoo) -> None:  # noqa: ANN001
    """Issue 11: `--outscale 0.5` with VDSR said "pass a larger --scale" with exit 5 (a checkpoint problem)."""
    with pytest.raises(UsageError, match="--outscale 0.5: .* above 1") as caught:
        load_model(vdsr_weights, outscale=0.5, options=CPU_WHOLE)
    assert caught.value.exit_code == 2


def test_upscaler_refuses_a_wrong_scale_model() -> None:
    wrong = Upscaler(_edsr(3), name="x3", output_scale=3, options=CPU_WHOLE)
    assert wrong.upscale(np.zeros((4, 4, 3), np.uint8)).shape == (12, 12, 3)


def _fake_zoo(monkeypatch: pytest.MonkeyPatch, nets: dict[str, SRNet]) -> list[tuple[str, float]]:
    """The zoo's loader answering from `nets` by manifest name (real manifest entries and scale choice,
    tiny random networks, no download); records the (model, scale) it was asked for."""
    from types import SimpleNamespace

    from sr_cli import zoo

    calls: list[tuple[str, float]] = []

    def checkpoint(self, model, scale=None, **_):
        calls.append((str(model), scale))
        entry = zoo.resolve(str(model), scale)  # the real name/scale rules
        scales = list(entry.scales) if entry.scales is not None else None
        detected = SimpleNamespace(scales=scales, output_scale=None)
        return entry, SimpleNamespace(module=nets[entry.name].module, detected=detected, path=entry.filename,
                                      sha256=entry.sha256)

    monkeypatch.setattr(zoo.ModelSession, "checkpoint", checkpoint)
    return calls


def test_outscale_runs_the_smallest_served_scale_above_then_resizes(monkeypatch: pytest.MonkeyPatch) -> None:
    x4 = _edsr(4)
    calls = _fake_zoo(monkeypatch, {"edsr-baseline-x4": x4, "edsr-baseline-x2": NET})
    upscaler = load_model("edsr-baseline-x4", outscale=3.5, options=CPU_WHOLE)
    assert (upscaler.model_scale, upscaler.output_scale) == (4, 3.5)
    assert [scale for _, scale in calls] == [3.5, 4]  # 3.5 itself, then the smallest served scale above
    assert upscaler.upscale(np.zeros((10, 7, 3), np.uint8)).shape == (35, 25, 3)
    calls.clear()
    shrunk = load_model("edsr-baseline-x2", outscale=2.5, options=CPU_WHOLE)  # only x2: the largest below
    assert shrunk.model_scale == 2 and [scale for _, scale in calls] == [2.5, 3, 4, 8, 2]


def test_alpha_blends_the_psnr_and_gan_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_cli.archs.rrdb import RRDBParams

    def tiny(seed: int) -> SRNet:
        torch.manual_seed(seed)
        return SRNet(build_module("rrdb", RRDBParams(num_feat=4, num_block=1, num_grow_ch=2, scale=4))).eval()

    gan, psnr = tiny(1), tiny(2)
    _fake_zoo(monkeypatch, {"esrgan": gan, "esrgan-psnr": psnr})
    upscaler = load_model("esrgan", 4, alpha=0.25, options=CPU_WHOLE)
    blended = upscaler._net.module.state_dict()
    for key, value in psnr.module.state_dict().items():
        assert torch.allclose(blended[key], 0.75 * value + 0.25 * gan.module.state_dict()[key], atol=1e-6), key
    assert torch.equal(gan.module.state_dict()["conv_first.weight"], tiny(1).module.state_dict()["conv_first.weight"])
    with pytest.raises(UsageError, match="outside"):
        load_model("esrgan", 4, alpha=1.5, options=CPU_WHOLE)
    _fake_zoo(monkeypatch, {"edsr-baseline-x2": NET})
    with pytest.raises(UsageError, match="--alpha needs a model with a PSNR/GAN pair"):
        load_model("edsr-baseline-x2", 2, alpha=0.5, options=CPU_WHOLE)


@pytest.mark.parametrize("bad", [dict(tile=-1), dict(tile=2.5), dict(tile=True), dict(overlap=-1), dict(overlap="8")])
def test_options_are_checked_once_when_made(bad: dict[str, object]) -> None:
    flag = "--" + next(iter(bad))
    with pytest.raises(UsageError, match=flag):
        UpscaleOptions(**bad)  # type: ignore[arg-type]


def test_device_and_precision_are_resolved_once_per_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import sr_cli.api as api

    calls: list[str] = []
    real = api.resolve_precision

    def counting(requested: str, device: torch.device) -> str:
        calls.append(requested)
        return real(requested, device)

    monkeypatch.setattr(api, "resolve_precision", counting)
    options = UpscaleOptions(tile=0, device="cpu", precision="auto")
    first = Upscaler(_edsr(), name="a", output_scale=2, options=options)
    second = Upscaler(_edsr(), name="b", output_scale=2, options=options)
    assert calls == ["auto"] and first.precision == second.precision == "fp32"


def test_a_model_that_breaks_its_scale_is_a_checkpoint_error_naming_it() -> None:
    net = _edsr(2)
    net.scale = net.net_scale = 3  # a checkpoint whose recorded scale disagrees with its x2 upsampler
    upscaler = Upscaler(net, name="broken.pt", output_scale=3, options=CPU_WHOLE)
    with pytest.raises(ModelOutputError, match=r"^broken\.pt: the model returned 16x16 for a 8x8 input, not x3"):
        upscaler.upscale(np.zeros((8, 8, 3), dtype=np.uint8))

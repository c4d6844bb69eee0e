"""sr eval: protocols on tiny synthetic sets, checked against computations written out here."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.data.benchmarks import Dataset, resolve_dataset
from sr_cli.errors import DatasetError, InputError, OutputError, UsageError
from sr_cli.evaluate import EvalOptions, evaluate, model_label
from sr_cli.resize import imresize


def smooth_image(rng: np.random.Generator, height: int, width: int, channels: int = 3) -> np.ndarray:
    """A photo-like test image: a low-resolution random field upsampled, plus mild noise."""
    coarse = rng.random((height // 6 + 2, width // 6 + 2, channels)) * 255
    big = imresize(coarse, output_shape=(height, width))
    noisy = big + rng.normal(0, 4, big.shape)
    image = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    return image[..., 0] if channels == 1 else image


def y_matlab_uint8(rgb: np.ndarray) -> np.ndarray:
    levels = rgb.astype(np.float64)
    return np.floor(16 + (65.481 * levels[..., 0] + 128.553 * levels[..., 1] + 24.966 * levels[..., 2]) / 255 + 0.5)


def psnr_ref(a: np.ndarray, b: np.ndarray, border: int) -> float:
    crop = (slice(border, -border), slice(border, -border))
    mse = np.mean((a[crop].astype(np.float64) - b[crop].astype(np.float64)) ** 2)
    return 10 * math.log10(255**2 / mse)


@pytest.fixture()
def hr_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    folder = tmp_path / "mine"
    folder.mkdir()
    Image.fromarray(smooth_image(rng, 50, 38)).save(folder / "a.png")
    Image.fromarray(smooth_image(rng, 45, 52)).save(folder / "b.png")
    Image.fromarray(smooth_image(rng, 40, 40, channels=1)).save(folder / "gray.png")
    return folder


def test_bicubic_paper_protocol_is_the_srcnn_matlab_recipe(hr_folder: Path) -> None:
    dataset = resolve_dataset(str(hr_folder), scales=(3,))
    result = evaluate(dataset, "bicubic", 3)
    expected = []
    for name in ("a", "b", "gray"):
        hr = np.asarray(Image.open(hr_folder / f"{name}.png"))
        hr = hr[: hr.shape[0] // 3 * 3, : hr.shape[1] // 3 * 3]
        y = y_matlab_uint8(hr) if hr.ndim == 3 else hr.astype(np.float64)
        up = imresize(imresize(y / 255, 1 / 3), 3.0)
        expected.append(psnr_ref(y, np.clip(np.floor(up * 255 + 0.5), 0, 255), 3))
    assert [s.name for s in result.per_image] == ["a", "b", "gray"]
    np.testing.assert_allclose([s.psnr for s in result.per_image], expected, atol=1e-9)
    assert result.psnr == pytest.approx(np.mean(expected), abs=1e-9)
    assert result.label == "Bicubic" and result.n_images == 3 and result.published_psnr is None


def test_rgb_lr_bicubic_scores_the_8bit_imresize_of_the_lr(hr_folder: Path) -> None:
    dataset = resolve_dataset(str(hr_folder), scales=(2,))
    result = evaluate(dataset, "bicubic", 2, EvalOptions(protocol="rgb-lr"))
    hr = np.asarray(Image.open(hr_folder / "a.png"))[:50, :38]
    lr = imresize(hr, 0.5)  # made by the downscaler: the folder has no LR
    sr = imresize(lr, 2.0)
    assert result.per_image[0].psnr == pytest.approx(psnr_ref(y_matlab_uint8(sr), y_matlab_uint8(hr), 2), abs=1e-9)


def test_edsr_pytorch_and_basicsr_use_unrounded_y_and_rgb_uses_scale_plus_6(hr_folder: Path) -> None:
    dataset = resolve_dataset(str(hr_folder), scales=(2,))
    hr = np.asarray(Image.open(hr_folder / "b.png"))[:44, :52].astype(np.float64)
    sr = imresize(imresize(hr.astype(np.uint8), 0.5), 2.0).astype(np.float64)
    edsr_y = lambda im: im @ (np.array([65.738, 129.057, 25.064]) / 256)  # noqa: E731
    basicsr_y = lambda im: 16 + im @ np.array([65.481, 128.553, 24.966]) / 255  # noqa: E731
    got = evaluate(dataset, "bicubic", 2, EvalOptions(protocol="edsr-pytorch")).per_image[1].psnr
    assert got == pytest.approx(psnr_ref(edsr_y(sr), edsr_y(hr), 2), abs=1e-9)
    got = evaluate(dataset, "bicubic", 2, EvalOptions(protocol="basicsr")).per_image[1].psnr
    assert got == pytest.approx(psnr_ref(basicsr_y(sr), basicsr_y(hr), 2), abs=1e-9)
    got = evaluate(dataset, "bicubic", 2, EvalOptions(protocol="basicsr", rgb=True)).per_image[1].psnr
    assert got == pytest.approx(psnr_ref(sr, hr, 8), abs=1e-9)
    got = evaluate(dataset, "bicubic", 2, EvalOptions(protocol="basicsr", rgb=True, crop=1)).per_image[1].psnr
    assert got == pytest.approx(psnr_ref(sr, hr, 1), abs=1e-9)


def test_rgb_model_runs_on_the_lr_and_is_scored_on_rounded_y(hr_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).eval()
    weights = tmp_path / "tiny_edsr_x2.pt"
    torch.save(module.state_dict(), weights)
    dataset = resolve_dataset(str(hr_folder), scales=(2,))
    result = evaluate(dataset, str(weights), 2)
    hr = np.asarray(Image.open(hr_folder / "a.png"))[:50, :38]
    lr = imresize(hr, 0.5)
    with torch.no_grad():  # EDSR works on 0..255 (rgb_range 255)
        out = module(torch.from_numpy(lr.transpose(2, 0, 1).copy()).float()[None])[0].numpy().transpose(1, 2, 0)
    sr = np.floor(np.clip(out, 0, 255) + 0.5)  # the same as clamp to [0,1], *255, round
    expected = psnr_ref(y_matlab_uint8(sr), y_matlab_uint8(hr), 2)
    assert result.per_image[0].psnr == pytest.approx(expected, abs=0.02)  # float32 network, 8-bit rounding ties
    assert result.label == "tiny_edsr_x2"
    gray = result.per_image[2]
    assert math.isfinite(gray.psnr) and 0 < gray.ssim <= 1


def test_save_dir_writes_outputs_and_json_record(hr_folder: Path, tmp_path: Path) -> None:
    dataset = resolve_dataset(str(hr_folder), scales=(2,))
    save = tmp_path / "out"
    result = evaluate(dataset, "bicubic", 2, EvalOptions(save_dir=save))
    written = sorted(p.name for p in (save / "mine" / "x2" / "Bicubic").iterdir())
    assert written == ["a.png", "b.png", "gray.png"]
    assert not list(save.rglob("*.tmp"))
    record = result.to_record()
    for key in ("dataset", "model", "scale", "protocol", "ensemble", "psnr", "ssim", "n_images", "published_psnr", "published_ssim"):
        assert key in record
    assert not any(isinstance(value, (list, dict)) for value in record.values())  # flat: one JSON line per row
    json.dumps(record)
    images = result.image_records()
    assert [r["image"] for r in images] == ["a", "b", "gray"] and record["image"] is None
    assert [r["psnr"] for r in images] == [s.psnr for s in result.per_image]


def test_save_dir_never_overwrites_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "x2" / "Bicubic"
    root.mkdir(parents=True)
    Image.fromarray(smooth_image(rng, 24, 24)).save(root / "img.png")
    dataset = Dataset(key="custom", label=".", hr_dir=root, lr_root=None)
    before = (root / "img.png").read_bytes()
    with pytest.raises(OutputError, match="input"):
        evaluate(dataset, "bicubic", 2, EvalOptions(save_dir=tmp_path, protocol="rgb-lr"))
    assert (root / "img.png").read_bytes() == before


def test_lr_size_mismatch_names_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    (tmp_path / "set" / "HR").mkdir(parents=True)
    (tmp_path / "set" / "LR_bicubic" / "X2").mkdir(parents=True)
    Image.fromarray(smooth_image(rng, 30, 30)).save(tmp_path / "set" / "HR" / "pic.png")
    Image.fromarray(smooth_image(rng, 14, 15)).save(tmp_path / "set" / "LR_bicubic" / "X2" / "pic.png")
    dataset = resolve_dataset(str(tmp_path / "set"), scales=(2,))
    with pytest.raises(DatasetError, match="pic.png"):
        evaluate(dataset, "bicubic", 2, EvalOptions(protocol="rgb-lr"))


def test_bad_options() -> None:
    with pytest.raises(UsageError):
        EvalOptions(protocol="matlab")
    with pytest.raises(UsageError):
        EvalOptions(crop=-1)
    with pytest.raises(DatasetError):
        resolve_dataset("/no/such/folder", scales=(2,))


def test_ensemble_is_refused_for_bicubic(hr_folder: Path) -> None:
    with pytest.raises(UsageError):
        evaluate(resolve_dataset(str(hr_folder), scales=(2,)), "bicubic", 2, EvalOptions(ensemble=True))


def test_labels() -> None:
    assert model_label("edsr-x2", "edsr", ensemble=True) == "EDSR+"
    assert model_label("edsr", "edsr", ensemble=False) == "EDSR"
    assert model_label("edsr-baseline-x2", "edsr", ensemble=False) == "edsr-baseline-x2"
    assert model_label("/w/model_epoch_50.pth", "vdsr", ensemble=True) == "VDSR+"
    assert model_label("mdsr", "mdsr", ensemble=False) == "MDSR"


def test_missing_set_without_download_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Set14"):
        resolve_dataset("set14", scales=(2,), data_dir=tmp_path, download_missing=False)


def test_psnr_inf_survives_json(hr_folder: Path) -> None:
    from sr_cli.evaluate import EvalResult, ImageScore

    result = EvalResult(dataset="x", dataset_label="x", model="m", label="m", scale=2, protocol="paper", ensemble=False,
                        psnr=math.inf, ssim=1.0, n_images=1, per_image=(ImageScore("a", math.inf, 1.0),),
                        published_psnr=None, published_ssim=None, published_source=None)
    assert json.loads(json.dumps(result.to_record()))["psnr"] == "inf"
    assert json.loads(json.dumps(result.image_records()[0]))["psnr"] == "inf"
    with pytest.raises(InputError):
        from sr_cli.metrics import psnr

        psnr(np.zeros((4, 4)), np.zeros((5, 4)), border=0, name="x.png")


def test_published_lookup_prefers_the_weights_own_numbers_then_the_manifest() -> None:
    from sr_cli.data.benchmarks import Dataset
    from sr_cli.evaluate import _Model, _published
    from sr_cli.weights.manifest import Metric

    set5 = Dataset(key="set5", label="Set5", hr_dir=Path("."), lr_root=None)
    vdsr = _Model(arg="vdsr", family="vdsr", srnet=None, entry_name="vdsr")
    assert _published("VDSR", vdsr, set5, 2, EvalOptions()) == (37.65, None, "pytorch-vdsr-readme")
    assert _published("VDSR+", vdsr, set5, 2, EvalOptions(ensemble=True)) == (None, None, None)
    other = _Model(arg="my.pth", family="vdsr", srnet=None, entry_name=None)
    assert _published("VDSR", other, set5, 2, EvalOptions()) == (37.53, 0.9587, "edsr-paper-table3")
    rrdb = _Model(arg="esrgan-psnr", family="rrdb", srnet=None, entry_name="esrgan-psnr",
                  manifest_metrics=(Metric(dataset="Set5", scale=4, psnr=32.73, ssim=0.9011, source="ESRGAN paper"),))
    assert _published("esrgan-psnr", rrdb, set5, 4, EvalOptions()) == (32.73, 0.9011, "ESRGAN paper")
    assert _published("esrgan-psnr", rrdb, set5, 2, EvalOptions()) == (None, None, None)


def test_rgb_lr_scores_do_not_depend_on_free_memory(hr_folder: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import sr_cli.engine.upscale as engine_upscale
    from sr_cli.api import UpscaleOptions, Upscaler
    from sr_cli.archs.runtime import SRNet

    torch.manual_seed(0)
    module = EDSR(EDSRParams(n_resblocks=2, n_feats=8, scale=2)).eval()
    weights = tmp_path / "tiny_edsr_x2.pt"
    torch.save(module.state_dict(), weights)
    dataset = resolve_dataset(str(hr_folder), scales=(2,))
    options = EvalOptions(protocol="rgb-lr", device="cpu")
    plenty = evaluate(dataset, str(weights), 2, options)
    # A machine with almost no free memory: an automatic tile would now cut every image into pieces...
    monkeypatch.setattr(engine_upscale, "memory_budget", lambda device: 64 * 1024)
    tiles: list[int] = []
    auto = Upscaler(SRNet(module), name="auto", output_scale=2, options=UpscaleOptions(device="cpu"))
    lr = imresize(np.asarray(Image.open(hr_folder / "a.png"))[:50, :38], 0.5)
    auto.upscale(lr, progress=lambda done, total: tiles.append(total))
    assert tiles[-1] > 1
    # ...but evaluation runs every image whole (EDSR tiles agree with the whole image to float rounding, so
    # the scores alone could not tell; count the tiles the engine pasted instead).
    import sr_cli.api as api

    pasted: list[int] = []

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        stats = kwargs["stats"]  # the api's, one per image (its report of what ran): count this pass's tiles
        assert isinstance(stats, engine_upscale.TileStats)
        before = stats.tiles_pasted
        result = engine_upscale.upscale_tensor(*args, **kwargs)  # type: ignore[arg-type]
        pasted.append(stats.tiles_pasted - before)
        return result

    monkeypatch.setattr(api, "upscale_tensor", counting)
    scarce = evaluate(dataset, str(weights), 2, options)
    assert pasted and set(pasted) == {1}
    assert [(s.psnr, s.ssim) for s in scarce.per_image] == [(s.psnr, s.ssim) for s in plenty.per_image]


def _odd_sized_folder(tmp_path: Path) -> Path:
    """HR images whose x2 LR is odd-sized (37x41, 23x30): RRDB x2 needs multiples of 2, so they are padded."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.fromarray(smooth_image(rng, 74, 82)).save(folder / "a.png")
    Image.fromarray(smooth_image(rng, 46, 60)).save(folder / "b.png")
    return folder


@pytest.mark.parametrize("ensemble", [False, True])
def test_paper_protocol_scores_the_networks_own_whole_image_output(tmp_path: Path, ensemble: bool) -> None:
    """`sr eval` runs networks through sr_cli.api (UpscaleOptions(exact=True), Upscaler.network_output). Its
    scores must be those of the network's own output on the whole image, bit for bit: fp32, reflect-padded
    to the size multiple and cropped back, the 8-view ensemble, clamped and rounded half up -- the recipe
    sr eval ran by hand before it went through the api (computed here from the engine's primitives)."""
    from sr_cli.archs.rrdb import RRDBNet, RRDBParams
    from sr_cli.archs.runtime import SRNet
    from sr_cli.data.benchmarks import load_pair
    from sr_cli.engine.ensemble import ensemble_forward
    from sr_cli.engine.tiling import pad_to_multiple
    from sr_cli.metrics import psnr, ssim, y_channel

    torch.manual_seed(0)
    module = RRDBNet(RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2)).eval()
    weights = tmp_path / "tiny_rrdb_x2.pt"
    torch.save(module.state_dict(), weights)
    net = SRNet(module)
    dataset = resolve_dataset(str(_odd_sized_folder(tmp_path)), scales=(2,))
    result = evaluate(dataset, str(weights), 2, EvalOptions(ensemble=ensemble, device="cpu"))
    for image, score in zip(dataset.images(2), result.per_image, strict=True):
        pair = load_pair(image, 2)
        height, width = pair.lr.shape[:2]
        assert height % 2 == 1  # the padding is exercised
        x = pad_to_multiple(torch.from_numpy(pair.lr.transpose(2, 0, 1).copy()).float().div_(255.0), 2)[None]
        with torch.inference_mode():
            out = (ensemble_forward(net, x) if ensemble else net(x))[0, :, :2 * height, :2 * width]
        sr = torch.floor(out.clamp(0.0, 1.0) * 255.0 + 0.5).permute(1, 2, 0).to(torch.uint8).numpy()
        a, b = y_channel(sr, rounded=True), y_channel(pair.hr, rounded=True)
        assert (score.psnr, score.ssim) == (psnr(a, b, border=2, name="x"), ssim(a, b, border=2, name="x"))


def test_exact_options_run_fp32_on_the_whole_image_in_nchw() -> None:
    from sr_cli.api import UpscaleOptions, Upscaler
    from sr_cli.archs.runtime import SRNet

    with pytest.raises(UsageError, match="--tile 64"):
        UpscaleOptions(exact=True, tile=64)
    with pytest.raises(UsageError, match="--precision bf16"):
        UpscaleOptions(exact=True, precision="bf16")
    assert UpscaleOptions(exact=True, device="cpu").runtime.precision == "fp32"
    torch.manual_seed(0)
    net = SRNet(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).eval())
    kernel = next(p for p in net.parameters() if p.ndim == 4 and p.shape[1] > 3 and p.shape[-1] == 3)
    Upscaler(net, name="fast", output_scale=2, options=UpscaleOptions(device="cpu"))  # EDSR: channels_last on CPU
    assert not kernel.is_contiguous()
    exact = Upscaler(net, name="exact", output_scale=2, options=UpscaleOptions(exact=True, device="cpu"))
    assert kernel.is_contiguous()  # the shared module is back in the layout the published figures used
    x = torch.rand(3, 9, 7)
    with torch.inference_mode():
        direct = net(x[None])[0]
    assert torch.equal(exact.network_output(x), direct)  # float, unclamped, unrounded
    with pytest.raises(InputError, match="exact: network_output expects a float \\[3,H,W\\]"):
        exact.network_output(torch.rand(1, 9, 7))


def test_a_run_counts_every_image_of_every_row_from_the_start(hr_folder: Path) -> None:
    from sr_cli.evaluate import evaluate_jobs, image_count, plan_jobs

    dataset = resolve_dataset(str(hr_folder), scales=(2, 3))
    jobs = plan_jobs([dataset], ["bicubic"], [2, 3])
    assert [(job.scale, job.model) for job in jobs] == [(2, "bicubic"), (3, "bicubic")]
    assert image_count(jobs) == 6
    calls: list[tuple[float, int]] = []
    started: list[int] = []
    results = list(evaluate_jobs(jobs, progress=lambda done, total: calls.append((done, total)),
                                 on_start=lambda job: started.append(job.scale)))
    assert [r.scale for r in results] == [2, 3] and started == [2, 3]
    assert {total for _, total in calls} == {6}  # the total is known before the first image
    assert [done for done, _ in calls] == sorted(done for done, _ in calls) and calls[-1] == (6, 6)


@pytest.mark.parametrize("protocol", ["paper", "rgb-lr"])
def test_a_networks_progress_moves_within_each_image(hr_folder: Path, tmp_path: Path, protocol: str) -> None:
    """A slow model's bar moves during an image (the engine's units as a fraction of it), never past it
    before the image is scored, and never backwards."""
    torch.manual_seed(0)
    weights = tmp_path / "tiny_edsr_x2.pt"
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).eval().state_dict(), weights)
    dataset = resolve_dataset(str(hr_folder), scales=(2,))
    calls: list[tuple[float, int]] = []
    evaluate(dataset, str(weights), 2, EvalOptions(protocol=protocol), lambda done, total: calls.append((done, total)))
    done = [value for value, _ in calls]
    count = len(dataset.images(2))
    assert done == sorted(done) and done[-1] == count and {total for _, total in calls} == {count}
    for index in range(count):
        within = [value for value in done if index < value < index + 1]
        assert within, f"no progress inside image {index}: {done}"

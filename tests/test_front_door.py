"""The design card's used-by lines, as written, on an empty cache with the network off (issue 10).

    sr upscale photo.png --model edsr --scale 4      sr upscale dir/ --ensemble
    sr eval --dataset set5                          sr blend --alpha 0.8

Each test runs the real command in-process (SR_OFFLINE=1, the empty caches of conftest) and checks what
it wrote against the Python API with the same model. Published files that cannot be here (no network)
are synthesised in their official layout and given to a copy of the manifest that names their sha256:
every tensor of such a file is a slice of one shared storage, so a 43 M-parameter EDSR costs a few MB.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import CliResult, run_cli
from zoo_support import ManifestNaming, allow_shared_storage_files, official_layout

from sr_cli import zoo
from sr_cli.archs.runtime import build_module
from sr_cli.imageio import read_image, write_image

RNG = np.random.default_rng(10)
REPO_ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, args)


def photo(path: Path, height: int = 12, width: int = 10) -> np.ndarray:
    pixels = RNG.integers(0, 256, (height, width, 3)).astype(np.uint8)
    write_image(path, pixels)
    return pixels


@pytest.fixture(autouse=True)
def shared_storage_files_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    allow_shared_storage_files(monkeypatch)


@pytest.fixture
def manifest_naming(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ManifestNaming:
    return ManifestNaming(tmp_path, monkeypatch)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")


# --- sr upscale photo.png --model edsr --scale 4 -----------------------------------------------------


def test_upscale_model_edsr_scale_4_offline_from_the_cache(tmp_path: Path, manifest_naming,  # noqa: ANN001
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    entry = zoo.resolve("edsr", 4)
    assert entry.name == "edsr-x4" and entry.num_params == 43_089_947  # the paper's EDSR: 32 blocks, 256 features
    manifest_naming({"edsr-x4": official_layout("edsr", dict(entry.hyperparameters), tmp_path / entry.filename)})
    pixels = photo(tmp_path / "photo.png", 6, 7)
    monkeypatch.chdir(tmp_path)

    code, _, err = run(["upscale", "photo.png", "--model", "edsr", "--scale", "4", "--tile", "0"], capsys)

    assert code == 0, err
    written = read_image(tmp_path / "photo_x4_edsr.png").pixels
    assert written.shape == (24, 28, 3)
    from sr_cli.api import UpscaleOptions, load_model

    expected = load_model("edsr", 4, options=UpscaleOptions(tile=0)).upscale(pixels)
    np.testing.assert_array_equal(written, expected)
    assert "done 1, skipped 0, failed 0" in err


# --- --scale defaults to the only scale served ------------------------------------------------------


def test_a_weights_file_with_one_scale_needs_no_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/train.md's `sr upscale photo.png --weights runs/x/model.safetensors`: the file says its scale."""
    from sr_cli.api import UpscaleOptions, load_model
    from sr_cli.archs.edsr import EDSRParams
    from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata

    params = EDSRParams(n_resblocks=1, n_feats=8, scale=3)
    module = build_module("edsr", params)
    weights = tmp_path / "runs" / "x" / "model.safetensors"
    weights.parent.mkdir(parents=True)
    save_safetensors(weights, module.state_dict(), sr_metadata("edsr", params))
    pixels = photo(tmp_path / "photo.png", 7, 9)

    code, _, err = run(["upscale", str(tmp_path / "photo.png"), "--weights", str(weights), "--tile", "0"], capsys)

    assert code == 0, err
    written = read_image(tmp_path / "photo_x3_model.png").pixels
    assert written.shape == (21, 27, 3)
    np.testing.assert_array_equal(written, load_model(weights, options=UpscaleOptions(tile=0)).upscale(pixels))
    np.testing.assert_array_equal(written, load_model(weights, 3, options=UpscaleOptions(tile=0)).upscale(pixels))


@pytest.mark.parametrize("model,message", [
    (["--model", "mdsr"], "error: mdsr serves x2, x3, x4; pass --scale 2, 3 or 4"),
    (["--model", "mdsr-baseline"], "error: mdsr-baseline serves x2, x3, x4; pass --scale 2, 3 or 4"),
    (["--model", "vdsr"], "error: vdsr serves any scale above 1; pass --scale (e.g. --scale 2) or --outscale"),
    (["--model", "edsr"], "error: 'edsr' is ambiguous: it means one of edsr-x2 (x2), edsr-x3 (x3), edsr-x4 (x4); "
                          "pass --scale or the full name"),
])
def test_a_model_serving_several_scales_needs_scale_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                model: list[str], message: str) -> None:
    photo(tmp_path / "photo.png")
    code, out, err = run(["upscale", str(tmp_path / "photo.png"), *model], capsys)
    assert code == 2 and out == ""
    assert err.strip() == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_a_multi_scale_file_lists_its_scales(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = official_layout("mdsr", {"n_resblocks": 1, "n_feats": 8, "scales": (2, 3, 4)}, tmp_path / "m.pt")
    photo(tmp_path / "photo.png")
    code, _, err = run(["upscale", str(tmp_path / "photo.png"), "--weights", str(weights)], capsys)
    assert code == 2 and err.strip() == f"error: {weights} serves x2, x3, x4; pass --scale 2, 3 or 4"
    code, _, err = run(["upscale", str(tmp_path / "photo.png"), "--weights", str(weights), "--scale", "3",
                        "--tile", "0"], capsys)
    assert code == 0, err
    assert read_image(tmp_path / "photo_x3_m.png").pixels.shape == (36, 30, 3)


# --- sr blend --alpha 0.8 ----------------------------------------------------------------------------


def rrdb_pair(tmp_path: Path) -> tuple[Path, Path]:
    """A small RRDB and a fine-tuned partner (a small perturbation), in BasicSR's params_ema layout."""
    from sr_cli.archs.rrdb import RRDBParams

    generator = torch.Generator().manual_seed(1)
    module = build_module("rrdb", RRDBParams(num_feat=8, num_block=1, num_grow_ch=4))
    psnr_state = {key: 0.1 * torch.randn(value.shape, generator=generator) for key, value in module.state_dict().items()}
    gan_state = {key: value + 0.002 * torch.randn(value.shape, generator=generator) for key, value in psnr_state.items()}
    psnr, gan = tmp_path / "psnr_x4.pth", tmp_path / "gan_x4.pth"
    torch.save({"params_ema": psnr_state}, psnr)
    torch.save({"params_ema": gan_state}, gan)
    return psnr, gan


def test_blend_alpha_writes_gan_alpha_file_here_and_never_over_one(tmp_path: Path, manifest_naming,  # noqa: ANN001
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_cli.weights.interpolate import interpolate_state_dicts
    from sr_cli.weights.reading import read_checkpoint

    psnr, gan = rrdb_pair(tmp_path)
    small = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 4}
    # the default pair, esrgan-psnr -> esrgan, stands for these small files
    manifest_naming({"esrgan-psnr": psnr, "esrgan": gan}, {"hyperparameters": small, "num_params": None})
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")

    code, out, err = run(["blend", "--alpha", "0.8"], capsys)

    assert code == 0, err
    written = tmp_path / "work" / "esrgan-alpha0.8.safetensors"
    assert out.strip() == "esrgan-alpha0.8.safetensors"
    blended = read_checkpoint(written)
    expected = interpolate_state_dicts(read_checkpoint(psnr).tensors, read_checkpoint(gan).tensors, 0.8)
    for key, value in expected.items():
        torch.testing.assert_close(blended.tensors[key], value, rtol=0, atol=1e-6)
    before = written.read_bytes()

    code, _, err = run(["blend", "--alpha", "0.8"], capsys)
    assert code == 2 and "esrgan-alpha0.8.safetensors exists; pass --overwrite" in err
    assert written.read_bytes() == before
    code, _, err = run(["blend", "--alpha", "0.8", "--overwrite"], capsys)
    assert code == 0, err


def test_blend_offline_and_not_cached_says_what_to_download(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["blend", "--alpha", "0.8"], capsys)
    assert code == 6 and out == ""
    assert err.strip() == ("error: esrgan-psnr and esrgan are not in the cache and the network is off; run "
                           "`sr weights download esrgan-psnr esrgan` where there is network, or pass local files "
                           "with --psnr FILE --gan FILE")
    assert list(tmp_path.iterdir()) == []


def test_blend_local_files_default_name_is_the_gan_file_stem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    psnr, gan = rrdb_pair(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["blend", "--alpha", "0.25", "--psnr", str(psnr), "--gan", str(gan)], capsys)
    assert code == 0, err
    assert out.strip() == "gan_x4-alpha0.25.safetensors" and (tmp_path / "gan_x4-alpha0.25.safetensors").is_file()
    code, _, err = run(["blend", "--sweep", "0,1", "--psnr", str(psnr), "--gan", str(gan)], capsys)
    assert code == 2 and "give -o IMAGE" in err


# --- the default model: sr upscale photo.png, sr upscale dir/ --ensemble, sr eval --dataset set5 -------


@pytest.fixture
def default_model() -> str:
    """The default model, which must run from the copy inside the package: the cache is empty, the network off."""
    (status,) = [item for item in zoo.catalogue() if item.entry.name == zoo.resolve(zoo.DEFAULT_MODEL).name]
    assert status.cached is None and status.bundled is not None and status.bundled.is_file()
    return status.entry.name


def test_upscale_photo_uses_the_default_model(tmp_path: Path, default_model: str, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_cli.api import UpscaleOptions, load_model

    pixels = photo(tmp_path / "photo.png", 8, 6)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["upscale", "photo.png", "--tile", "0"], capsys)
    assert code == 0, err
    written = read_image(tmp_path / f"photo_x4_{default_model}.png").pixels
    assert written.shape == (32, 24, 3)
    np.testing.assert_array_equal(written, load_model(default_model, options=UpscaleOptions(tile=0)).upscale(pixels))


def test_upscale_folder_with_ensemble_uses_the_default_model(tmp_path: Path, default_model: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from sr_cli.api import UpscaleOptions, load_model

    folder = tmp_path / "dir"
    folder.mkdir()
    inputs = {name: photo(folder / f"{name}.png", 8, 6 + index) for index, name in enumerate(("a", "b"))}
    code, out, err = run(["upscale", str(folder), "--ensemble", "--tile", "0", "--json"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [record["status"] for record in records] == ["done", "done"]
    reference = load_model(default_model, options=UpscaleOptions(tile=0, ensemble=True))
    plain = load_model(default_model, options=UpscaleOptions(tile=0))
    for name, pixels in inputs.items():
        written = read_image(folder / f"{name}_x4_{default_model}.png").pixels
        assert written.shape == (4 * pixels.shape[0], 4 * pixels.shape[1], 3)
        np.testing.assert_array_equal(written, reference.upscale(pixels))
        assert not np.array_equal(written, plain.upscale(pixels)), "--ensemble made no difference"


def y_psnr(output: np.ndarray, hr: np.ndarray, border: int) -> float:
    """The paper protocol for RGB models, written here: BT.601 Y of uint8 RGB (rounded, as MATLAB's rgb2ycbcr
    on uint8 does), `border` pixels cropped."""
    def luma(rgb: np.ndarray) -> np.ndarray:
        rgb = rgb.astype(np.float64)
        return np.round(16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0)
    difference = (luma(output) - luma(hr))[border:-border, border:-border]
    return float(10.0 * np.log10(255.0 ** 2 / np.mean(difference ** 2)))


def test_eval_set5_without_model_is_the_default_beside_bicubic(tmp_path: Path, default_model: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`sr eval --dataset set5` with --data-dir (offline): two tiny images in the EDSR layout stand for Set5."""
    from sr_cli.api import UpscaleOptions, load_model

    hr_dir, lr_dir = tmp_path / "data" / "Set5" / "HR", tmp_path / "data" / "Set5" / "LR_bicubic" / "X4"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    pairs = {}
    for name in ("one", "two"):
        hr = photo(hr_dir / f"{name}.png", 24, 20)
        pairs[name] = (hr, photo(lr_dir / f"{name}.png", 6, 5))
    code, out, err = run(["eval", "--dataset", "set5", "--data-dir", str(tmp_path / "data"), "--json"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]  # JSON lines, one per row
    assert [(r["model"], r["scale"], r["n_images"]) for r in records] == [("Bicubic", 4, 2), (default_model, 4, 2)]
    # eval measures in the exact mode (fp32, whole image, NCHW): the same pixels as `sr upscale` up to the
    # rounding of its faster CPU layout (channels_last), so the reference runs in that mode too.
    upscaler = load_model(default_model, options=UpscaleOptions(exact=True))
    expected = np.mean([y_psnr(upscaler.upscale(lr), hr, 4) for hr, lr in pairs.values()])
    fast = load_model(default_model, options=UpscaleOptions(tile=0))  # what `sr upscale --tile 0` runs
    for _, lr in pairs.values():
        assert np.abs(fast.upscale(lr).astype(int) - upscaler.upscale(lr).astype(int)).max() <= 1
    assert records[1]["psnr"] == pytest.approx(expected, abs=1e-6)
    code, _, err = run(["eval", "--dataset", "set5", "--data-dir", str(tmp_path / "data"), "--scale", "2"], capsys)
    assert code == 2 and err.strip() == (f"error: the default model {default_model} serves x4 only, not x2; name a model "
                                         f"for those (the EDSR paper's rows: --model edsr --scale 2,3,4)")

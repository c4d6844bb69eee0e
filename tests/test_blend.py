"""`sr blend`: weights written with provenance, endpoints exact, layouts mix, bad pairs refused, sheets.

The "trained" models here are small EDSRs built by hand to upscale by nearest neighbour, so that what
a blend should output is known independently: a fine-tuned partner (small perturbation) blends into a
sensible image, a channel-permuted twin (the same function, unrelated weights) into a washed-out one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import CliResult, run_cli
from module_support import conv_at, zero_conv

from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.archs.rrdb import RRDBNet, RRDBParams
from sr_cli.archs.runtime import SRNet
from sr_cli.imageio import read_image
from sr_cli.weights.reading import read_checkpoint
from sr_cli.weights.safetensors_io import read_safetensors

FEATS = 8


def nearest_edsr(seed: int, permutation: list[int] | None = None, noise: float = 0.0) -> EDSR:
    """A 2-block x2 EDSR that upscales by nearest neighbour through features `permutation[0..2]`."""
    generator = torch.Generator().manual_seed(seed)
    model = EDSR(EDSRParams(n_resblocks=2, n_feats=FEATS, scale=2))
    carriers = permutation or [0, 1, 2]
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if "mean" not in name:
                tensor.copy_(0.01 * torch.randn(tensor.shape, generator=generator))
        zero_conv(model.body, -1)
        head, up, last = conv_at(model.head, 0), conv_at(model.tail, 0, 0), conv_at(model.tail, 1)
        for weight in (head.weight, up.weight, last.weight):
            weight.zero_()
        for colour, feature in enumerate(carriers):
            head.weight[feature, colour, 1, 1] = 1.0
            for sub in range(4):
                up.weight[feature * 4 + sub, feature, 1, 1] = 1.0
            last.weight[colour, feature, 1, 1] = 1.0
        if noise:
            for weight in (head.weight, up.weight, last.weight):
                weight.add_(noise * torch.randn(weight.shape, generator=generator))
    return model.eval()


def save(model: torch.nn.Module, path: Path, wrap: str | None = None) -> Path:
    state = model.state_dict()
    torch.save({wrap: state} if wrap else state, path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, args)


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path]:
    psnr = save(nearest_edsr(0), tmp_path / "psnr.pth")
    gan = save(nearest_edsr(0, noise=0.05), tmp_path / "gan.pth", wrap="params_ema")
    return psnr, gan


def test_blend_file_is_the_formula_with_provenance(pair: tuple[Path, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    psnr, gan = pair
    out = tmp_path / "blend.safetensors"
    code, stdout, _ = run(["blend", "--psnr", str(psnr), "--gan", str(gan), "--alpha", "0.3", "-o", str(out), "--json"], capsys)
    assert code == 0
    assert json.loads(stdout)["output"] == str(out)
    tensors, metadata = read_safetensors(out)
    a, b = torch.load(psnr, weights_only=True), torch.load(gan, weights_only=True)["params_ema"]
    assert set(tensors) == set(a)
    for key, value in tensors.items():
        assert torch.allclose(value.double(), 0.7 * a[key].double() + 0.3 * b[key].double(), atol=1e-6, rtol=0), key
    assert float(metadata["sr.alpha"]) == 0.3
    assert metadata["sr.family"] == "edsr"
    assert json.loads(metadata["sr.hyperparameters"])["n_feats"] == FEATS
    sources = json.loads(metadata["sr.sources"])
    assert [(s["role"], s["label"], s["sha256"]) for s in sources] == [
        ("psnr", str(psnr), sha256(psnr)), ("gan", str(gan), sha256(gan))]

    # the blend is an ordinary checkpoint for the rest of sr
    code, stdout, _ = run(["weights", "inspect", str(out), "--json"], capsys)
    assert code == 0
    inspected = json.loads(stdout)
    assert (inspected["family"], inspected["scales"]) == ("edsr", [2])


@pytest.mark.parametrize("alpha, index", [(0.0, 0), (1.0, 1)])
def test_endpoints_reproduced_bit_for_bit(pair: tuple[Path, Path], tmp_path: Path, alpha: float, index: int,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "end.safetensors"
    code, _, _ = run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "--alpha", str(alpha), "-o", str(out)], capsys)
    assert code == 0
    expected = read_checkpoint(pair[index]).tensors
    tensors, _ = read_safetensors(out)
    for key, value in tensors.items():
        assert torch.equal(value.view(torch.int32), expected[key].view(torch.int32)), key


def _to_2019_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BasicSR names -> ESRGAN 2019 names, written out independently of sr's converter."""
    renames = [("body.", "RRDB_trunk."), (".rdb", ".RDB"), ("conv_body.", "trunk_conv."), ("conv_up1.", "upconv1."),
               ("conv_up2.", "upconv2."), ("conv_hr.", "HRconv.")]
    converted = {}
    for key, value in state.items():
        for old, new in renames:
            if key.startswith(old) or (old.startswith(".") and old in key):
                key = key.replace(old, new, 1)
        converted[key] = value
    return converted


def test_layouts_mix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    params = RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    psnr_model = RRDBNet(params)
    gan_model = RRDBNet(params)
    gan_model.load_state_dict({k: v + 0.01 * torch.randn_like(v) for k, v in psnr_model.state_dict().items()})
    psnr_path = tmp_path / "RRDB_PSNR_x4.pth"
    torch.save(_to_2019_layout(psnr_model.state_dict()), psnr_path)
    gan_path = save(gan_model, tmp_path / "ESRGAN_basicsr.pth", wrap="params")
    out = tmp_path / "mixed.safetensors"
    code, _, err = run(["blend", "--psnr", str(psnr_path), "--gan", str(gan_path), "--alpha", "0.5", "-o", str(out)], capsys)
    assert code == 0, err
    tensors, metadata = read_safetensors(out)
    layouts = [s["layout"] for s in json.loads(metadata["sr.sources"])]
    assert layouts == ["esrgan-2019", "basicsr"]
    for key, value in tensors.items():
        expected = 0.5 * psnr_model.state_dict()[key] + 0.5 * gan_model.state_dict()[key]
        assert torch.allclose(value, expected, atol=1e-6), key


def test_incompatible_pairs_are_refused_with_the_differences(pair: tuple[Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    x3 = save(EDSR(EDSRParams(n_resblocks=2, n_feats=FEATS, scale=3)), tmp_path / "x3.pth")
    out = tmp_path / "never.safetensors"
    code, _, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(x3), "--alpha", "0.5", "-o", str(out)], capsys)
    assert code == 5
    assert "cannot be blended" in err and "tail.0.0.weight shape [32, 8, 3, 3] vs [72, 8, 3, 3]" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()

    rrdb = save(RRDBNet(RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2)), tmp_path / "rrdb.pth")
    code, _, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(rrdb), "--alpha", "0.5", "-o", str(out)], capsys)
    assert code == 5 and "one is edsr, the other rrdb" in err


def test_unrelated_models_that_blend_into_garbage_are_refused(pair: tuple[Path, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    twin = save(nearest_edsr(1, permutation=[5, 6, 7]), tmp_path / "twin.pth")
    # the twin computes the same function as the PSNR model: it is no worse a model, only unrelated
    x = torch.rand(1, 3, 12, 12)
    nets = [SRNet(nearest_edsr(0)), SRNet(nearest_edsr(1, permutation=[5, 6, 7]))]
    with torch.no_grad():
        assert torch.allclose(nets[0](x), nets[1](x), atol=0.05)
    out = tmp_path / "garbage.safetensors"
    code, _, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(twin), "--alpha", "0.5", "-o", str(out)], capsys)
    assert code == 5
    assert "degenerate image" in err
    assert not out.exists()


@pytest.mark.parametrize("alpha", ["-0.2", "1.5"])
def test_alpha_outside_unit_interval_is_refused(pair: tuple[Path, Path], tmp_path: Path, alpha: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "--alpha", alpha,
                        "-o", str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "outside [0, 1]" in err


def test_sweep_sheet_and_image_mode(pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photo)
    sheet_path = tmp_path / "sheet.png"
    code, stdout, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "--sweep", "0,0.5,1",
                             "--image", str(photo), "--crop", "4,6,20,16", "--zoom", "2", "-o", str(sheet_path),
                             "--json"], capsys)
    assert code == 0, err
    record = json.loads(stdout)
    assert (record["command"], record["status"], record["output"]) == ("blend", "done", str(sheet_path))
    sheet = read_image(sheet_path).pixels
    from sr_cli.api import load_model
    from sr_cli.imageio.sheet import contact_sheet

    # each panel: the crop upscaled by weights blended here, (1 - a) psnr + a gan, shown x2 by pixel repetition
    crop = np.asarray(Image.open(photo))[6:22, 4:24]
    a, b = torch.load(pair[0], weights_only=True), torch.load(pair[1], weights_only=True)["params_ema"]
    tiles = []
    for alpha, (x, y, w, h) in zip((0.0, 0.5, 1.0), record["boxes"], strict=True):
        blended = tmp_path / f"blend{alpha}.pth"
        torch.save({key: (1 - alpha) * a[key] + alpha * b[key] for key in a}, blended)
        tile = load_model(blended, 2).upscale(crop)
        tiles.append(tile)
        assert (w, h) == (80, 64)
        assert np.array_equal(sheet[y:y + h, x:x + w], np.repeat(np.repeat(tile, 2, axis=0), 2, axis=1))
    assert [box[1] for box in record["boxes"]] == [record["boxes"][0][1]] * 3  # one row, left to right
    assert [box[0] for box in record["boxes"]] == sorted(box[0] for box in record["boxes"])
    # the one sheet maker made it (labels and layout included)
    assert np.array_equal(sheet, contact_sheet(tiles, ["alpha 0", "alpha 0.5", "alpha 1"], zoom=2).pixels)

    # --mode image: the two models' outputs mixed, checked against the two outputs computed here
    out = tmp_path / "mixed.png"
    code, _, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "--mode", "image", "--alpha", "0.25",
                        "--image", str(photo), "-o", str(out)], capsys)
    assert code == 0, err
    ends = [load_model(p, 2).upscale(np.asarray(Image.open(photo))).astype(np.float64) for p in pair]
    expected = np.clip(np.rint(0.75 * ends[0] + 0.25 * ends[1]), 0, 255)
    assert np.array_equal(read_image(out).pixels, expected.astype(np.uint8))


def test_stdout_is_the_path_and_quiet_verbose_set_what_stderr_says(pair: tuple[Path, Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.safetensors"
    code, stdout, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "-a", "0.5", "-o", str(out), "-q"],
                            capsys)
    assert (code, stdout, err) == (0, f"{out}\n", "")
    code, stdout, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "-a", "0.5", "-o", str(out),
                             "--overwrite", "-v"], capsys)
    assert code == 0 and stdout == f"{out}\n"
    assert f"psnr: {pair[0]}" in err and sha256(pair[1])[:12] in err  # -v: which files the two sides were


def test_existing_output_is_not_replaced_without_overwrite(pair: tuple[Path, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keep.safetensors"
    out.write_bytes(b"precious")
    code, _, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "--alpha", "0.5", "-o", str(out)], capsys)
    assert code == 2 and "--overwrite" in err
    assert out.read_bytes() == b"precious"


def _permuted_vdsr(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The same VDSR function with its 64 hidden channels shuffled in every layer: unrelated weights."""
    hidden = len([k for k in state if k.startswith("residual_layer.")]) + 1
    perms = [torch.randperm(64, generator=torch.Generator().manual_seed(seed + i)) for i in range(hidden)]
    out = {"input.weight": state["input.weight"][perms[0]]}
    for i in range(hidden - 1):
        key = f"residual_layer.{i}.conv.weight"
        out[key] = state[key][perms[i + 1]][:, perms[i]]
    out["output.weight"] = state["output.weight"][:, perms[-1]]
    return out


def test_unrelated_vdsr_pair_is_refused_although_it_outputs_its_input(vdsr_weights: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from sr_cli.archs.vdsr import VDSRParams
    from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata

    real = read_checkpoint(vdsr_weights).tensors
    twin = tmp_path / "twin.safetensors"
    save_safetensors(twin, _permuted_vdsr(real, 0), sr_metadata("vdsr", VDSRParams()))
    out = tmp_path / "dead.safetensors"
    code, _, err = run(["blend", "--psnr", str(vdsr_weights), "--gan", str(twin), "--alpha", "0.5", "-o", str(out)], capsys)
    assert code == 5 and "degenerate image" in err
    assert not out.exists()


def test_rgba_sweep_keeps_colour_and_inspect_shows_the_provenance(pair: tuple[Path, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    rgba = np.zeros((24, 24, 4), dtype=np.uint8)
    rgba[:, :, 0], rgba[:, :, 3] = 200, 255  # opaque red
    photo = tmp_path / "red.png"
    Image.fromarray(rgba, "RGBA").save(photo)
    sheet_path = tmp_path / "sheet.png"
    code, _, err = run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "--sweep", "0,1", "--image", str(photo),
                        "-o", str(sheet_path)], capsys)
    assert code == 0, err
    sheet = read_image(sheet_path).pixels.astype(int)
    tile = sheet[8 + 22 + 10, 8 + 10]  # a pixel inside the first tile
    assert tile[0] > 150 and tile[1] < 60 and tile[2] < 60

    out = tmp_path / "b.safetensors"
    assert run(["blend", "--psnr", str(pair[0]), "--gan", str(pair[1]), "--alpha", "0.4", "-o", str(out)], capsys)[0] == 0
    code, stdout, _ = run(["weights", "inspect", str(out), "--json"], capsys)
    metadata = json.loads(stdout)["metadata"]
    assert metadata["sr.alpha"] == "0.4" and json.loads(metadata["sr.sources"])[0]["sha256"] == sha256(pair[0])


def test_usage_errors_come_before_any_download(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")  # a download attempt would fail with exit 6, not 2
    for args in (["--alpha", "0.5", "-o", str(tmp_path / "x.pth")],
                 ["--sweep", "0,1", "-o", str(tmp_path / "s.png")],
                 ["--alpha", "0.5", "--crop", "1,2,3,4", "-o", str(tmp_path / "x.safetensors")],
                 ["--alpha", "0.5", "--zoom", "2", "-o", str(tmp_path / "x.safetensors")],
                 ["--sweep", "0,1", "--image", str(tmp_path / "p.png"), "--zoom", "17", "-o", str(tmp_path / "s.png")]):
        code, _, err = run(["blend", *args], capsys)
        assert code == 2 and err.startswith("error: "), (args, err)


def test_upscale_alpha_without_a_pair_is_refused_before_any_download(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SR_OFFLINE", "1")  # vdsr is not cached: reaching the download would exit 6
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    code, _, err = run(["upscale", str(photo), "--model", "vdsr", "--scale", "2", "--alpha", "0.5"], capsys)
    assert code == 2 and "vdsr has none" in err

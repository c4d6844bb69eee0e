"""`sr upscale --denoise S`: Real-ESRGAN's denoise strength (inference_realesrgan.py's dni with weights
[S, 1 - S] on [realesr-general-x4v3, realesr-general-wdn-x4v3]).

The two published files cannot be downloaded here: both are synthesised in their official layout (an
SRVGGNetCompact state dict under "params", different seeds), named by a copy of the manifest and put in
the empty cache, so `--model realesr-general` resolves, fetches, checks and loads them as it would the
real ones. The blend is checked against the weighted sum computed here in float64 and run through a
module built here; S = 1 and S = 0 against the two plain models.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import CliResult, run_cli
from zoo_support import ManifestNaming, allow_shared_storage_files, official_layout

from sr_cli.api import UpscaleOptions, Upscaler, load_model
from sr_cli.archs.runtime import SRNet, build_module
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.errors import UsageError
from sr_cli.imageio import read_image, write_image

STRONG, WEAK = "realesr-general-x4v3", "realesr-general-wdn-x4v3"
WHOLE = UpscaleOptions(tile=0, device="cpu")
HYPERPARAMETERS: dict[str, object] = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 32, "upscale": 4}


@pytest.fixture
def general_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, torch.Tensor]]:
    """Both files in the cache under their manifest names, offline; returns their state dicts."""
    allow_shared_storage_files(monkeypatch)
    monkeypatch.setenv("SR_OFFLINE", "1")
    files = {STRONG: official_layout("srvgg", HYPERPARAMETERS, tmp_path / "realesr-general-x4v3.pth", wrap="params",
                                     seed=1),
             WEAK: official_layout("srvgg", HYPERPARAMETERS, tmp_path / "realesr-general-wdn-x4v3.pth", wrap="params",
                                   seed=2)}
    ManifestNaming(tmp_path, monkeypatch)(files)
    return {name: torch.load(path, weights_only=True)["params"] for name, path in files.items()}


def photo(path: Path) -> np.ndarray:
    pixels = np.random.default_rng(3).integers(0, 256, (12, 10, 3)).astype(np.uint8)
    write_image(path, pixels)
    return pixels


def independent(state: dict[str, torch.Tensor], pixels: np.ndarray) -> np.ndarray:
    """`state` in a module built here, run on the whole image."""
    module = build_module("srvgg", SRVGGParams())
    module.load_state_dict(state, strict=True)
    return Upscaler(SRNet(module.eval()), name="here", output_scale=4.0, options=WHOLE).upscale(pixels)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, args)


def test_denoise_is_the_weighted_sum_of_the_model_and_its_wdn_partner(
        general_pair: dict[str, dict[str, torch.Tensor]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pixels = photo(tmp_path / "photo.png")
    out = tmp_path / "dn.png"
    code, stdout, err = run(["upscale", str(tmp_path / "photo.png"), "--model", "realesr-general", "--denoise", "0.3",
                             "-o", str(out)], capsys)
    assert code == 0, err
    strong, weak = general_pair[STRONG], general_pair[WEAK]
    expected_state = {key: (0.3 * strong[key].double() + 0.7 * weak[key].double()).float() for key in strong}
    expected = independent(expected_state, pixels)
    written = read_image(out).pixels
    # float32 weights summed in another order: at most one grey level apart after rounding, almost always equal
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1
    assert np.mean(written == expected) > 0.99
    plain = [independent(state, pixels) for state in (strong, weak)]
    assert not np.array_equal(plain[0], plain[1])  # the two ends differ, so the blend could be wrong
    assert not np.array_equal(written, plain[0]) and not np.array_equal(written, plain[1])


@pytest.mark.parametrize("strength, end", [(1.0, STRONG), (0.0, WEAK)])
def test_denoise_endpoints_are_the_plain_models(general_pair: dict[str, dict[str, torch.Tensor]], strength: float,
                                                end: str) -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (9, 11, 3)).astype(np.uint8)
    blended = load_model("realesr-general", denoise=strength, options=WHOLE)
    assert blended.name == STRONG
    for key, value in blended._net.module.state_dict().items():
        assert torch.equal(value, general_pair[end][key]), key
    assert np.array_equal(blended.upscale(pixels), load_model(end, options=WHOLE).upscale(pixels))


def test_denoise_refusals_name_the_fix(general_pair: dict[str, dict[str, torch.Tensor]], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str], vdsr_weights: Path) -> None:
    photo(tmp_path / "photo.png")
    source = str(tmp_path / "photo.png")
    for args, message in (
            (["--model", "realesrgan-x4plus", "--denoise", "0.5"], "--denoise needs a model with a denoise partner"),
            (["--model", "realesr-general", "--denoise", "1.5"], "--denoise 1.5 is outside [0, 1]"),
            (["--model", "realesr-general", "--denoise", "nan"], "outside [0, 1]"),
            (["--model", "realesr-general", "--denoise", "0.5", "--alpha", "0.5"], "exclude each other"),
            (["--weights", str(vdsr_weights), "--scale", "2", "--denoise", "0.5"], "is a file")):
        code, stdout, err = run(["upscale", source, *args, "-o", str(tmp_path / "out.png")], capsys)
        assert code == 2 and message in err, (args, err)
        assert stdout == "" and not (tmp_path / "out.png").exists()
    with pytest.raises(UsageError, match="realesr-general-x4v3"):
        load_model("realesrgan-x4plus", denoise=0.5, options=WHOLE)

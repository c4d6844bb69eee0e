"""Losses, the VGG19 conv5_4 extractor (strict torchvision layout), the discriminator, --init."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sr_cli.archs.edsr import EDSR, EDSRParams
from sr_cli.errors import CheckpointError, UnsupportedCheckpointError
from sr_cli.train.discriminator import VGGStyleDiscriminator
from sr_cli.train.initialize import InitSource, initialise_from, read_init_source
from sr_cli.train.losses import ragan_discriminator_loss, ragan_generator_loss
from sr_cli.train.perceptual import load_vgg19_conv54
from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata


def test_ragan_losses_match_the_paper_formulas() -> None:
    torch.manual_seed(0)
    real, fake = torch.randn(6, 1), torch.randn(6, 1)

    def d_ra(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(a - b.mean())

    expected_d = -torch.log(d_ra(real, fake)).mean() - torch.log(1 - d_ra(fake, real)).mean()
    expected_g = -torch.log(1 - d_ra(real, fake)).mean() - torch.log(d_ra(fake, real)).mean()
    assert math.isclose(float(ragan_discriminator_loss(real, fake)), float(expected_d), rel_tol=1e-5)
    assert math.isclose(float(ragan_generator_loss(real, fake)), float(expected_g), rel_tol=1e-5)


def _torchvision_vgg19_state() -> dict[str, torch.Tensor]:
    """The key names/shapes of torchvision's vgg19 file, written out independently of our module."""
    widths = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    indices = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    state: dict[str, torch.Tensor] = {}
    previous = 3
    generator = torch.Generator().manual_seed(0)
    for index, width in zip(indices, widths, strict=True):
        state[f"features.{index}.weight"] = torch.randn(width, previous, 3, 3, generator=generator) * 0.05
        state[f"features.{index}.bias"] = torch.randn(width, generator=generator) * 0.05
        previous = width
    for index in (0, 3, 6):  # present in the file, unused by the loss (tiny here: 400 MB in the real one)
        state[f"classifier.{index}.weight"] = torch.zeros(1)
        state[f"classifier.{index}.bias"] = torch.zeros(1)
    return state


def test_vgg19_loads_torchvision_layout_strictly_and_stops_before_relu(tmp_path: Path) -> None:
    state = _torchvision_vgg19_state()
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    extractor = load_vgg19_conv54(path)
    x = torch.rand(1, 3, 32, 32)
    # Independent forward: normalise, then every conv (+ReLU, pools after 2,2,4,4 convs), no ReLU after the last.
    h = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    convs = [k[: -len(".weight")] for k in state if k.startswith("features") and k.endswith("weight")]
    pool_after = {"features.2", "features.7", "features.16", "features.25"}
    for n, name in enumerate(convs):
        h = F.conv2d(h, state[name + ".weight"], state[name + ".bias"], padding=1)
        if n < len(convs) - 1:
            h = F.relu(h)
        if name in pool_after:
            h = F.max_pool2d(h, 2)
    out = extractor(x)
    assert out.shape == (1, 512, 2, 2) and torch.allclose(out, h, atol=1e-5)
    assert (out < 0).any()  # pre-activation features keep their negative values
    state["features.35.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="not VGG19"):
        load_vgg19_conv54(path)


def test_discriminator_takes_128_patches() -> None:
    disc = VGGStyleDiscriminator()
    assert disc(torch.rand(2, 3, 128, 128)).shape == (2, 1)
    with pytest.raises(ValueError, match="128x128"):
        disc(torch.rand(1, 3, 96, 96))


def test_init_x2_to_x4_copies_everything_but_the_upsampler(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source_params = EDSRParams(n_resblocks=2, n_feats=8, scale=2)
    source = EDSR(source_params)
    path = tmp_path / "x2.safetensors"
    save_safetensors(path, source.state_dict(), sr_metadata("edsr", source_params))
    torch.manual_seed(2)
    target_params = EDSRParams(n_resblocks=2, n_feats=8, scale=4)
    target = EDSR(target_params)
    fresh_before = {k: v.clone() for k, v in target.state_dict().items()}
    report = initialise_from(target, target_params, read_init_source(str(path)))
    after = target.state_dict()
    upsampler = {k for k in after if k.startswith("tail.0.")}
    assert upsampler == {"tail.0.0.weight", "tail.0.0.bias", "tail.0.2.weight", "tail.0.2.bias"}
    for key, value in after.items():
        if key in upsampler:
            assert torch.equal(value, fresh_before[key])  # left as initialised
        else:
            assert torch.equal(value, source.state_dict()[key])  # copied (tail.1, the last conv, included)
    assert report.fresh == tuple(sorted(upsampler)) and report.copied == len(after) - 4
    assert "x2 -> x4" in report.describe() and "tail.0" in report.describe()


def test_init_is_strict_otherwise() -> None:
    source_params = EDSRParams(n_resblocks=2, n_feats=8, scale=2)
    source = InitSource("a.safetensors", "edsr", source_params, EDSR(source_params).state_dict())
    wider = EDSRParams(n_resblocks=2, n_feats=16, scale=2)
    with pytest.raises(UnsupportedCheckpointError, match="shape mismatches"):
        initialise_from(EDSR(wider), wider, source)
    deeper = EDSRParams(n_resblocks=3, n_feats=8, scale=2)
    with pytest.raises(UnsupportedCheckpointError, match="missing"):
        initialise_from(EDSR(deeper), deeper, source)
    from sr_cli.archs.vdsr import VDSR, VDSRParams

    with pytest.raises(CheckpointError, match="cannot initialise"):
        initialise_from(VDSR(VDSRParams(num_layers=3)), VDSRParams(num_layers=3), source)


def test_init_from_an_official_weights_file(vdsr_weights: Path) -> None:
    from sr_cli.archs.vdsr import VDSR, VDSRParams

    params = VDSRParams()
    target = VDSR(params)
    source = read_init_source(str(vdsr_weights))
    report = initialise_from(target, params, source)
    assert source.family == "vdsr" and report.fresh == () and report.copied == len(target.state_dict()) == 20
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict[key])

"""Architectures: exact parameter counts of the official files, forward conventions checked against
independent hand computations, SRNet value ranges, MDSR sharing, tile context."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from module_support import conv_at, zero_conv

from sr_cli.archs.edsr import DIV2K_RGB_MEAN, EDSR, EDSRParams
from sr_cli.archs.mdsr import MDSR, MDSRParams
from sr_cli.archs.rrdb import (
    RRDBNet,
    RRDBParams,
    convert_esrgan_2018,
    convert_esrgan_2019,
    to_esrgan_2018,
    to_esrgan_2019,
)
from sr_cli.archs.runtime import SRNet, build_module, receptive_radius, to_srnets
from sr_cli.archs.srvgg import SRVGGNetCompact, SRVGGParams
from sr_cli.archs.vdsr import VDSR, VDSRParams
from sr_cli.errors import UnsupportedCheckpointError

torch.manual_seed(0)


def _count(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in module.state_dict().values())


@pytest.mark.parametrize(
    ("listing", "family", "params"),
    [
        ("edsr_baseline_x2-1bc95232.pt.json", "edsr", EDSRParams(scale=2)),
        ("edsr_baseline_x3-abf2a44e.pt.json", "edsr", EDSRParams(scale=3)),
        ("edsr_baseline_x4-6b446fab.pt.json", "edsr", EDSRParams(scale=4)),
        ("edsr_x4-4f62e9ef.pt.json", "edsr", EDSRParams(n_resblocks=32, n_feats=256, res_scale=0.1, scale=4)),
        ("mdsr_baseline-a00cab12.pt.json", "mdsr", MDSRParams()),
        ("mdsr-4a78bedf.pt.json", "mdsr", MDSRParams(n_resblocks=80)),
        ("ESRGAN_SRx4_DF2KOST_official-ff704c30.pth.json", "rrdb", RRDBParams()),
        ("model_epoch_50.pth.json", "vdsr", VDSRParams()),
        ("realesr-general-x4v3.pth.json", "srvgg", SRVGGParams()),
        ("realesr-animevideov3.pth.json", "srvgg", SRVGGParams(num_conv=16)),
    ],
)
def test_state_dict_matches_official_listing(keys_dir: Path, listing: str, family: str, params: object) -> None:
    """Names and shapes equal the authors' module's state_dict (the listings were made from it)."""
    data = json.loads((keys_dir / listing).read_text())
    with torch.device("meta"):
        module = build_module(family, params)
    ours = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert ours == data["keys"]
    assert _count(module) == data["num_params"]


def test_meanshift_matches_edsr_pytorch_convention() -> None:
    """sub_mean: weight I, bias -255*mean; add_mean: +255*mean (EDSR-PyTorch common.MeanShift, std 1)."""
    model = EDSR(EDSRParams())
    mean = torch.tensor(DIV2K_RGB_MEAN)
    torch.testing.assert_close(model.sub_mean.bias, -255 * mean)
    torch.testing.assert_close(model.add_mean.bias, 255 * mean)
    torch.testing.assert_close(model.sub_mean.weight.view(3, 3), torch.eye(3))
    torch.testing.assert_close(model.sub_mean.bias, torch.tensor([-114.444, -111.4605, -103.02]))
    assert not any(p.requires_grad for p in model.sub_mean.parameters())
    x = torch.rand(1, 3, 4, 4) * 255
    torch.testing.assert_close(model.sub_mean(x), x - 255 * mean.view(1, 3, 1, 1))


def _edsr_by_hand(m: EDSR, x: torch.Tensor) -> torch.Tensor:
    """EDSR forward written with F.conv2d from the README's formulas, independent of the module code."""
    sd = m.state_dict()

    def conv(t: torch.Tensor, name: str) -> torch.Tensor:
        w = sd[f"{name}.weight"]
        return F.conv2d(t, w, sd[f"{name}.bias"], padding=w.shape[-1] // 2)

    x = conv(x, "sub_mean")
    x = conv(x, "head.0")
    res = x
    for i in range(m.params.n_resblocks):
        res = res + m.params.res_scale * conv(F.relu(conv(res, f"body.{i}.body.0")), f"body.{i}.body.2")
    res = conv(res, f"body.{m.params.n_resblocks}") + x
    if m.params.scale == 3:
        res = F.pixel_shuffle(conv(res, "tail.0.0"), 3)
    else:
        for j in range(int(m.params.scale).bit_length() - 1):
            res = F.pixel_shuffle(conv(res, f"tail.0.{2 * j}"), 2)
    return conv(conv(res, "tail.1"), "add_mean")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_forward_matches_hand_computation(scale: int) -> None:
    model = EDSR(EDSRParams(n_resblocks=2, n_feats=8, scale=scale, res_scale=0.1)).eval()
    x = torch.rand(1, 3, 5, 6) * 255
    with torch.no_grad():
        torch.testing.assert_close(model(x), _edsr_by_hand(model, x), rtol=1e-4, atol=1e-3)
        assert model(x).shape == (1, 3, 5 * scale, 6 * scale)


def test_edsr_srnet_converts_value_range() -> None:
    """With a zeroed last conv the net outputs exactly the add_mean bias: 255*mean in EDSR units, so the
    SRNet (0..1 view) must give the DIV2K mean itself."""
    model = EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).eval()
    with torch.no_grad():
        zero_conv(model.tail, 1)
    net = to_srnets(model)[2]
    out = net(torch.rand(2, 3, 4, 4))
    torch.testing.assert_close(out, torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1).expand(2, 3, 8, 8))
    # and the input reaches the model multiplied by 255: SRNet(x) == EDSR(255 x) / 255
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        conv_at(model.tail, 1).weight.normal_()
        torch.testing.assert_close(net(x), model(x * 255) / 255)


def test_mdsr_one_module_serves_each_scale_without_state() -> None:
    model = MDSR(MDSRParams(n_resblocks=1, n_feats=8)).eval()
    nets = to_srnets(model)
    assert sorted(nets) == [2, 3, 4]
    assert all(net.module is model for net in nets.values())
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        x4_before = nets[4](x)
        assert nets[2](x).shape == (1, 3, 12, 10) and nets[3](x).shape == (1, 3, 18, 15)
        torch.testing.assert_close(nets[4](x), x4_before)  # other scales in between changed nothing
        # the scale-specific parts are really used: changing upsample.1 (x3) alters only x3
        x2_before, x3_before = nets[2](x), nets[3](x)
        conv_at(model.upsample, 1, 0).weight.add_(1.0)
        torch.testing.assert_close(nets[2](x), x2_before)
        assert not torch.allclose(nets[3](x), x3_before)
    with pytest.raises(ValueError, match="x5"):
        model(x, 5)


def _rdb_by_hand(sd: Mapping[str, torch.Tensor], p: str, x: torch.Tensor) -> torch.Tensor:
    feats = [x]
    for j in range(1, 5):
        feats.append(F.leaky_relu(F.conv2d(torch.cat(feats, 1), sd[f"{p}.conv{j}.weight"], sd[f"{p}.conv{j}.bias"], padding=1), 0.2))
    return F.conv2d(torch.cat(feats, 1), sd[f"{p}.conv5.weight"], sd[f"{p}.conv5.bias"], padding=1) * 0.2 + x


def _rrdb_by_hand(model: RRDBNet, x: torch.Tensor) -> torch.Tensor:
    """RRDBNet forward from the paper's formulas with F.conv2d on the module's parameters (so autograd sees
    them), out of place throughout: the reference the optimised module code must equal."""
    sd = dict(model.named_parameters())
    scale = model.params.scale

    def conv(t: torch.Tensor, name: str) -> torch.Tensor:
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    # BasicSR x2/x1: fold the image with pixel_unshuffle first (written here as an explicit reshape)
    u = {4: 1, 2: 2, 1: 4}[scale]
    n, c, h, w = x.shape
    folded = x.reshape(n, c, h // u, u, w // u, u).permute(0, 1, 3, 5, 2, 4).reshape(n, c * u * u, h // u, w // u)
    fea = conv(folded, "conv_first")
    trunk = fea
    for b in range(model.params.num_block):
        y = trunk
        for k in (1, 2, 3):
            y = _rdb_by_hand(sd, f"body.{b}.rdb{k}", y)
        trunk = y * 0.2 + trunk
    fea = fea + conv(trunk, "conv_body")
    for name in ("conv_up1", "conv_up2"):
        fea = F.leaky_relu(conv(fea.repeat_interleave(2, -1).repeat_interleave(2, -2), name), 0.2)
    return conv(F.leaky_relu(conv(fea, "conv_hr"), 0.2), "conv_last")


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdb_forward_matches_hand_computation(scale: int) -> None:
    params = RRDBParams(num_feat=8, num_block=2, num_grow_ch=4, scale=scale)
    model = RRDBNet(params).eval()
    x = torch.rand(1, 3, 8, 12)
    u = {4: 1, 2: 2, 1: 4}[scale]
    with torch.no_grad():
        out, expected = model(x), _rrdb_by_hand(model, x)
    assert out.shape == (1, 3, 8 * scale, 12 * scale)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert model.conv_first.in_channels == 3 * u * u
    assert to_srnets(model)[scale].size_multiple == u


def test_rrdb_trains_through_its_in_place_activations() -> None:
    """The in-place LeakyReLUs and fused skips of the fast forward keep autograd right (sr train runs RRDB):
    the gradients equal those of the out-of-place reference."""
    model = RRDBNet(RRDBParams(num_feat=8, num_block=2, num_grow_ch=4))
    x = torch.rand(2, 3, 6, 7)
    gradients = []
    for forward in (model, lambda t: _rrdb_by_hand(model, t)):
        model.zero_grad()
        forward(x).square().mean().backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys() and len(gradients[0]) == len(list(model.parameters()))
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradient, gradients[1][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("family", "params"),
    [
        ("rrdb", RRDBParams(num_feat=64, num_block=1, num_grow_ch=32)),  # the real channel counts, one block
        ("rrdb", RRDBParams(num_feat=16, num_block=1, num_grow_ch=8, scale=2)),
        ("edsr", EDSRParams(n_resblocks=2, n_feats=32, scale=4, res_scale=0.1)),
        ("srvgg", SRVGGParams(num_feat=32, num_conv=4)),
    ],
)
def test_cpu_layout_gives_the_reference_output(family: str, params: object) -> None:
    """What the API runs on the CPU (the descriptor's channels_last choice, under inference_mode) equals the
    plain NCHW forward under no_grad, on random weights, within float rounding."""
    net = SRNet(build_module(family, params)).eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        expected = net(x)
    assert net.descriptor.channels_last_on_cpu  # the layout measured faster (docs/benchmarks.md)
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    with torch.inference_mode():
        out = net(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_esrgan_converters_round_trip_and_refuse_unknown_keys() -> None:
    sd = RRDBNet(RRDBParams(num_feat=8, num_block=3, num_grow_ch=4)).state_dict()
    old = to_esrgan_2019(sd)
    assert "RRDB_trunk.2.RDB3.conv5.weight" in old and "HRconv.bias" in old and "upconv2.weight" in old
    assert convert_esrgan_2019(old) == sd  # same tensor objects, same names
    older = to_esrgan_2018(sd, num_block=3)
    assert {"model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight", "model.1.sub.3.weight",
            "model.3.bias", "model.6.weight", "model.8.weight", "model.10.bias"} <= set(older)
    assert convert_esrgan_2018(older) == sd
    with pytest.raises(UnsupportedCheckpointError, match="extra.weight"):
        convert_esrgan_2019({**old, "extra.weight": torch.zeros(1)})
    with pytest.raises(UnsupportedCheckpointError, match=r"model\.1\.sub\.7\.weight"):
        convert_esrgan_2018({**older, "model.1.sub.7.weight": torch.zeros(1)})  # a second "trunk conv"
    with pytest.raises(UnsupportedCheckpointError, match=r"model\.12\.weight"):
        convert_esrgan_2018({**older, "model.12.weight": torch.zeros(1)})


def test_vdsr_and_srvgg_residual_paths() -> None:
    """Zero the last conv: VDSR must return its input, SRVGG the nearest-upsampled input."""
    vdsr = VDSR(VDSRParams(num_layers=5, num_features=8)).eval()
    srvgg = SRVGGNetCompact(SRVGGParams(num_feat=8, num_conv=2, upscale=3)).eval()
    with torch.no_grad():
        vdsr.output.weight.zero_()
        zero_conv(srvgg.body, -1)
        y = torch.rand(1, 1, 7, 9)
        torch.testing.assert_close(to_srnets(vdsr)[1](y), y)
        x = torch.rand(1, 3, 4, 5)
        torch.testing.assert_close(srvgg(x), x.repeat_interleave(3, -1).repeat_interleave(3, -2))
    assert [k for k in vdsr.state_dict() if "bias" in k] == []
    assert srvgg.body[1].weight.shape == (8,)  # PReLU per channel


def test_srnet_attributes_and_scale_service() -> None:
    vdsr = to_srnets(VDSR(VDSRParams(num_layers=4, num_features=4)))
    assert list(vdsr) == [1]
    net = vdsr[1]
    assert (net.family, net.scale, net.in_channels, net.size_multiple) == ("vdsr", 1, 1, 1)
    assert net.serves(2) and net.serves(3.5) and not net.serves(1)
    edsr = to_srnets(EDSR(EDSRParams(n_resblocks=1, n_feats=4, scale=3)))[3]
    assert edsr.serves(3) and not edsr.serves(2) and edsr.in_channels == 3
    with pytest.raises(ValueError):
        SRNet(EDSR(EDSRParams(n_resblocks=1, n_feats=4, scale=3)), scale=2)


def _measured_radius(net: SRNet) -> int:
    """How far one input pixel reaches, measured: perturb it and find the farthest output pixel that
    changes, as the distance (in input pixels) from the input pixel that output pixel belongs to
    (floor(Y / scale): what a tile's context must cover). Independent of any radius formula.

    Weights 1, biases 0 and an all-zero input: the output is exactly 0, and one pixel set to 1 makes
    every output it can reach positive (every ReLU/leaky ReLU stays on its linear side, so no path is
    cut; values that overflow become +inf, still "changed", and nothing positive ever cancels). A strip
    of m rows (m: the net's fold) measures one axis; the kernels are square, so the other is the same.
    Every alignment of the pixel to the fold grid is tried; the answer is the largest."""
    with torch.no_grad():
        for name, param in net.module.named_parameters():
            param.fill_(0.0 if name.endswith("bias") else 1.0)
    net = net.eval()
    m, s = net.size_multiple, net.scale
    width = 256 * m
    reach = 0
    for offset in range(m):
        while True:
            p = width // 2 + offset
            x = torch.zeros(1, net.in_channels, m, width)
            with torch.no_grad():
                assert torch.count_nonzero(net(x)) == 0
                x[0, :, 0, p] = 1.0
                columns = torch.nonzero(net(x).ne(0).any(dim=2).any(dim=1)[0]).flatten()
            if 0 < int(columns.min()) and int(columns.max()) < width * s - 1:
                break
            width *= 2  # the perturbation reached the border: measure on a wider strip
        owners = torch.div(columns, s, rounding_mode="floor")
        reach = max(reach, int((owners - p).abs().max()))
    return reach


@pytest.mark.parametrize(
    ("family", "params"),
    [  # the published depths (receptive radius does not depend on the width: 4 features keep it cheap)
        ("edsr", EDSRParams(n_feats=4, scale=2)), ("edsr", EDSRParams(n_feats=4, scale=3)),
        ("edsr", EDSRParams(n_resblocks=32, n_feats=4, scale=4)),
        ("mdsr", MDSRParams(n_feats=4)), ("vdsr", VDSRParams(num_features=4)),
        ("srvgg", SRVGGParams(num_feat=4)), ("srvgg", SRVGGParams(num_feat=4, num_conv=16, upscale=2)),
        ("rrdb", RRDBParams(num_feat=4, num_grow_ch=2)), ("rrdb", RRDBParams(num_feat=4, num_grow_ch=2, scale=2)),
        ("rrdb", RRDBParams(num_feat=4, num_block=2, num_grow_ch=2, scale=1)),
    ],
)
def test_min_overlap_values(family: str, params: object) -> None:
    """The receptive radius each SRNet declares is the one measured by perturbing a pixel, and
    min_overlap is that radius, except where the family declares a smaller estimate (RRDB)."""
    for net in to_srnets(build_module(family, params)).values():
        measured = _measured_radius(net)
        assert receptive_radius(family, params) == measured, f"x{net.scale}"
        if family == "rrdb":  # an estimate (archs/rrdb.py): never more than the exact radius
            assert net.min_overlap == min(measured, 80 * net.size_multiple)
        else:
            assert net.min_overlap == measured


@pytest.mark.parametrize(
    ("family", "params"),
    [
        ("edsr", EDSRParams(n_resblocks=2, n_feats=8, scale=3)), ("mdsr", MDSRParams(n_resblocks=1, n_feats=8)),
        ("vdsr", VDSRParams(num_layers=6, num_features=8)), ("srvgg", SRVGGParams(num_feat=8, num_conv=3)),
        ("rrdb", RRDBParams(num_feat=8, num_block=1, num_grow_ch=4, scale=2)),
    ],
)
def test_receptive_radius_is_enough_for_exact_tiles(family: str, params: object) -> None:
    """A tile with receptive_radius pixels of context gives the whole image's output (small nets, where
    the radius is exact; weights scaled up so far pixels really matter)."""
    module = build_module(family, params).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(3.0)  # stronger weights: make the far context visible above float noise
    radius = receptive_radius(family, params)
    for net in to_srnets(module).values():
        m, s = net.size_multiple, net.scale
        size = 2 * radius + 8 + 2 * m
        size -= size % (2 * m)
        x = torch.rand(1, net.in_channels, size, size)
        lo = (size // 2) - (size // 2) % m
        core = m * 2
        with torch.no_grad():
            whole = net(x)[..., lo * s:(lo + core) * s, lo * s:(lo + core) * s]
            c = radius + (-radius) % m
            tile = net(x[..., lo - c:lo + core + c, lo - c:lo + core + c])[..., c * s:(c + core) * s, c * s:(c + core) * s]
            torch.testing.assert_close(tile, whole, rtol=1e-4, atol=1e-4)

"""Every official key listing in ../shared/weights/keys, synthesised as a checkpoint in its container,
is placed (family, layout, hyperparameters, scales) and loads strictly with its tensors unchanged."""
from __future__ import annotations

import json
import re
import types
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import shared_dir_or_none  # noqa: E402 -- SR_SHARED_DIR, else ../shared
from test_legacy_pickle import Net, fake_vdsr_module, save_legacy  # noqa: F401 (fixture re-export)
from torch import Tensor

from sr_cli.archs.edsr import DIV2K_RGB_MEAN, EDSRParams
from sr_cli.errors import ScaleMismatchError, UnsupportedCheckpointError
from sr_cli.weights import allocation
from sr_cli.weights.detect import detect
from sr_cli.weights.loading import load_checkpoint, srnet_for
from sr_cli.weights.reading import read_checkpoint
from sr_cli.weights.safetensors_io import save_safetensors, sr_metadata

_SHARED = shared_dir_or_none()
KEYS_DIR = _SHARED / "weights" / "keys" if _SHARED is not None else Path("/nonexistent")
LISTINGS = sorted(p.name for p in KEYS_DIR.glob("*.json")) if KEYS_DIR.is_dir() else []
BIG = 5_000_000  # above this many values, tensors are stride-0 expansions of one random row (tiny files)

# Independent expectations, written from keys/README.md rather than from our detection code.
_RRDB_2019_NAMES = {"in_nc": "num_in_ch", "out_nc": "num_out_ch", "nf": "num_feat", "nb": "num_block",
                    "gc": "num_grow_ch", "scale": "scale"}


def _expected(name: str, listing: dict[str, Any]) -> tuple[str, str, dict[str, Any], list[int] | None]:
    hp = dict(listing.get("hyperparameters") or {})
    keys = listing["keys"]
    if name.startswith("edsr"):
        return "edsr", "edsr-pytorch", hp, [hp["scale"]]
    if name.startswith("mdsr"):
        hp.pop("n_colors")
        return "mdsr", "edsr-pytorch", hp, [2, 3, 4]
    if name.startswith("RRDB_"):
        return "rrdb", "esrgan-2019", {_RRDB_2019_NAMES[k]: v for k, v in hp.items()}, [4]
    if "conv_first.weight" in keys:
        return "rrdb", "basicsr", hp, [4]
    if name.startswith("model_epoch_50"):
        return "vdsr", "vdsr-pytorch", {"num_layers": 20, "num_features": 64}, None
    hp.pop("act_type", None)
    if not hp:  # realesr-animevideov3: listed from real bytes, SRVGGNetCompact num_conv=16 (PROVENANCE.md section 4)
        hp = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16, "upscale": 4}
    return "srvgg", "real-esrgan-srvgg", hp, [4]


@pytest.fixture(autouse=True)
def expanded_files_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Big synthetic listings are stride-0 expansions (tiny files), which the reader refuses from a user as
    hostile (weights.allocation, tested in test_reading); here they only stand for a key layout."""
    monkeypatch.setattr(allocation, "TINY_TENSOR_ELEMENTS", 50_000_000)
    monkeypatch.setattr(allocation, "ALLOWANCE_BYTES", 1 << 30)


def synthesise(name: str, listing: dict[str, Any]) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    big = listing["num_params"] > BIG
    out: dict[str, Tensor] = {}
    for key, shape in listing["keys"].items():
        if big and len(shape) > 1:
            out[key] = torch.randn(shape[-1], generator=gen).expand(*shape)
        else:
            out[key] = torch.randn(shape, generator=gen)
    mean = torch.tensor(DIV2K_RGB_MEAN)
    if "sub_mean.bias" in out:  # the released values (README: weight I, bias -+255*mean)
        out["sub_mean.weight"] = out["add_mean.weight"] = torch.eye(3).view(3, 3, 1, 1)
        out["sub_mean.bias"], out["add_mean.bias"] = -255 * mean, 255 * mean
    return out


def write_in_container(path: Path, tensors: dict[str, Tensor], container: str) -> None:
    if container == "state_dict":
        torch.save(tensors, path)
    elif container in ("params", "params_ema"):
        torch.save({container: tensors}, path)
    elif container == "pickled_module":  # only VDSR: a whole `vdsr.Net`, as in model_epoch_50.pth
        layers = sum(1 for k in tensors if k.startswith("residual_layer."))
        module = Net(blocks=layers, features=tensors["input.weight"].shape[0])
        module.load_state_dict(tensors, strict=True)
        save_legacy({"epoch": 50, "model": module}, path)
    else:
        raise AssertionError(container)


def _2019_to_canonical_name(key: str) -> str:
    """The renaming a third-party converter applied to RRDB_PSNR_x4 (PROVENANCE.md section 3)."""
    for old, new in (("RRDB_trunk.", "body."), (".RDB", ".rdb"), ("trunk_conv.", "conv_body."),
                     ("upconv", "conv_up"), ("HRconv.", "conv_hr.")):
        key = key.replace(old, new)
    return key


def _canonical_to_2018_name(key: str, nb: int) -> str:
    """xinntao/ESRGAN transer_RRDB_models.py, read backwards (model.1.sub.N.RDBk.convj.0, trunk at nb)."""
    fixed = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}", "conv_up1": "model.3",
             "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    prefix, leaf = key.rsplit(".", 1)
    if prefix in fixed:
        return f"{fixed[prefix]}.{leaf}"
    m = re.fullmatch(r"body\.(\d+)\.rdb([123])\.conv([1-5])", prefix)
    assert m, key
    return f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{leaf}"


@pytest.fixture(scope="module")
def listings() -> dict[str, dict[str, Any]]:
    if not LISTINGS:
        pytest.skip("../shared/weights/keys is absent")
    return {name: json.loads((KEYS_DIR / name).read_text()) for name in LISTINGS}


@pytest.mark.parametrize("name", LISTINGS)
def test_every_official_listing_is_placed_and_loads(
    name: str, listings: dict[str, dict[str, Any]], tmp_path: Path, fake_vdsr_module: types.ModuleType  # noqa: F811 (the imported fixture)
) -> None:
    listing = listings[name]
    tensors = synthesise(name, listing)
    path = tmp_path / name.removesuffix(".json")
    write_in_container(path, tensors, listing["container"])
    family, layout, hyperparameters, scales = _expected(name, listing)

    loaded = load_checkpoint(path)
    detected = loaded.detected
    assert (detected.family, detected.layout, detected.scales) == (family, layout, scales)
    assert detected.hyperparameters() == hyperparameters
    assert detected.num_params == listing["num_params"]
    # canonical keys == the built model's state dict, both ways, same shapes and order
    model_sd = loaded.module.state_dict()
    assert list(detected.state_dict) == list(model_sd)
    assert {k: v.shape for k, v in detected.state_dict.items()} == {k: v.shape for k, v in model_sd.items()}
    # every tensor arrived bit for bit under its canonical name
    rename = _2019_to_canonical_name if layout == "esrgan-2019" else (lambda k: k)
    for key, value in tensors.items():
        assert torch.equal(model_sd[rename(key)], value), key
    assert not loaded.module.training
    # an SRNet for each scale it serves, and a clear error for one it does not
    any_scale: list[float] = [2, 3.5]  # a file without fixed scales (VDSR)
    for scale in scales or any_scale:
        assert srnet_for(loaded, scale).serves(scale)
    if scales == [4]:
        with pytest.raises(ScaleMismatchError, match=r"is a x4 model; pass --scale 4 or choose another file"):
            srnet_for(loaded, 2)


# one listing per source layout: the others of that layout have the same keys and shapes
RRDB_LISTINGS = [n for n in LISTINGS if n in ("RRDB_ESRGAN_x4.pth.json", "RealESRGAN_x4plus.pth.json")]


@pytest.mark.parametrize(
    ("name", "variant"),
    [(name, variant) for name in RRDB_LISTINGS for variant in ("esrgan-2018", "data-parallel")]
    # one 67 MB safetensors round trip is enough (the layout code path is the same for both)
    + [(name, "safetensors") for name in RRDB_LISTINGS if name.startswith("RealESRGAN")],
)
def test_rrdb_variants_are_placed(name: str, variant: str, listings: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    listing = listings[name]
    tensors = synthesise(name, listing)
    canonical = {_2019_to_canonical_name(k): v for k, v in tensors.items()}
    path = tmp_path / "weights.pth"
    if variant == "esrgan-2018":
        torch.save({_canonical_to_2018_name(k, 23): v for k, v in canonical.items()}, path)
        expected_layout = "esrgan-2018"
    elif variant == "data-parallel":
        torch.save({listing["container"]: {f"module.{k}": v for k, v in tensors.items()}}
                   if listing["container"] != "state_dict" else {f"module.{k}": v for k, v in tensors.items()}, path)
        expected_layout = "esrgan-2019" if name.startswith("RRDB_") else "basicsr"
    else:
        path = tmp_path / "weights.safetensors"
        save_safetensors(path, tensors, {})
        expected_layout = "esrgan-2019" if name.startswith("RRDB_") else "basicsr"
    raw = read_checkpoint(path)
    detected = detect(raw.tensors, metadata=raw.metadata, source=str(path))
    assert (detected.family, detected.layout) == ("rrdb", expected_layout)
    assert detected.hyperparameters() == _expected(name, listing)[2]
    assert set(detected.state_dict) == set(canonical)
    for key, value in canonical.items():
        assert torch.equal(detected.state_dict[key], value), key


def test_rrdb_x2_and_x1_variants_from_conv_first_channels() -> None:
    """Real-ESRGAN x2plus / x1 folds the input: conv_first sees 12 / 48 channels."""
    from sr_cli.archs.rrdb import RRDBNet, RRDBParams

    for scale, in_ch in ((2, 12), (1, 48)):
        sd = RRDBNet(RRDBParams(num_feat=8, num_block=2, num_grow_ch=4, scale=scale)).state_dict()
        assert sd["conv_first.weight"].shape[1] == in_ch
        detected = detect(sd)
        assert detected.params == RRDBParams(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, num_grow_ch=4, scale=scale)
        assert detected.scales == [scale]


def test_our_safetensors_export_round_trips_with_res_scale(tmp_path: Path) -> None:
    """sr-safetensors: family and every hyperparameter (res_scale included) come from the metadata."""
    from sr_cli.archs.edsr import EDSR

    params = EDSRParams(n_resblocks=2, n_feats=16, scale=3, res_scale=0.25)
    model = EDSR(params)
    path = tmp_path / "mine.safetensors"
    save_safetensors(path, model.state_dict(), sr_metadata("edsr", params, alpha="0.3"))
    loaded = load_checkpoint(path)
    assert loaded.detected.layout == "sr-safetensors"
    assert loaded.detected.params == params and loaded.detected.res_scale_source == "metadata"
    x = torch.rand(1, 3, 5, 5) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), model.eval()(x))
    # the argument wins over the metadata
    assert load_checkpoint(path, res_scale=1.0).detected.params.res_scale == 1.0  # type: ignore[attr-defined]


def test_sr_metadata_that_contradicts_the_tensors_is_refused(tmp_path: Path) -> None:
    from sr_cli.archs.edsr import EDSR

    path = tmp_path / "liar.safetensors"
    save_safetensors(path, EDSR(EDSRParams(n_resblocks=2, n_feats=16)).state_dict(),
                     sr_metadata("edsr", EDSRParams(n_resblocks=3, n_feats=16)))
    # checked against the tensors before anything is built (issue 11, cause 3): says what each side holds
    with pytest.raises(UnsupportedCheckpointError,
                       match=r"liar\.safetensors.*metadata says edsr n_resblocks=3 but its tensors hold n_resblocks=2"):
        load_checkpoint(path)


def _small_edsr_sd(**kw: Any) -> dict[str, Tensor]:
    from sr_cli.archs.edsr import EDSR

    return EDSR(EDSRParams(n_resblocks=2, n_feats=8, **kw)).state_dict()


def test_res_scale_rules() -> None:
    assert detect(_small_edsr_sd()).res_scale_source == "default"
    assert detect(_small_edsr_sd()).params.res_scale == 1.0  # type: ignore[attr-defined]
    explicit = detect(_small_edsr_sd(), res_scale=0.1)
    assert (explicit.params.res_scale, explicit.res_scale_source) == (0.1, "argument")  # type: ignore[attr-defined]
    meta = detect(_small_edsr_sd(), metadata={"sr.hyperparameters": json.dumps({"res_scale": 0.5})})
    assert (meta.params.res_scale, meta.res_scale_source) == (0.5, "metadata")  # type: ignore[attr-defined]
    # full EDSR (256 features): 0.1, as the paper trained it -- covered by the listings test as well
    full = {k: torch.empty(0).new_zeros(1).expand(*v) for k, v in
            {k: v.shape for k, v in _full_edsr_shapes().items()}.items()}
    assert detect(full).params.res_scale == 0.1 and detect(full).res_scale_source.startswith("full-EDSR")  # type: ignore[attr-defined, union-attr]


def _full_edsr_shapes() -> dict[str, Tensor]:
    from sr_cli.archs.edsr import EDSR

    with torch.device("meta"):
        return EDSR(EDSRParams(n_resblocks=1, n_feats=256, scale=2)).state_dict()


def test_rgb_range_is_read_from_the_mean_shift() -> None:
    assert detect(_small_edsr_sd()).params.rgb_range == 255.0  # type: ignore[attr-defined]
    assert detect(_small_edsr_sd(rgb_range=1.0)).params.rgb_range == 1.0  # type: ignore[attr-defined]


def test_unplaceable_files_name_the_closest_match() -> None:
    sd = _small_edsr_sd(scale=2)
    del sd["tail.1.weight"]
    sd["tail.9.weight"] = torch.zeros(3)
    with pytest.raises(UnsupportedCheckpointError,
                       match=r"^f\.pt: not a supported checkpoint: closest match edsr \(edsr-pytorch\), "
                             r"missing keys \[tail\.1\.weight\], unexpected \[tail\.9\.weight\]"):
        detect(sd, source="f.pt")
    with pytest.raises(UnsupportedCheckpointError, match=r"closest match .*unexpected \[foo\.weight\]"):
        detect({"foo.weight": torch.zeros(2, 2)}, source="g.pt")
    wrong = _small_edsr_sd()
    wrong["body.1.body.0.weight"] = torch.zeros(8, 8, 5, 5)
    with pytest.raises(UnsupportedCheckpointError, match=r"wrong shapes \[body\.1\.body\.0\.weight \[8, 8, 5, 5\]"):
        detect(wrong)
    with pytest.raises(UnsupportedCheckpointError, match="holds no tensors"):
        detect({})


def test_mdsr_scale_errors(tmp_path: Path) -> None:
    from sr_cli.archs.mdsr import MDSR, MDSRParams

    path = tmp_path / "mdsr.pt"
    torch.save(MDSR(MDSRParams(n_resblocks=1, n_feats=8)).state_dict(), path)
    loaded = load_checkpoint(path)
    assert srnet_for(loaded, 3).scale == 3 and srnet_for(loaded, 3).module is loaded.module
    with pytest.raises(ScaleMismatchError, match=r"mdsr\.pt serves x2, x3, x4, not x8"):
        srnet_for(loaded, 8)


def test_unknown_keys_in_an_old_esrgan_layout_are_reported_not_dropped() -> None:
    from sr_cli.archs.rrdb import RRDBNet, RRDBParams, to_esrgan_2019

    sd = to_esrgan_2019(RRDBNet(RRDBParams(num_feat=8, num_block=2, num_grow_ch=4)).state_dict())
    sd["RRDB_trunk.0.RDB1.conv6.weight"] = torch.zeros(4, 8, 3, 3)
    with pytest.raises(UnsupportedCheckpointError,
                       match=r"closest match rrdb \(esrgan-2019\).*unexpected \[RRDB_trunk\.0\.RDB1\.conv6\.weight\]"):
        detect(sd)


# --- hostile sr.hyperparameters (issue 11, cause 3) ------------------------------------------------------


def _vdsr_export(tmp_path: Path, hyperparameters: str, name: str = "hostile") -> Path:
    """A small real VDSR export whose sr.hyperparameters metadata is replaced by `hyperparameters`."""
    from sr_cli.archs.vdsr import VDSR, VDSRParams

    params = VDSRParams(num_layers=5, num_features=4)
    path = tmp_path / f"{name}.safetensors"
    save_safetensors(path, VDSR(params).state_dict(),
                     {**sr_metadata("vdsr", params), "sr.hyperparameters": hyperparameters})
    return path


def _forbid_building_more_than(monkeypatch: pytest.MonkeyPatch, layers: int) -> None:
    """Make building a VDSR deeper than the file's own a test failure (today's code built the claimed
    20-million-layer net: minutes and gigabytes before any check)."""
    from sr_cli.archs import vdsr

    original = vdsr.VDSR.__init__

    def guarded(self: Any, params: Any) -> None:
        assert params.num_layers <= layers, f"built a {params.num_layers}-layer VDSR from metadata alone"
        original(self, params)

    monkeypatch.setattr(vdsr.VDSR, "__init__", guarded)


def test_metadata_hyperparameters_are_checked_against_the_tensors_before_building(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _vdsr_export(tmp_path, json.dumps({"num_layers": 20_000_000, "num_features": 4}))
    _forbid_building_more_than(monkeypatch, 5)
    with pytest.raises(UnsupportedCheckpointError,
                       match=r"hostile\.safetensors: .*metadata says vdsr num_layers=20000000 but its tensors hold "
                             r"num_layers=5; re-export the file"):
        load_checkpoint(path)
    # an honest file still loads, through the same path
    honest = _vdsr_export(tmp_path, json.dumps({"num_layers": 5, "num_features": 4}), name="honest")
    assert load_checkpoint(honest).detected.params.num_layers == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize(("value", "reason"), [
    ("20.5", "num_layers: expected an integer, got a number 20.5"),
    ("NaN", "num_layers: expected an integer, got a number nan"),
    ("Infinity", "num_layers: expected an integer, got a number inf"),
    ('"20"', "num_layers: expected an integer, got a string '20'"),
    ("true", "num_layers: expected an integer, got a boolean True"),
    ("-3", "num_layers: -3 is below the minimum 3"),
    ("null", "num_layers: expected an integer, got null"),
])
def test_metadata_of_the_wrong_type_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 value: str, reason: str) -> None:
    from cli_support import run_cli

    path = _vdsr_export(tmp_path, f'{{"num_layers": {value}, "num_features": 4}}')
    with pytest.raises(UnsupportedCheckpointError, match=re.escape(f"bad sr.hyperparameters metadata ({reason})")):
        load_checkpoint(path)
    code, out, err = run_cli(capsys, ["weights", "inspect", str(path)])
    assert code == 5 and out == ""
    assert err.strip().count("\n") == 0 and "Traceback" not in err and "hostile.safetensors" in err, err


@pytest.mark.parametrize("hyperparameters", ['{"num_layers": 5, "depth": 3}', "[5, 4]", "{"])
def test_metadata_that_is_not_the_schema_is_refused(tmp_path: Path, hyperparameters: str) -> None:
    with pytest.raises(UnsupportedCheckpointError, match=r"bad sr\.hyperparameters metadata"):
        load_checkpoint(_vdsr_export(tmp_path, hyperparameters))

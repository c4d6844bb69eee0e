"""The restricted unpickler: the real legacy VDSR file, legacy files torch writes, and malicious pickles
(refused, with nothing run)."""
from __future__ import annotations

import json
import os
import pickle
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sr_cli.archs.vdsr import VDSR, VDSRParams
from sr_cli.errors import CheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError
from sr_cli.weights.legacy_pickle import LEGACY_MAGIC_NUMBER, read_legacy_checkpoint
from sr_cli.weights.loading import load_checkpoint, srnet_for
from sr_cli.weights.reading import read_checkpoint

# --- a stand-alone copy of twtygqyy/pytorch-vdsr's classes, registered as module `vdsr`, so torch.save
#     writes the same kind of file as model_epoch_50.pth (a pickled whole module) --------------------


class Conv_ReLU_Block(nn.Module):  # noqa: N801 (the reference name)
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(features, features, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


class Net(nn.Module):
    def __init__(self, blocks: int = 2, features: int = 8) -> None:
        super().__init__()
        self.residual_layer = nn.Sequential(*[Conv_ReLU_Block(features) for _ in range(blocks)])
        self.input = nn.Conv2d(1, features, 3, 1, 1, bias=False)
        self.output = nn.Conv2d(features, 1, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.add(self.output(self.residual_layer(self.relu(self.input(x)))), x)


@pytest.fixture
def fake_vdsr_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("vdsr")
    originals = {c: (c.__module__, c.__qualname__) for c in (Conv_ReLU_Block, Net)}
    for cls in originals:
        cls.__module__, cls.__qualname__ = "vdsr", cls.__name__
        setattr(module, cls.__name__, cls)
    sys.modules["vdsr"] = module
    try:
        yield module
    finally:
        del sys.modules["vdsr"]
        for cls, (mod, qual) in originals.items():
            cls.__module__, cls.__qualname__ = mod, qual


def save_legacy(obj: Any, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "source code of class ... could not be retrieved"
        torch.save(obj, path, _use_new_zipfile_serialization=False)


# --- the real file ------------------------------------------------------------------------------------


def test_real_vdsr_file_matches_listing(vdsr_weights: Path, keys_dir: Path) -> None:
    listing = json.loads((keys_dir / "model_epoch_50.pth.json").read_text())
    contents = read_legacy_checkpoint(vdsr_weights)
    assert contents.module_classes == ["vdsr.Net"]
    assert contents.obj["epoch"] == 50
    tensors = contents.obj["model"]
    assert {k: list(v.shape) for k, v in tensors.items()} == listing["keys"]
    assert all(t.dtype == torch.float32 for t in tensors.values())
    assert sum(t.numel() for t in tensors.values()) == listing["num_params"] == 664_704
    raw = read_checkpoint(vdsr_weights)
    assert (raw.container, raw.serialization, raw.ignored) == ("pickled_module", "legacy", ["epoch"])
    # storages are read from the raw bytes: the last storage ends exactly at the end of the file
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_torch_weights_only_cannot_read_it(vdsr_weights: Path) -> None:
    """Why legacy_pickle exists (PROVENANCE.md, section 1)."""
    with pytest.raises(pickle.UnpicklingError):
        torch.load(vdsr_weights, map_location="cpu", weights_only=True)


def _y(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, [0,1] in -> [16/255, 235/255] out (MATLAB rgb2ycbcr)."""
    return (16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


def _bicubic(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(y.astype(np.float32), mode="F").resize(size, Image.Resampling.BICUBIC))


def _psnr(a: np.ndarray, b: np.ndarray, shave: int) -> float:
    d = (a - b)[shave:-shave, shave:-shave].astype(np.float64)
    return float(10 * np.log10(1 / np.mean(d * d)))


@pytest.mark.slow
def test_real_vdsr_beats_bicubic_on_set5(vdsr_weights: Path, datasets_dir: Path) -> None:
    """Independent of the MATLAB evaluation path: PIL bicubic down/up on the mod-cropped Y, x3.

    Central 192x192 crop of each image (the whole of Set5 costs ~750 GFLOP through VDSR: too slow for CI
    on 2 cores); engineer D's evaluation runs the full images the paper's way."""
    scale, crop = 3, 192
    net = srnet_for(load_checkpoint(vdsr_weights), scale)
    assert (net.scale, net.in_channels) == (1, 1)
    images = sorted((datasets_dir / "set5" / "HR").glob("*.png"))
    assert len(images) == 5
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
        top, left = (rgb.shape[0] - crop) // 2, (rgb.shape[1] - crop) // 2
        y = _y(rgb[top:top + crop, left:left + crop])
        h = w = crop
        up = _bicubic(_bicubic(y, (w // scale, h // scale)), (w, h))
        with torch.inference_mode():
            out = net(torch.from_numpy(up.copy())[None, None]).clamp(0, 1)[0, 0].numpy()
        bicubic_db, vdsr_db = _psnr(up, y, scale), _psnr(out, y, scale)
        assert vdsr_db > bicubic_db + 0.5, f"{path.name}: VDSR {vdsr_db:.2f} dB vs bicubic {bicubic_db:.2f} dB"


# --- legacy files written by torch ------------------------------------------------------------------


def test_reads_legacy_state_dict_like_torch(tmp_path: Path) -> None:
    """Our storage reader against torch's own: dtypes, shared storages, offsets and strides."""
    base = torch.randn(6, 5)
    sd = {"a": base, "b": base[2:], "t": base.t(), "h": torch.randn(3, 2).half(), "i": torch.arange(7),
          "empty": torch.zeros(0, 4)}
    path = tmp_path / "legacy.pt"
    save_legacy(sd, path)
    ours = read_legacy_checkpoint(path).obj
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for key in sd:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key


def test_reads_pickled_vdsr_module_and_forward_matches(tmp_path: Path, fake_vdsr_module: types.ModuleType) -> None:
    """A whole pickled `vdsr.Net` (what model_epoch_50.pth is) gives a state dict our VDSR loads
    strictly, and our forward equals the reference classes' forward."""
    reference = Net(blocks=2, features=8).eval()
    path = tmp_path / "model_epoch_3.pth"
    save_legacy({"epoch": 3, "model": reference}, path)
    loaded = load_checkpoint(path)
    assert loaded.detected.family == "vdsr" and loaded.detected.params == VDSRParams(num_layers=4, num_features=8)
    x = torch.rand(1, 1, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), reference(x))
    assert isinstance(loaded.module, VDSR)


# --- malicious files -----------------------------------------------------------------------------------


class _Payload:
    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _payloads(marker: Path) -> list[tuple[str, _Payload]]:
    import builtins
    import subprocess

    return [
        ("system", _Payload(os.system, (f"touch {marker}",))),
        ("eval", _Payload(builtins.eval, (f"open({str(marker)!r}, 'w')",))),
        ("exec", _Payload(builtins.exec, (f"open({str(marker)!r}, 'w')",))),
        ("Popen", _Payload(subprocess.Popen, (["touch", str(marker)],))),
    ]


def _legacy_bytes(obj: Any) -> bytes:
    """A legacy torch file by hand: magic, protocol, sys_info, object, storage keys (no storages)."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts: tuple[object, ...] = (LEGACY_MAGIC_NUMBER, 1001, sys_info, obj, [])
    return b"".join(pickle.dumps(x, protocol=2) for x in parts)


@pytest.mark.parametrize("index", range(4))
def test_malicious_legacy_file_is_refused_unrun(tmp_path: Path, index: int) -> None:
    marker = tmp_path / "pwned"
    name, payload = _payloads(marker)[index]
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_bytes({"model": payload, "weight": 1}))
    with pytest.raises(UnsafeCheckpointError, match=rf"evil\.pth.*{name}") as info:
        read_checkpoint(path)
    assert "nothing was executed" in str(info.value)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        read_legacy_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("index", range(4))
def test_malicious_plain_pickle_is_refused_unrun(tmp_path: Path, index: int) -> None:
    marker = tmp_path / "pwned"
    name, payload = _payloads(marker)[index]
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"weights": payload}, protocol=4))  # STACK_GLOBAL, not GLOBAL
    with pytest.raises(UnsafeCheckpointError, match=name):
        read_checkpoint(path)
    assert not marker.exists()


def test_malicious_zip_torch_file_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"params": {"conv.weight": torch.zeros(1)}, "hook": _Payload(os.system, (f"touch {marker}",))}, path)
    assert path.read_bytes()[:2] == b"PK"
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt.*(posix|os)\.system"):
        read_checkpoint(path)
    assert not marker.exists()


def test_pickled_module_of_unknown_class_is_refused(tmp_path: Path) -> None:
    """Only the reference `vdsr` classes and torch.nn modules may appear; any other class is refused."""
    path = tmp_path / "other.pth"
    save_legacy(VDSR(VDSRParams(num_layers=3, num_features=2)), path)  # class sr_cli.archs.vdsr.VDSR
    with pytest.raises(UnsafeCheckpointError, match=r"sr_cli\.archs\.vdsr\.VDSR"):
        read_checkpoint(path)


def test_plain_pickle_of_harmless_data_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=2))
    with pytest.raises(UnsupportedCheckpointError, match="plain pickle"):
        read_checkpoint(path)


def test_truncated_legacy_file(tmp_path: Path, vdsr_weights: Path) -> None:
    data = vdsr_weights.read_bytes()
    for cut in (len(data) - 100, 5000, 40):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"cut\d+\.pth.*(truncated|corrupt)"):
            read_checkpoint(path)


def test_hostile_tensor_views_are_refused() -> None:
    """A record whose view reaches past its storage (or has negative strides) is refused, not read."""
    from sr_cli.weights.legacy_pickle import StorageRecord, StorageType, TensorRecord

    storage = StorageRecord(StorageType("FloatStorage", torch.float32), "k", "cpu", 6, torch.arange(6.0))
    assert torch.equal(TensorRecord(storage, 1, (2, 2), (1, 2)).materialize("f"), torch.tensor([[1.0, 3.0], [2.0, 4.0]]))
    with pytest.raises(CheckpointError, match="past the end"):
        TensorRecord(storage, 3, (2, 2), (2, 1)).materialize("f")
    with pytest.raises(CheckpointError, match="negative"):
        TensorRecord(storage, 0, (2,), (-1,)).materialize("f")


def test_allowed_class_cannot_be_called_with_arguments(tmp_path: Path) -> None:
    """REDUCE on an allow-listed module class (instead of NEWOBJ + BUILD) fails cleanly: the stand-in
    accepts no constructor arguments, so nothing of the file's choosing runs."""
    # GLOBAL vdsr Net; MARK; SHORT_BINUNICODE 'x'; TUPLE; REDUCE; STOP  (hand-written opcodes)
    body = b"\x80\x02cvdsr\nNet\n(X\x01\x00\x00\x00xtR."
    header = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC_NUMBER, 1001, {"little_endian": True}))
    path = tmp_path / "odd.pth"
    path.write_bytes(header + body + pickle.dumps([], protocol=2))
    with pytest.raises(CheckpointError, match=r"odd\.pth: corrupt or not a checkpoint"):
        read_legacy_checkpoint(path)

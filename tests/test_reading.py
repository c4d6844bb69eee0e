"""read_checkpoint: format sniffing, container unwrapping, DataParallel prefixes, clear errors;
safetensors_io: atomic writes and metadata."""
from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sr_cli.errors import CheckpointError, InputError, OutputError, UnsupportedCheckpointError
from sr_cli.weights.reading import read_checkpoint, sniff
from sr_cli.weights.safetensors_io import read_safetensors, save_safetensors


def _sd(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "conv.bias": torch.randn(4, generator=g)}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)  # safetensors sorts keys


def test_params_ema_is_preferred_over_params(tmp_path: Path) -> None:
    path = tmp_path / "net_g.pth"
    torch.save({"params": _sd(1), "params_ema": _sd(2), "iter": 5000}, path)
    raw = read_checkpoint(path)
    assert raw.container == "params_ema" and _same(raw.tensors, _sd(2))
    assert sorted(raw.ignored) == ["iter", "params"]


@pytest.mark.parametrize("key", ["params", "state_dict", "model"])
def test_named_containers(tmp_path: Path, key: str) -> None:
    path = tmp_path / "c.pt"
    torch.save({key: _sd(3), "epoch": 7, "optimizer": {"state": {}, "lr": 0.1}}, path)
    raw = read_checkpoint(path)
    assert raw.container == key and _same(raw.tensors, _sd(3))
    assert raw.metadata == {} and raw.serialization == "zip"


def test_plain_state_dict_with_scalars_reports_what_it_left(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save({**_sd(4), "version": 2}, path)
    raw = read_checkpoint(path)
    assert raw.container == "state_dict" and _same(raw.tensors, _sd(4)) and raw.ignored == ["version"]


def test_data_parallel_prefix_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in _sd(5).items()}, path)
    assert _same(read_checkpoint(path).tensors, _sd(5))
    torch.save({"module.conv.weight": torch.zeros(1), "conv.weight": torch.ones(1)}, path)
    with pytest.raises(UnsupportedCheckpointError, match="ambiguous"):
        read_checkpoint(path)


def test_nested_weights_are_not_dropped_silently(tmp_path: Path) -> None:
    path = tmp_path / "nested.pt"
    torch.save({"generator": _sd(6), "discriminator": _sd(7)}, path)
    with pytest.raises(UnsupportedCheckpointError, match=r"nested\.pt.*'generator'.*nested weights"):
        read_checkpoint(path)


def test_legacy_state_dict_goes_through_torch(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save(_sd(8), path, _use_new_zipfile_serialization=False)
    raw = read_checkpoint(path)
    assert raw.serialization == "legacy" and raw.container == "state_dict" and _same(raw.tensors, _sd(8))


def test_safetensors_by_content_not_extension(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"  # misleading extension: the bytes decide
    save_safetensors(path, _sd(9), {"sr.note": "x"})
    raw = read_checkpoint(path)
    assert raw.serialization == "safetensors" and raw.metadata == {"sr.note": "x"} and _same(raw.tensors, _sd(9))


def test_sniff() -> None:
    assert sniff(b"PK\x03\x04rest") == "zip"
    assert sniff(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19") == "legacy"
    assert sniff(b"\x80\x04\x95") == "pickle"
    assert sniff((10).to_bytes(8, "little") + b'{"a":1}') == "safetensors"
    assert sniff(b"GIF89a") == "unknown"


def test_missing_empty_garbage_truncated(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.pt: no such file"):
        read_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(InputError, match="is a folder, not a weights file"):
        read_checkpoint(tmp_path)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: the file is empty"):
        read_checkpoint(empty)
    garbage = tmp_path / "photo.pth"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    with pytest.raises(CheckpointError, match=r"photo\.pth: not a checkpoint"):
        read_checkpoint(garbage)
    whole = tmp_path / "whole.pt"
    torch.save(_sd(10), whole)
    data = whole.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        cut_path = tmp_path / f"cut{cut}.pt"
        cut_path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=rf"cut{cut}\.pt: (truncated|not a checkpoint)"):
            read_checkpoint(cut_path)
    st = tmp_path / "w.safetensors"
    save_safetensors(st, _sd(11), {})
    st.write_bytes(st.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match=r"w\.safetensors: not a readable \.safetensors"):
        read_checkpoint(st)


def test_non_dict_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(UnsupportedCheckpointError, match="holds a Tensor"):
        read_checkpoint(path)
    torch.save({"epoch": 3}, path)
    with pytest.raises(UnsupportedCheckpointError, match="no weights found"):
        read_checkpoint(path)


def test_save_safetensors_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.safetensors"
    save_safetensors(target, _sd(12), {"sr.a": "1"})
    tensors, meta = read_safetensors(target)
    assert _same(tensors, _sd(12)) and meta == {"sr.a": "1"}

    def boom(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        save_safetensors(target, _sd(13), {}, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]  # no .tmp left behind
    assert _same(read_safetensors(target)[0], _sd(12))  # the old file is untouched
    with pytest.raises(OutputError, match="does not exist"):
        save_safetensors(tmp_path / "no" / "x.safetensors", _sd(1), {})
    with pytest.raises(TypeError):
        save_safetensors(target, _sd(1), {"sr.alpha": 0.5})  # type: ignore[dict-item]


def test_save_safetensors_accepts_views_and_shared_tensors(tmp_path: Path) -> None:
    base = torch.randn(4, 4)
    path = tmp_path / "v.safetensors"
    save_safetensors(path, {"a": base, "b": base.t(), "c": base[1:]}, {})
    tensors, _ = read_safetensors(path)
    assert torch.equal(tensors["b"], base.t()) and torch.equal(tensors["c"], base[1:])


# --- sniffing by structure (issue 11, cause 5) ------------------------------------------------------------

_ONE_TENSOR_HEADER = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'


def _safetensors_with_header_length(length: int) -> bytes:
    """A valid .safetensors file whose JSON header is `length` bytes (padded with spaces, as the format allows)."""
    header = _ONE_TENSOR_HEADER.ljust(length, b" ")
    return struct.pack("<Q", length) + header + struct.pack("<f", 1.5)


@settings(max_examples=60, deadline=None)
@given(length=st.integers(min_value=len(_ONE_TENSOR_HEADER), max_value=70_000)
       | st.integers(min_value=1, max_value=270).map(lambda k: 256 * k + 128))  # first byte 0x80, like a pickle
def test_every_header_length_is_sniffed_as_safetensors(tmp_path_factory: pytest.TempPathFactory, length: int) -> None:
    data = _safetensors_with_header_length(length)
    assert sniff(data[:32], len(data)) == "safetensors"
    path = tmp_path_factory.mktemp("st") / "w.safetensors"
    path.write_bytes(data)
    raw = read_checkpoint(path)  # the safetensors library agrees it is one
    assert raw.serialization == "safetensors" and raw.tensors["w"].tolist() == [1.5]


def test_our_own_output_with_a_header_of_128_mod_256_is_read_back(tmp_path: Path) -> None:
    """`sr blend` wrote such a file (header length 2688) and `sr weights inspect` refused it."""
    path = tmp_path / "blend.safetensors"
    for pad in range(300):
        save_safetensors(path, _sd(14), {"sr.note": "x" * pad}, overwrite=True)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert _same(read_checkpoint(path).tensors, _sd(14))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_are_not_taken_for_safetensors(protocol: int) -> None:
    for obj in ({}, {"a": 1}, {"w": [1.0] * 300}, list(range(1000)), "{" * 50):
        data = pickle.dumps(obj, protocol=protocol)
        assert sniff(data[:32], len(data)) == "pickle"


def test_a_safetensors_header_longer_than_the_file_is_not_safetensors() -> None:
    data = _safetensors_with_header_length(200)
    assert sniff(data[:32], 100) == "unknown" and sniff(data[:32], len(data)) == "safetensors"

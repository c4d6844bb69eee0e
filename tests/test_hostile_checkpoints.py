"""Checkpoints that try to make us allocate far more than their bytes (issue 11, cause 2).

Every reader (our legacy unpickler, torch.load on zip and legacy files, safetensors) must refuse them as a
corrupt checkpoint, in one line, before allocating. The files are read in a child process whose address
space is capped (RLIMIT_AS), so a reader that does expand them fails there instead of taking this machine's
memory; the child reports each outcome as JSON.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hostile_checkpoints import Storage, View, legacy_checkpoint, pickled_module_checkpoint, zip_checkpoint

from sr_cli.weights.reading import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
ADDRESS_SPACE_LIMIT = 3 << 30  # torch itself needs ~0.7 GB of address space; every case here wants 10+ GB
SHARED_VIEWS = 3000  # views of one 1 M-element storage: 12 GB of tensors from a 4 MB file


def _hostile_files() -> dict[str, bytes]:
    one = Storage("0", 1)
    million = Storage("0", 1 << 20)
    inflated = 25_000_000  # 100 MB of zeros, deflated to ~100 kB
    return {
        # the 434-byte pickled module, and its 4096^3 variant (a RuntimeError traceback before)
        "module_stride0": pickled_module_checkpoint((1024, 1024, 3072), (0, 0, 0)),
        "module_4096_cubed": pickled_module_checkpoint((4096, 4096, 4096), (0, 0, 0)),
        # a plain dict in a legacy file: torch.load(weights_only=True) reads it, as a view
        "legacy_dict_stride0": legacy_checkpoint({"w": View(one, (1024, 1024, 3072), (0, 0, 0))}, {"0": (1, b"\0" * 4)}),
        "zip_stride0": zip_checkpoint({"w": View(one, (1024, 1024, 3072), (0, 0, 0))}, {"0": b"\0" * 4}),
        "zip_small_strides": zip_checkpoint({"w": View(Storage("0", 4), (4, 1 << 28), (1, 0))}, {"0": b"\0" * 16}),
        "zip_shared_views": zip_checkpoint({f"w{i}": View(million, (1 << 20,), (1,)) for i in range(SHARED_VIEWS)},
                                           {"0": b"\0" * (4 << 20)}),
        "zip_deflated_records": zip_checkpoint({"w": View(Storage("0", inflated), (inflated,), (1,))},
                                               {"0": b"\0" * (4 * inflated)}, zipfile.ZIP_DEFLATED),
    }


_CHILD = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from sr_cli.weights.reading import read_checkpoint
outcomes = {{}}
for path in sorted(Path(sys.argv[1]).iterdir()):
    try:
        raw = read_checkpoint(path)
        outcomes[path.stem] = ["read", sorted(raw.tensors)[:3]]
    except BaseException as error:
        outcomes[path.stem] = [type(error).__name__, str(error)]
print(json.dumps(outcomes))
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[object]]:
    folder = tmp_path_factory.mktemp("hostile")
    for name, data in _hostile_files().items():
        (folder / f"{name}.pth").write_bytes(data)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD.format(limit=ADDRESS_SPACE_LIMIT), str(folder)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.splitlines()[-1])


@pytest.mark.parametrize("case", sorted(_hostile_files()))
def test_a_checkpoint_cannot_allocate_more_than_its_bytes_justify(outcomes: dict[str, list[object]], case: str) -> None:
    kind, message = outcomes[case]
    assert kind == "CheckpointError", f"{case}: {kind}: {message}"
    assert isinstance(message, str) and "\n" not in message and f"{case}.pth" in message
    assert "corrupt" in message


def test_the_hostile_files_are_small() -> None:
    """What makes them hostile: a few hundred bytes (or a few MB) that claim gigabytes."""
    sizes = {name: len(data) for name, data in _hostile_files().items()}
    assert sizes["module_stride0"] < 600 and sizes["zip_stride0"] < 1000
    assert sizes["zip_deflated_records"] < 1_000_000 and sizes["zip_shared_views"] < 8_000_000


def test_legitimate_sharing_and_broadcasts_still_read(tmp_path: Path) -> None:
    """Tied weights (two names, one storage) and a small broadcast constant are real-world and stay readable."""
    weight = torch.randn(16, 3, 3, 3)
    path = tmp_path / "tied.pt"
    torch.save(OrderedDict([("a.weight", weight), ("b.weight", weight), ("bias", torch.ones(1).expand(64))]), path)
    raw = read_checkpoint(path)
    assert torch.equal(raw.tensors["a.weight"], weight) and torch.equal(raw.tensors["b.weight"], weight)
    assert torch.equal(raw.tensors["bias"], torch.ones(64))
    legacy = tmp_path / "tied_legacy.pt"
    torch.save(OrderedDict([("a.weight", weight), ("b.weight", weight)]), legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(legacy).tensors["b.weight"], weight)


def test_a_small_broadcast_in_a_pickled_module_is_read() -> None:
    """Our legacy unpickler allows a tiny stride-0 view (and builds it by value)."""
    from sr_cli.weights.legacy_pickle import read_legacy_objects

    data = legacy_checkpoint({"w": View(Storage("0", 1), (4, 4), (0, 0))}, {"0": (1, struct.pack("<f", 2.5))})
    assert torch.equal(read_legacy_objects(data, "x.pth")["w"], torch.full((4, 4), 2.5))

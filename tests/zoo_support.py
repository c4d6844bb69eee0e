"""Published checkpoints that cannot be downloaded here (no network), made in their official layout and
named by a copy of the manifest, so `--model NAME` loads them offline through the real zoo (fetch from the
cache, sha256 check, strict load). Used by test_front_door.py, test_denoise.py and test_compare.py."""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from sr_cli import zoo
from sr_cli.archs.families import descriptor_for
from sr_cli.archs.runtime import build_module
from sr_cli.weights import allocation
from sr_cli.weights import manifest as manifest_module
from sr_cli.weights.cache import import_file, sha256_of

REPO_ROOT = Path(__file__).resolve().parents[1]


def official_layout(family: str, hyperparameters: dict[str, object], path: Path, *, wrap: str | None = None,
                    seed: int = 0) -> Path:
    """A checkpoint with the published keys and shapes of `family` (our modules use the official names),
    small values (the output stays in range), every tensor a view of one storage (a small file)."""
    with torch.device("meta"):  # shapes only: no time spent initialising 43 M parameters
        module = build_module(family, descriptor_for(family).params_class(**hyperparameters))
    shapes = {key: value.shape for key, value in module.state_dict().items()}
    base = 0.02 * torch.randn(max(shape.numel() for shape in shapes.values()),
                              generator=torch.Generator().manual_seed(seed))
    state = OrderedDict((key, base[: shape.numel()].view(shape)) for key, shape in shapes.items())
    torch.save({wrap: state} if wrap else state, path)
    return path


def allow_shared_storage_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """`official_layout` files share one storage (a 43 M-parameter layout in 10 MB): more tensor bytes than
    file bytes, which the reader refuses from a user (weights.allocation, tests/test_hostile_checkpoints.py)."""
    monkeypatch.setattr(allocation, "ALLOWANCE_BYTES", 1 << 30)


class ManifestNaming:
    """Point entries of (a copy of) the real manifest at files made here: their sha256 and size; the file
    is imported into the (empty) cache as `sr weights import` does, so it loads offline."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.data = json.loads((REPO_ROOT / "weights_manifest.json").read_text())
        self.copy = tmp_path / "weights_manifest.json"
        self.copy.write_text(json.dumps(self.data))
        monkeypatch.setattr(manifest_module, "manifest_path", lambda: self.copy)

    def __call__(self, files: dict[str, Path], edits: dict[str, object] | None = None) -> None:
        for entry in self.data["models"]:
            if entry["name"] in files:
                entry.update(edits or {})
                entry.update(sha256=sha256_of(files[entry["name"]]), size=files[entry["name"]].stat().st_size)
                entry.pop("sha256_prefix", None)
        self.copy.write_text(json.dumps(self.data))
        manifest_module._load_cached.cache_clear()  # read once per path: forget the unedited copy
        for entry_name, path in files.items():
            import_file(zoo.resolve(entry_name), path)

"""Run checkpoints: everything needed to continue a run exactly, written atomically.

`runs/NAME/last.pt` is a plain dict of tensors and Python scalars (loadable with weights_only=True):
model, optimizer, lr schedule, EMA, discriminator (+ its optimizer), AMP scaler, step, the random
states (python, numpy, torch CPU and CUDA) and the data sampler state (seed, next step, data
fingerprint). The data stream itself is a pure function of (seed, step), so the sampler state is
exactly "which step comes next".
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr_cli.errors import TrainingError
from sr_cli.files.atomic import atomic_write

CHECKPOINT_FORMAT = "sr-train-checkpoint/1"
CHECKPOINT_NAME = "last.pt"


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch random states, as tensors/ints (safe for weights_only loading)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    py = states["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    np_state = states["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save through `files.atomic`; each save replaces the previous `last.pt` (the run's own file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, overwrite=True, advice="free disk space or check the run folder's permissions") as handle:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, handle)


def read_run_checkpoint(path: Path) -> dict[str, Any] | None:
    """The payload of an sr run checkpoint (`last.pt`), or None when `path` is any other file (which
    the weights reader then reads, and refuses with its own one-line reason if it cannot)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not ours or unreadable: the weights reader says precisely why
        return None
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        return payload
    return None


def load_checkpoint_payload(path: Path) -> dict[str, Any]:
    """The dict saved by `save_checkpoint`; TrainingError when missing, unreadable or of another format."""
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from; drop --resume to start a new run")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is the same problem for the user
        raise TrainingError(f"{path}: unreadable checkpoint ({error}); delete it to start over") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not an sr training checkpoint ({CHECKPOINT_FORMAT})")
    return payload


def all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values() if t.is_floating_point())

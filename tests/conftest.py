"""Shared fixtures: where ../shared is, and caches that never touch the user's real ones.

tests/ has no __init__.py, so pytest (prepend import mode, rootdir from pyproject.toml) puts tests/ itself
on sys.path, whatever the working directory: helpers are imported as top-level modules
(`from train_support import tiny_options`, `from cli_support import run_cli`), never `from tests.… import`,
which works only when the repository root happens to be on sys.path too.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir_or_none() -> Path | None:
    """SR_SHARED_DIR, else ../shared beside the repo root; None when absent."""
    path = Path(os.environ.get("SR_SHARED_DIR", REPO_ROOT.parent / "shared"))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_dir_or_none()
    if path is None:
        pytest.skip("../shared (benchmark images, real VDSR weights) is absent; set SR_SHARED_DIR to run this")
    return path


@pytest.fixture(scope="session")
def datasets_dir(shared_dir: Path) -> Path:
    return shared_dir / "datasets"


@pytest.fixture(scope="session")
def vdsr_weights(shared_dir: Path) -> Path:
    path = shared_dir / "weights" / "model_epoch_50.pth"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real VDSR weights are needed for this test")
    return path


@pytest.fixture(scope="session")
def keys_dir(shared_dir: Path) -> Path:
    return shared_dir / "weights" / "keys"


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty sr and Hugging Face caches and no network."""
    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SR_CACHE_DIR", str(root / "sr"))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never the real hub; tests start their own server
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SR_OFFLINE", raising=False)
    return root

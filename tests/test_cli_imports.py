"""Importing the CLI loads no heavy library: `sr --help` and usage errors must not wait for torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "numpy", "cv2", "PIL", "huggingface_hub", "safetensors")


def test_importing_the_cli_imports_no_torch_numpy_or_opencv() -> None:
    # A fresh interpreter: this test process has long imported torch through other tests.
    probe = ("import sys, sr_cli.cli.app; "
             f"print(','.join(name for name in {HEAVY!r} if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT,
                            check=True)
    assert result.stdout.strip() == "", f"importing sr_cli.cli.app loaded: {result.stdout.strip()}"


def test_the_probe_sees_a_heavy_import() -> None:
    # The same probe on a module that does import torch: proves the check above can fail.
    probe = "import sys, sr_cli.blend; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT,
                            check=True)
    assert result.stdout.strip() == "True"


def test_help_lists_every_command_without_loading_torch() -> None:
    probe = ("import sys\n"
             "from sr_cli.cli.app import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print('torch loaded' if 'torch' in sys.modules else 'no torch')\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT)
    for command in ("upscale", "eval", "downscale", "blend", "train", "weights"):
        assert command in result.stdout
    assert result.stdout.strip().endswith("no torch")

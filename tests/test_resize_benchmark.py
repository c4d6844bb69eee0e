"""Acceptance: every shipped LR file (Set5, Set14, B100 at X2/X3/X4) is re-made byte-identically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sr_cli.resize import downscale_like_benchmark

SETS = ("set5", "set14", "b100")
SCALES = (2, 3, 4)


def test_all_benchmark_lr_files_are_bit_exact(datasets_dir: Path) -> None:
    checked = 0
    mismatches: list[str] = []
    for name in SETS:
        hr_files = sorted((datasets_dir / name / "HR").glob("*.png"))
        assert hr_files, f"no HR images in {datasets_dir / name}"
        for hr_path in hr_files:
            hr = np.asarray(Image.open(hr_path))
            for s in SCALES:
                lr = np.asarray(Image.open(datasets_dir / name / "LR_bicubic" / f"X{s}" / hr_path.name))
                made = downscale_like_benchmark(hr, s)
                checked += 1
                if made.shape != lr.shape or not np.array_equal(made, lr):
                    mismatches.append(f"{name}/X{s}/{hr_path.name}")
    assert mismatches == []
    assert checked == 357

"""Helpers shared by the tests/test_train*.py files: tiny HR image folders and tiny run options."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sr_cli.train.options import TrainOptions, TrainOverrides, resolve_options


def write_images(folder: Path, count: int = 3, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """Smooth random RGB images (upsampled noise: learnable, not flat) as PNGs under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        coarse = rng.integers(0, 256, size=(size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size[1], size[0]), Image.Resampling.BICUBIC)
        image.save(folder / f"img{index:02d}.png")
    return folder


def tiny_options(data: Path, out: Path, **changes: Any) -> TrainOptions:
    """A seconds-long EDSR x2 run: 2 blocks of 8 features, batch 4 of 8x8 LR patches, no validation.

    `changes` replace fields of those TrainOverrides (None: not given, so the recipe decides)."""
    tiny = TrainOverrides(model="edsr-baseline", scale=2, data=str(data), out=out, val="none", steps=4, batch=4,
                          patch=8, blocks=2, features=8, workers=0, log_every=1, save_every=100, val_every=100,
                          device="cpu")
    return resolve_options(replace(tiny, **changes))


def ddp_worker(rank: int, world_size: int, port: int, data: str, out: str, overrides: dict[str, Any]) -> None:
    """One torchrun-like process (spawned by tests/test_train_ddp.py): env as torchrun sets it, then train."""
    import os

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from sr_cli.train.loop import train

    train(tiny_options(Path(data), Path(out), **overrides))

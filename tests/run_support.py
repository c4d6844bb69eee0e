"""Stand-ins for a model in batch and CLI tests: the pixels they make, plus the RunReport a real
Upscaler.upscale_with_report returns beside them (here a fixed one: nothing ran on an engine).
`NearestX2` and `replace_load_model` drive `sr upscale` in process without any weights."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import sr_cli.api
from sr_cli.api import RunReport, UpscaleOptions

if TYPE_CHECKING:  # not at run time: tests/slow_model_driver.py imports this module in a bare subprocess
    import pytest

STAND_IN_RUN = RunReport(device="cpu", precision="fp32", tile=0, ensemble=False, tiles=1, oom_splits=0,
                         fp32_redos=0, memory_budget=None, cost_per_pixel=None)


def with_report(upscale: Callable[[np.ndarray, object], np.ndarray]) -> Callable[[np.ndarray, object], tuple[np.ndarray, RunReport]]:
    """An array -> array stand-in as the batch runner calls a model: (pixels, report)."""
    def reported(image: np.ndarray, progress: object) -> tuple[np.ndarray, RunReport]:
        return upscale(image, progress), STAND_IN_RUN

    return reported


class StandInUpscaler:
    """What `sr upscale` uses of an Upscaler, with no network behind it: subclasses give `upscale`."""

    name, family, model_scale, output_scale = "stand-in", "test", 2, 2.0
    options = UpscaleOptions()
    device = None  # no torch device: the long-run estimate (cli/estimate.py) leaves a stand-in alone
    device_description = "cpu"
    precision = "fp32"
    overlap = 0
    weights_file: Path | None = None
    weights_source: str | None = None
    weights_sha256: str | None = None

    def check_output_size(self, source: object, height: int, width: int) -> None:
        """The pixel budget is Upscaler's (tests/test_pixel_budget.py); stand-in images are far below it."""

    def upscale(self, image: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        raise NotImplementedError

    def upscale_with_report(self, image: np.ndarray,
                            progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, RunReport]:
        return self.upscale(image, progress), STAND_IN_RUN


def nearest_x2(image: np.ndarray) -> np.ndarray:
    """Nearest-neighbour x2 in the image's own dtype, computed independently of any stand-in (np.kron)."""
    block = np.ones((2, 2, 1) if image.ndim == 3 else (2, 2), dtype=image.dtype)
    return np.kron(image, block)


class NearestX2(StandInUpscaler):
    """Stands in for an Upscaler: `nearest_x2` of its input, reporting 3 tiles of progress on the way;
    `interrupt_on_call` raises Ctrl-C in that call (1 = the first image), as a user's Ctrl-C mid-batch."""

    name = "nearest"

    def __init__(self, interrupt_on_call: int | None = None) -> None:
        self.calls = 0
        self.interrupt_on_call = interrupt_on_call

    def upscale(self, image: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        self.calls += 1
        if self.calls == self.interrupt_on_call:
            raise KeyboardInterrupt
        for done in range(1, 4):
            if progress is not None:
                progress(done, 3)
        return nearest_x2(image)


def replace_load_model(monkeypatch: pytest.MonkeyPatch, model: StandInUpscaler | None) -> list[tuple[object, ...]]:
    """`sr_cli.api.load_model` hands out `model`; None means "must not be loaded" (a load fails the test).
    Returns the calls it received, (args, kwargs) each, for tests that count loads."""
    calls: list[tuple[object, ...]] = []

    def fake_load_model(*args: object, **kwargs: object) -> StandInUpscaler:
        calls.append((args, kwargs))
        if model is None:
            raise AssertionError("the model was loaded although the command should have stopped before loading it")
        return model

    monkeypatch.setattr(sr_cli.api, "load_model", fake_load_model)
    return calls

"""Stand-ins for a model in batch and CLI tests: the pixels they make, plus the RunReport a real
Upscaler.upscale_with_report returns beside them (here a fixed one: nothing ran on an engine)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sr_cli.api import RunReport, UpscaleOptions

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

"""`python tests/slow_model_driver.py ARGS...` = `sr ARGS...` with a slow nearest-neighbour x2 stand-in for
every model (tests/test_batch_signals.py sends it real signals). SLOW_SECONDS: time per image."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import numpy as np
from run_support import StandInUpscaler

import sr_cli.api


class SlowNearestX2(StandInUpscaler):
    name = "slow"

    def upscale(self, image: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        deadline = time.monotonic() + float(os.environ.get("SLOW_SECONDS", "0.5"))
        while time.monotonic() < deadline:  # many short sleeps: a model busy in Python code, not blocked in one call
            time.sleep(0.01)
        return np.kron(image, np.ones((2, 2, 1), dtype=image.dtype))


def fake_load_model(*args: object, **kwargs: object) -> SlowNearestX2:
    return SlowNearestX2()


if __name__ == "__main__":
    sr_cli.api.load_model = fake_load_model  # type: ignore[assignment]
    from sr_cli.cli.app import main

    main(sys.argv[1:])

"""How often the engine's progress moves, and what counting it costs.

    python3 bench/progress_cadence.py [--side 128] [--model realesrgan-x4plus] [--runs 5]

1. Cadence: the bundled RRDB x4 (Real-ESRGAN x4plus) on one random side x side image, whole image (tile 0) on
   the CPU, a clock reading at every progress report: total time, the first report (0/total, before the first
   forward), and the mean and largest gap between reports (the largest is one of the convolutions that run
   at 4x or 16x the input's pixels).
2. Cost: the same model on a small image (where a hook's few microseconds weigh most), `--runs` interleaved
   pairs with and without a progress callback, in process CPU seconds (on a shared machine wall time mostly
   measures the other processes), outputs compared bit for bit.
"""
from __future__ import annotations

import argparse
import statistics
import time
from itertools import pairwise

import numpy as np
import torch

from sr_cli.api import UpscaleOptions, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--model", default="realesrgan-x4plus")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    upscaler = load_model(args.model, options=UpscaleOptions(tile=0, device="cpu"))
    rng = np.random.default_rng(0)
    image = (rng.random((args.side, args.side, 3)) * 255).astype(np.uint8)
    stamps: list[tuple[float, int, int]] = []
    started = time.perf_counter()
    upscaler.upscale(image, lambda done, total: stamps.append((time.perf_counter() - started, done, total)))
    gaps = [later[0] - earlier[0] for earlier, later in pairwise(stamps)]
    print(f"{args.model} whole {args.side}x{args.side} on {torch.get_num_threads()} CPU threads: "
          f"{stamps[-1][0]:.1f} s, {len(stamps)} reports of total {stamps[-1][2]}, first (0/{stamps[0][2]}) "
          f"at {stamps[0][0]:.2f} s, mean gap {statistics.mean(gaps):.2f} s, largest gap {max(gaps):.2f} s")

    small = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    plain: list[float] = []
    counted: list[float] = []
    for _ in range(args.runs):
        began = time.process_time()
        without = upscaler.upscale(small)
        plain.append(time.process_time() - began)
        began = time.process_time()
        with_progress = upscaler.upscale(small, lambda done, total: None)
        counted.append(time.process_time() - began)
        assert np.array_equal(without, with_progress), "progress changed the output"
    print(f"32x32, median of {args.runs}: {statistics.median(plain):.3f} CPU s without progress, "
          f"{statistics.median(counted):.3f} CPU s with it; outputs identical")


if __name__ == "__main__":
    main()

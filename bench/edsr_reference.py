"""EDSR baseline in sr against the EDSR-PyTorch forward, the same weights, rounds interleaved (issue 13, goal 1).

    python3 bench/edsr_reference.py                          # x4 on 128x128, 2 threads, 6 rounds
    python3 bench/edsr_reference.py --side 256 --threads 1 --rounds 3 --json edsr.json

EDSR has no ncnn export and is not in Real-ESRGAN, so its one peer is its authors' code. `EDSRPyTorch` below is
that code's forward written again from EDSR-PyTorch's src/model/edsr.py and common.py, independently of
sr_cli/archs/edsr.py: NCHW, inputs in [0, 255] (rgb_range 255), MeanShift as a 1x1 conv, `res = body(x) *
res_scale; res += x` in every block, the Upsampler as conv + PixelShuffle(2) twice for x4. Its state dict has the
official keys (sub_mean, head.0, body.N.body.0/2, body.16, tail.0.0, tail.0.2, tail.1, add_mean); it is seeded at
the published baseline size (16 blocks, 64 features), saved as a .pt, and sr loads that file the way it loads the
authors' download (`sr_cli.api.load_model`, fp32, whole image). The speed does not depend on the weights' values.

Figures: median wall and process-CPU seconds over the rounds, per cent of the conv peak (torch conv2d 64->64 3x3
channels_last, measured between every two calls, as bench/peers.py does), the max and mean difference of sr's
8-bit output from the reference's. Not a test dependency.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: peers.py's conv peak and timer
from peers import DEFAULT_IMAGE, Result, conv_peak_engine, test_image, timed  # noqa: E402

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K's, as EDSR-PyTorch's args default
RGB_RANGE = 255.0


class MeanShift(nn.Conv2d):
    def __init__(self, sign: int) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * RGB_RANGE * torch.tensor(RGB_MEAN))  # type: ignore[union-attr]  # bias=True
        self.requires_grad_(False)


class ResBlock(nn.Module):
    def __init__(self, features: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(True),
                                  nn.Conv2d(features, features, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        res = self.body(x).mul(self.res_scale)
        res += x
        return res


class EDSRPyTorch(nn.Module):
    """EDSR-PyTorch's EDSR at x2/x3/x4 (x3: one conv + PixelShuffle(3); x2/x4: one or two of PixelShuffle(2))."""

    def __init__(self, blocks: int = 16, features: int = 64, scale: int = 4, res_scale: float = 1.0) -> None:
        super().__init__()
        self.sub_mean, self.add_mean = MeanShift(-1), MeanShift(+1)
        self.head = nn.Sequential(nn.Conv2d(3, features, 3, padding=1))
        self.body = nn.Sequential(*[ResBlock(features, res_scale) for _ in range(blocks)],
                                  nn.Conv2d(features, features, 3, padding=1))
        steps = [3] if scale == 3 else [2] * (scale // 2)
        upsampler: list[nn.Module] = []
        for factor in steps:
            upsampler += [nn.Conv2d(features, factor * factor * features, 3, padding=1), nn.PixelShuffle(factor)]
        self.tail = nn.Sequential(nn.Sequential(*upsampler), nn.Conv2d(features, 3, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.sub_mean(x))
        res = self.body(x)
        res += x
        return self.add_mean(self.tail(res))


def conv_flops(scale: int, side: int) -> float:
    """2 x multiply-adds of every conv in one forward at side x side (meta device)."""
    total = 0.0

    def count(conv: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        assert isinstance(conv, nn.Conv2d)
        total += 2.0 * conv.kernel_size[0] * conv.kernel_size[1] * conv.in_channels * output[0].numel()

    with torch.device("meta"):
        probe = EDSRPyTorch(scale=scale)
    for sub in probe.modules():
        if isinstance(sub, nn.Conv2d):
            sub.register_forward_hook(count)
    with torch.no_grad():
        probe(torch.empty(1, 3, side, side, device="meta"))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=128, help="input side (a centre crop of --image)")
    parser.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    from sr_cli.api import UpscaleOptions, load_model

    torch.manual_seed(0)
    reference = EDSRPyTorch(scale=args.scale).eval()
    image = test_image(args.image, args.side)
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / f"edsr_baseline_x{args.scale}.seeded.pt"
        torch.save(reference.state_dict(), weights)
        upscaler = load_model(weights, args.scale, options=UpscaleOptions(tile=0, device="cpu", precision="fp32"))

    def run_reference(pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None].float()  # a writable copy
        with torch.inference_mode():
            y = reference(x)[0].clamp(0, RGB_RANGE).round()
        return y.permute(1, 2, 0).to(torch.uint8).numpy()

    engines: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sr": upscaler.upscale,
                                                              "EDSR-PyTorch forward": run_reference}
    results = {name: Result(name) for name in engines}
    peak_run, peak_flops = conv_peak_engine(args.threads)
    peak = Result("conv peak")
    outputs: dict[str, np.ndarray] = {}
    for engine in engines.values():  # warm-up: kernels picked, allocators primed
        engine(np.ascontiguousarray(image[:32, :32]))
        peak_run()
    names = list(engines)
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            outputs[name] = timed(partial(engines[name], image), results[name])
            timed(peak_run, peak)
    flops = conv_flops(args.scale, args.side)
    peak_gflops = peak_flops / peak.wall / 1e9
    difference = np.abs(outputs["sr"].astype(np.int16) - outputs["EDSR-PyTorch forward"].astype(np.int16))
    rows = []
    print(f"EDSR baseline x{args.scale}, {args.side}x{args.side}, {args.threads} threads, {args.rounds} rounds; conv peak "
          f"{peak_gflops:.1f} GFLOP/s; load average {os.getloadavg()[0]:.2f}; sr vs reference: max "
          f"{int(difference.max())} levels, mean {float(difference.mean()):.4f}")
    print("| engine | median s | rounds | CPU s | % of conv peak | x sr |")
    print("|---|---|---|---|---|---|")
    own = results["sr"].wall
    for result in results.values():
        percent = 100 * flops / result.wall / 1e9 / peak_gflops
        rows.append({"engine": result.engine, "median_wall_s": result.wall, "wall_s": result.wall_s,
                     "median_cpu_s": result.cpu, "percent_of_peak": percent, "x_sr": result.wall / own})
        print(f"| {result.engine} | {result.wall:.3f} | {' / '.join(f'{s:.3f}' for s in result.wall_s)} | "
              f"{result.cpu:.3f} | {percent:.1f} | {result.wall / own:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"side": args.side, "scale": args.scale, "threads": args.threads,
                                         "conv_peak_gflops": peak_gflops, "max_levels": int(difference.max()),
                                         "mean_levels": float(difference.mean()),
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

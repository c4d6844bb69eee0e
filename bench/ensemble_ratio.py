"""`--ensemble` cost: the time of an 8-view self-ensemble over the time of a plain run, per family.

    python3 bench/ensemble_ratio.py                  # every family, 3 interleaved rounds, table on stdout
    python3 bench/ensemble_ratio.py --rounds 9 --families rrdb,srvgg --json out.json
    python3 bench/ensemble_ratio.py --size-factor 4   # 4x the sides (an idle machine: a few minutes)

Issue 13 goal 4: ensemble <= 8.3x plain. Three ways are timed through `sr_cli.engine.upscale_tensor`
(fp32, CPU, the layout the API uses: channels_last where the family descriptor says so, today every family):
`plain`, `ensemble` (the engine's views, batched as it batches them: on the CPU at most 16384 input pixels a
forward, so one batch of 8 only for small windows; engine/ensemble.py) and `one-by-one` (the same 8 views,
one forward each, the reference the batching is measured against; whole image only). Each case runs once
whole image and once tiled (cores of half the side, the model's own overlap: windows clipped at the border
are not square, so their views come in two shapes of 4). Rounds are interleaved (every case and mode
once per round, after one warm-up of each), so a machine that gets busier or quieter moves all modes
alike; a ratio is taken within a round, and the table shows the median over rounds and the range.
The load average before and after is printed: on a shared machine the ratios are what to read.
Models are random-init at their published sizes (speed does not depend on the weight values).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sr_cli.api import CHANNELS_LAST_ON_CPU
from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.rrdb import RRDBParams
from sr_cli.archs.runtime import SRNet, build_module, to_srnets
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.archs.vdsr import VDSRParams
from sr_cli.engine import EnginePlan, upscale_tensor
from sr_cli.engine import ensemble as ensemble_module
from sr_cli.engine import upscale as upscale_module

MODES = ("plain", "ensemble", "one-by-one")


@dataclass(frozen=True)
class Case:
    label: str
    build: Callable[[], SRNet]
    side: int  # input side (VDSR: the already upscaled Y plane it runs on)


def _net(family: str, params: object, scale: int | None = None) -> SRNet:
    torch.manual_seed(0)
    module = build_module(family, params)
    nets = to_srnets(module)
    return (nets[scale] if scale is not None else next(iter(nets.values()))).eval()


CASES: dict[str, Case] = {
    "edsr": Case("EDSR baseline x2 (16x64)", lambda: _net("edsr", EDSRParams(scale=2)), 48),
    "mdsr": Case("MDSR baseline, x2 branch", lambda: _net("mdsr", MDSRParams(), 2), 48),
    "rrdb": Case("RRDB x4 (23 blocks, ESRGAN)", lambda: _net("rrdb", RRDBParams()), 24),
    "srvgg": Case("SRVGG x4 (animevideov3 size)", lambda: _net("srvgg", SRVGGParams(num_conv=16)), 64),
    "vdsr": Case("VDSR (20x64) on a Y plane", lambda: _net("vdsr", VDSRParams()), 64),
}


def one_view_at_a_time(run: Callable[[Tensor], Tensor], x: Tensor, *, max_batch_pixels: int | None = None) -> Tensor:
    """The definition, unbatched: each view through the model alone, undone, summed, averaged."""
    total: Tensor | None = None
    for k in ensemble_module.VIEWS:
        view = ensemble_module.apply_view(x, k).contiguous(memory_format=torch.channels_last if x.is_contiguous(
            memory_format=torch.channels_last) else torch.contiguous_format)  # a fair forward: dense input
        restored = ensemble_module.undo_view(run(view).float(), k)
        total = restored.clone() if total is None else total.add_(restored)
    assert total is not None
    return total / len(ensemble_module.VIEWS)


def timed(net: SRNet, image: Tensor, tile: int, mode: str, channels_last: bool) -> float:
    plan = EnginePlan(scale=net.scale, device=torch.device("cpu"), precision="fp32", tile=tile, overlap=net.min_overlap,
                      size_multiple=net.size_multiple, ensemble=mode != "plain", channels_last=channels_last)
    batched = upscale_module.ensemble_forward
    if mode == "one-by-one":
        upscale_module.ensemble_forward = one_view_at_a_time
    try:
        started = time.perf_counter()
        upscale_tensor(net, image, plan)
        return time.perf_counter() - started
    finally:
        upscale_module.ensemble_forward = batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-factor", type=int, default=1,
                        help="multiply every input side by this (default 1: sizes for a loaded machine)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.families.split(",") if name.strip()]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    setups = []
    for name in chosen:
        case = CASES[name]
        net = case.build()
        channels_last = net.family in CHANNELS_LAST_ON_CPU
        if channels_last:
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stubs
        side = case.side * max(args.size_factor, 1)
        image = torch.rand(net.in_channels, side, side, generator=torch.Generator().manual_seed(1))
        for tile in (0, side // 2):  # one-by-one only whole: it is the reference, not a contender
            modes = MODES if tile == 0 else MODES[:2]
            setups.append((name, case, net, image, tile, channels_last, modes))
    seconds: dict[tuple[str, int, str], list[float]] = {}
    with torch.inference_mode():
        for round_index in range(args.rounds + 1):  # round 0: warm-up, not kept
            for name, _case, net, image, tile, channels_last, modes in setups:
                for mode in modes:
                    elapsed = timed(net, image, tile, mode, channels_last)
                    if round_index:
                        seconds.setdefault((name, tile, mode), []).append(elapsed)
            print(f"round {round_index}/{args.rounds} done ({'warm-up' if round_index == 0 else 'kept'}); load average "
                  f"{os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    rows = []
    print("\n| model | input | tile | plain s | ensemble s | ensemble / plain (median, range) | one-by-one / plain | "
          "batched / one-by-one |")
    print("|---|---|---|---|---|---|---|---|")
    for name, case, _model, image, tile, _layout, modes in setups:
        plain, batched = seconds[(name, tile, "plain")], seconds[(name, tile, "ensemble")]
        single = seconds.get((name, tile, "one-by-one"), [float("nan")] * len(plain))
        ratios = [b / p for b, p in zip(batched, plain, strict=True)]
        single_ratios = [s / p for s, p in zip(single, plain, strict=True)]
        gain = [b / s for b, s in zip(batched, single, strict=True)]
        row = {"model": name, "label": case.label, "input": f"{image.shape[-1]}x{image.shape[-2]}",
               "tile": tile, "plain_s": statistics.median(plain), "ensemble_s": statistics.median(batched),
               "one_by_one_s": statistics.median(single), "ratio": statistics.median(ratios),
               "ratio_min": min(ratios), "ratio_max": max(ratios), "one_by_one_ratio": statistics.median(single_ratios),
               "batched_over_one_by_one": statistics.median(gain)}
        rows.append(row)
        print(f"| {case.label} | {row['input']} | {tile or 'whole'} | {row['plain_s']:.3f} | {row['ensemble_s']:.3f} | "
              f"**{row['ratio']:.2f}x** ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | "
              + (f"{row['one_by_one_ratio']:.2f}x | {row['batched_over_one_by_one']:.2f} |" if len(modes) == 3 else "- | - |"))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.rounds} rounds")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()

"""Engine throughput: output megapixels per second and peak memory, per model family, tiled vs whole image.

    python3 bench/engine_throughput.py                     # all families, table on stdout
    python3 bench/engine_throughput.py --families vdsr --runs 5 --json out.json

Models are random-init at the published sizes (speed does not depend on the weight values) except VDSR,
which uses the real ../shared/weights/model_epoch_50.pth when present. Each measurement is the median of
`--runs` timed runs after one warm-up run, through `sr_cli.engine.upscale_tensor` with the model's own
min_overlap, in the memory layout the API uses on the CPU (channels_last for every family today, see
sr_cli.api.CHANNELS_LAST_ON_CPU; `--contiguous` for NCHW everywhere). Peak memory is the growth of the process's resident-set high-water mark (VmHWM in
/proc/self/status, reset before each configuration by writing 5 to /proc/self/clear_refs, after glibc's
malloc_trim returned freed heap to the OS) over the resident size before it: torch allocates outside Python, so tracemalloc would not see it.

A second table compares contiguous (NCHW) and channels_last memory layouts for the whole-image forward.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sr_cli.api import CHANNELS_LAST_ON_CPU
from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.rrdb import RRDBParams
from sr_cli.archs.runtime import SRNet, build_module, to_srnets
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.archs.vdsr import VDSRParams
from sr_cli.engine import EnginePlan, TileStats, upscale_tensor

REPO = Path(__file__).resolve().parents[1]
VDSR_WEIGHTS = Path(os.environ.get("SR_SHARED_DIR", REPO.parent / "shared")) / "weights" / "model_epoch_50.pth"


@dataclass(frozen=True)
class Case:
    label: str
    build: Callable[[], SRNet]
    side: int  # input side (VDSR: the already upscaled side it runs on)
    tiles: tuple[int, ...]  # besides 0 (whole image)


@dataclass
class Row:
    model: str
    input: str
    tile: str
    overlap: int
    tiles: int
    seconds: float
    output_mp_per_s: float
    peak_mib: float


def _vdsr() -> SRNet:
    if VDSR_WEIGHTS.is_file():
        from sr_cli.weights.loading import load_checkpoint, srnet_for

        return srnet_for(load_checkpoint(VDSR_WEIGHTS), 2.0)
    return SRNet(build_module("vdsr", VDSRParams()))


CASES: dict[str, Case] = {
    "edsr-baseline-x4": Case("EDSR baseline x4 (16x64)",
                             lambda: SRNet(build_module("edsr", EDSRParams(16, 64, 4, 1.0))), 96, (32, 64)),
    "edsr-x2": Case("EDSR full x2 (32x256, small image)",
                    lambda: SRNet(build_module("edsr", EDSRParams(32, 256, 2, 0.1))), 48, ()),
    # no tiles for full EDSR: its min_overlap (68) makes any tile of a 48 px image a 180+ px window
    "mdsr-baseline-x2": Case("MDSR baseline, x2 branch",
                             lambda: to_srnets(build_module("mdsr", MDSRParams(16, 64)))[2], 96, (32, 64)),
    "rrdb-x4": Case("RRDB x4 (23 blocks, ESRGAN)",
                    lambda: SRNet(build_module("rrdb", RRDBParams(scale=4))), 64, ()),
    # no tiles for RRDB on this CPU: with min_overlap 48 any tile of a 64 px image is a 160 px window
    "srvgg-x4": Case("SRVGG compact x4 (realesr-general-x4v3 size)",
                     lambda: SRNet(build_module("srvgg", SRVGGParams())), 96, (48,)),
    "vdsr": Case("VDSR (real weights) on a 2x-upscaled Y", _vdsr, 256, (64, 128)),
}


def rss_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc malloc_trim), so RSS is the live set before a measurement
    and a previous, larger configuration does not hide this one's peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak() -> bool:
    release_free_heap()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def measure(net: SRNet, image: torch.Tensor, tile: int, runs: int, channels_last: bool) -> tuple[float, float, int]:
    """(median seconds, peak MiB above the starting RSS, tiles) of `runs` engine calls after a warm-up."""
    net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # type: ignore[call-overload]

    plan = EnginePlan(scale=net.scale, device=torch.device("cpu"), precision="fp32", tile=tile, overlap=net.min_overlap,
                      size_multiple=net.size_multiple, channels_last=channels_last)

    def once() -> int:
        stats = TileStats()
        upscale_tensor(net, image, plan, stats=stats)
        return stats.tiles_pasted

    once()
    reset_peak()
    start_rss = rss_kib("VmRSS")
    times = []
    tiles = 0
    for _ in range(runs):
        began = time.perf_counter()
        tiles = once()
        times.append(time.perf_counter() - began)
    peak = (rss_kib("VmHWM") - start_rss) / 1024
    return statistics.median(times), peak, tiles


def channels_last_speedup(net: SRNet, image: torch.Tensor, runs: int) -> tuple[float, float]:
    """(contiguous seconds, channels_last seconds), whole-image forward, medians of interleaved runs
    (A, B, A, B, ...: load from other processes on a shared machine hits both layouts alike)."""
    x = image[None]
    layouts = (torch.contiguous_format, torch.channels_last)
    times: dict[torch.memory_format, list[float]] = {layout: [] for layout in layouts}
    with torch.inference_mode():
        for repetition in range(runs + 1):
            for layout in layouts:
                net.to(memory_format=layout)  # type: ignore[call-overload]  # missing from torch's stubs
                batch = x.contiguous(memory_format=layout)
                began = time.perf_counter()
                net(batch)
                if repetition > 0:  # the first round is the warm-up
                    times[layout].append(time.perf_counter() - began)
    net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return statistics.median(times[layouts[0]]), statistics.median(times[layouts[1]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-channels-last", action="store_true", help="skip the layout comparison table")
    parser.add_argument("--contiguous", action="store_true", help="NCHW instead of channels_last in the main table")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, peak reset: {reset_peak()}, "
          f"layout: {'NCHW' if args.contiguous else 'the API CPU layout (' + ', '.join(sorted(CHANNELS_LAST_ON_CPU)) + ' channels_last)'}")
    rows: list[Row] = []
    layouts: list[dict[str, object]] = []
    print(f"{'model':38s} {'input':>8s} {'tile':>6s} {'ovl':>4s} {'tiles':>5s} {'s':>8s} {'out MP/s':>9s} {'peak MiB':>9s}")
    for key in args.families:
        case = CASES[key]
        net = case.build().eval()
        in_ch = net.in_channels
        image = torch.rand(in_ch, case.side, case.side, generator=torch.Generator().manual_seed(1))
        out_mp = (case.side * net.scale) ** 2 / 1e6
        for tile in (0, *case.tiles):
            layout_nhwc = not args.contiguous and net.family in CHANNELS_LAST_ON_CPU
            seconds, peak, tiles = measure(net, image, tile, args.runs, layout_nhwc)
            row = Row(key, f"{case.side}x{case.side}", str(tile or "whole"), net.min_overlap, tiles, seconds,
                      out_mp / seconds, peak)
            rows.append(row)
            print(f"{case.label:38s} {row.input:>8s} {row.tile:>6s} {row.overlap:>4d} {row.tiles:>5d} "
                  f"{row.seconds:8.3f} {row.output_mp_per_s:9.4f} {row.peak_mib:9.1f}", flush=True)
        if not args.no_channels_last:
            nchw, nhwc = channels_last_speedup(net, image, args.runs)
            layouts.append({"model": key, "contiguous_s": nchw, "channels_last_s": nhwc, "speedup": nchw / nhwc})
    if layouts:
        print("\n# whole-image forward, contiguous vs channels_last (median seconds)")
        for entry in layouts:
            print(f"{entry['model']:20s} NCHW {entry['contiguous_s']:.3f}  channels_last {entry['channels_last_s']:.3f}"
                  f"  speedup x{entry['speedup']:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "channels_last": layouts}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

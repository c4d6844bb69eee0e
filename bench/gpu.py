"""GPU figures for issue 13 goal 6, in one run on one CUDA device (about 3-5 minutes on a data-centre GPU).

    python3 bench/gpu.py                      # everything, 3 timed rounds per figure
    python3 bench/gpu.py --quick              # smaller images, 1 round, no torch.compile: about a minute
    python3 bench/gpu.py --json gpu.json      # also write the figures as JSON
    SR_BENCH_PEERS_PYTHON=~/.cache/sr-bench-peers/venv/bin/python  # see "peer" below

Without CUDA it prints why on stderr and exits 0 having measured nothing.

Networks (random weights, seeded: the work and the speed do not depend on the values): EDSR full (32 blocks,
256 features, res_scale 0.1, x4) and RRDB (Real-ESRGAN x4plus's shape: 23 blocks, 64 features, growth 32).
Input: a crop of Set14 `monarch.png` from SR_SHARED_DIR (reflected to the size needed), noise when absent.

Figures (median wall seconds over the rounds, each after one untimed warm-up call; CUDA synchronised):
- peak: the device's dense bf16 tensor-core peak from NVIDIA's data sheets where the name is known, and a bf16
  8192^3 matmul measured in the same run (what the GPU reaches here);
- whole: the network alone on a device tensor (no transfers) and the engine's `upscale_tensor` (host image in,
  host float32 out, tile 0), bf16 and fp16, NCHW and channels_last: achieved TFLOP/s = 2 x the convs'
  multiply-accumulates (engine/progress.py) / time, and the per cent of both peaks;
- tiles: RRDB bf16 tiled at 256 against the whole image (tile overhead: time ratio, and the work ratio
  = window pixels / image pixels, with the model's own min_overlap);
- pipeline: RRDB bf16 at tile 128, pinned + stream-overlapped transfers on/off x batches of tiles on/off;
- compile: RRDB bf16 whole image with torch.compile (compile time apart), or the reason it fell back;
- peer: Real-ESRGAN's `RealESRGANer` (tile 256, tile_pad 10, half=True) against sr fp16 at tile 256 on the
  same weights and image, with the max difference in 8-bit levels of both against sr's whole-image fp32
  output. It needs realesrgan + basicsr: bench/peers.py prepares a venv with them (its torchvision import
  shim is reused here); run this script with that venv's python, else the peer line says it was skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("SR_SHARED_DIR", REPO.parent / "shared"))
IMAGE = SHARED / "datasets" / "set14" / "HR" / "monarch.png"
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets (SXM parts where both exist).
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "GH200": 989.4, "A100": 312.0, "L40S": 362.1, "L40": 181.0,
                    "L4": 121.0, "A10": 125.0, "RTX 4090": 165.2, "RTX 6000 Ada": 364.2}

from sr_cli.archs.edsr import EDSRParams  # noqa: E402 -- after the repository is on sys.path
from sr_cli.archs.rrdb import RRDBParams  # noqa: E402
from sr_cli.archs.runtime import SRNet, build_module  # noqa: E402
from sr_cli.engine import EnginePlan, TileStats, upscale_tensor  # noqa: E402
from sr_cli.engine.blending import blend_plan  # noqa: E402
from sr_cli.engine.compiled import CompiledForward  # noqa: E402
from sr_cli.engine.precision import Precision, autocast_for  # noqa: E402
from sr_cli.engine.progress import profile_forward  # noqa: E402
from sr_cli.engine.tiling import tile_grid  # noqa: E402


def median_seconds(call: Callable[[], object], rounds: int) -> float:
    call()  # warm-up: cuDNN autotuning, allocator growth, lazy init
    times = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_peak(device: torch.device, rounds: int) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device)
    sheet = next((peak for key, peak in sorted(BF16_PEAK_TFLOPS.items(), key=lambda kv: -len(kv[0])) if key in name),
                 None)
    side = 8192
    a = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    b = torch.randn(side, side, device=device, dtype=torch.bfloat16)
    seconds = median_seconds(lambda: a @ b, rounds)
    return {"name": name, "sheet_bf16_tflops": sheet, "matmul_bf16_tflops": 2.0 * side**3 / seconds / 1e12}


def networks(device: torch.device) -> dict[str, SRNet]:
    torch.manual_seed(0)
    edsr = SRNet(build_module("edsr", EDSRParams(n_resblocks=32, n_feats=256, res_scale=0.1, scale=4)))
    rrdb = SRNet(build_module("rrdb", RRDBParams(num_feat=64, num_block=23, num_grow_ch=32, scale=4)))
    return {"edsr-full": edsr.eval().to(device), "rrdb": rrdb.eval().to(device)}


def test_image(side: int) -> Tensor:
    if IMAGE.is_file():
        from PIL import Image

        rgb = np.asarray(Image.open(IMAGE).convert("RGB"), dtype=np.float32) / 255.0
        rgb = np.pad(rgb, ((0, max(side - rgb.shape[0], 0)), (0, max(side - rgb.shape[1], 0)), (0, 0)),
                     mode="symmetric")[:side, :side]
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    return torch.rand(3, side, side, generator=torch.Generator().manual_seed(1))


def set_layout(net: nn.Module, channels_last: bool) -> None:
    net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # type: ignore[call-overload]


def percent(tflops: float, peak: float | None) -> float | None:
    return None if not peak else 100.0 * tflops / peak


def engine_call(net: Callable[[Tensor], Tensor], srnet: SRNet, image: Tensor, device: torch.device, *,
                precision: Precision, tile: int, channels_last: bool, stats: TileStats | None = None,
                batch: int | None = None, overlap_transfers: bool | None = None) -> Callable[[], Tensor]:
    plan = EnginePlan(scale=srnet.scale, device=device, precision=precision, tile=tile, overlap=srnet.min_overlap,
                      min_overlap=srnet.min_overlap, exact_overlap=srnet.exact_overlap,
                      size_multiple=srnet.size_multiple, channels_last=channels_last, batch=batch,
                      overlap_transfers=overlap_transfers)

    def run() -> Tensor:
        return upscale_tensor(net, image, plan, stats=stats)
    return run


def network_only(net: nn.Module, x: Tensor, device: torch.device, precision: Precision) -> Callable[[], Tensor]:
    """The network's forward on a device tensor: no transfers, no tiles, no blend."""
    def run() -> Tensor:
        with torch.inference_mode(), autocast_for(device, precision):
            return net(x)
    return run


def whole_figures(nets: dict[str, SRNet], sides: dict[str, int], device: torch.device, peak: dict[str, Any],
                  rounds: int) -> list[dict[str, Any]]:
    rows = []
    for name, net in nets.items():
        side = sides[name]
        image = test_image(side)
        flops = 2.0 * profile_forward(net, in_channels=3, size_multiple=net.size_multiple, device=device).macs_per_pixel \
            * side * side
        precisions: tuple[Precision, ...] = ("bf16", "fp16")
        for precision in precisions:
            for channels_last in (False, True):
                set_layout(net, channels_last)
                x = image[None].to(device)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                network_s = median_seconds(network_only(net, x, device, precision), rounds)
                stats = TileStats()
                engine_s = median_seconds(engine_call(net, net, image, device, precision=precision, tile=0,
                                                      channels_last=channels_last, stats=stats), rounds)
                tflops = flops / network_s / 1e12
                rows.append({"figure": "whole", "model": name, "input": f"{side}x{side}", "precision": precision,
                             "layout": "channels_last" if channels_last else "nchw", "network_s": network_s,
                             "engine_s": engine_s, "network_tflops": tflops,
                             "engine_tflops": flops / engine_s / 1e12,
                             "pct_sheet_peak": percent(tflops, peak["sheet_bf16_tflops"]),
                             "pct_matmul_peak": percent(tflops, peak["matmul_bf16_tflops"]),
                             "fp32_redos": stats.fp32_redos})
        set_layout(net, False)
    return rows


def tile_figures(net: SRNet, side: int, device: torch.device, rounds: int) -> list[dict[str, Any]]:
    image = test_image(side)
    set_layout(net, True)
    whole_s = median_seconds(engine_call(net, net, image, device, precision="bf16", tile=0, channels_last=True), rounds)
    rows = []
    plan = blend_plan(net.min_overlap, min_overlap=net.min_overlap, exact_overlap=net.exact_overlap)
    for tile in (256,):
        grid = tile_grid(side, side, tile, plan.reach, net.size_multiple)
        work = sum(t.window_rows.length * t.window_cols.length for t in grid) / (side * side)
        seconds = median_seconds(engine_call(net, net, image, device, precision="bf16", tile=tile, channels_last=True),
                                 rounds)
        rows.append({"figure": "tiles", "model": "rrdb", "input": f"{side}x{side}", "tile": tile, "tiles": len(grid),
                     "whole_s": whole_s, "tiled_s": seconds, "time_ratio": seconds / whole_s, "work_ratio": work})
    for overlapped in (False, True):
        for batched in (False, True):
            stats = TileStats()
            seconds = median_seconds(engine_call(net, net, image, device, precision="bf16", tile=128,
                                                 channels_last=True, stats=stats, batch=None if batched else 1,
                                                 overlap_transfers=overlapped), rounds)
            rows.append({"figure": "pipeline", "model": "rrdb", "input": f"{side}x{side}", "tile": 128,
                         "overlap_transfers": overlapped, "batch": "auto" if batched else 1,
                         "largest_batch": stats.largest_batch, "seconds": seconds})
    set_layout(net, False)
    return rows


def compile_figure(net: SRNet, side: int, device: torch.device, rounds: int) -> dict[str, Any]:
    image = test_image(side)
    set_layout(net, True)
    eager_s = median_seconds(engine_call(net, net, image, device, precision="bf16", tile=0, channels_last=True), rounds)
    compiled = CompiledForward(net)
    call = engine_call(compiled, net, image, device, precision="bf16", tile=0, channels_last=True)
    start = time.perf_counter()
    call()
    torch.cuda.synchronize()
    first_s = time.perf_counter() - start
    compiled_s = median_seconds(call, rounds)
    set_layout(net, False)
    return {"figure": "compile", "model": "rrdb", "input": f"{side}x{side}", "eager_s": eager_s,
            "first_call_s": first_s, "compiled_s": compiled_s, "speedup": eager_s / compiled_s,
            "compiled": compiled.compiled, "fallback_reason": compiled.fallback_reason}


def peer_figure(net: SRNet, side: int, device: torch.device, rounds: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "bench"))
    import peers  # bench/peers.py: its torchvision shim lets basicsr import against this torch

    peers.install_torchvision_shim()
    try:
        from basicsr.archs.rrdbnet_arch import RRDBNet
        from realesrgan import RealESRGANer
    except ImportError as error:
        return {"figure": "peer", "skipped": f"realesrgan/basicsr not importable ({error}); run python3 "
                "bench/peers.py once to make its venv, then this script with that venv's python"}
    image = test_image(side)
    reference = upscale_tensor(net, image, EnginePlan(scale=4, device=device, precision="fp32", overlap=net.min_overlap))
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "rrdb.pth"  # sr's RRDB canonical keys are BasicSR's names
        torch.save({"params_ema": {k: v.float().cpu() for k, v in net.module.state_dict().items()}}, weights)
        model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
        upsampler = RealESRGANer(scale=4, model_path=str(weights), model=model, tile=256, tile_pad=10, pre_pad=0,
                                 half=True, device=device)
    bgr = np.ascontiguousarray((image.permute(1, 2, 0).numpy()[:, :, ::-1] * 255.0 + 0.5).astype(np.uint8))
    peer_out: list[np.ndarray] = []
    peer_s = median_seconds(lambda: peer_out.append(upsampler.enhance(bgr, outscale=4)[0]), rounds)
    set_layout(net, True)
    ours: list[Tensor] = []
    sr_s = median_seconds(lambda: ours.append(engine_call(net, net, image, device, precision="fp16", tile=256,
                                                          channels_last=True)()), rounds)
    set_layout(net, False)

    def levels(rgb: np.ndarray) -> np.ndarray:
        return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.int16)

    whole = levels(reference.permute(1, 2, 0).numpy())
    peer_rgb = peer_out[-1][:, :, ::-1].astype(np.int16)
    return {"figure": "peer", "model": "rrdb", "input": f"{side}x{side}", "tile": 256, "realesrganer_fp16_s": peer_s,
            "sr_fp16_s": sr_s, "sr_over_peer": sr_s / peer_s,
            "peer_max_levels_from_whole": int(np.abs(peer_rgb - whole).max()),
            "sr_max_levels_from_whole": int(np.abs(levels(ours[-1].permute(1, 2, 0).numpy()) - whole).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller images, 1 round, no torch.compile")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per figure (default 3, --quick 1)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile figure")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"bench/gpu.py: no CUDA GPU visible to torch {torch.__version__} (CUDA build: {torch.version.cuda}); "
              "nothing measured. Run it on a machine with one.", file=sys.stderr)
        return
    device = torch.device("cuda", torch.cuda.current_device())
    torch.backends.cudnn.benchmark = True  # one window shape repeats: let cuDNN pick its fastest kernels
    rounds = args.rounds or (1 if args.quick else 3)
    peak = device_peak(device, rounds)
    print(f"device: {peak['name']}, torch {torch.__version__}, CUDA {torch.version.cuda}; bf16 peak: sheet "
          f"{peak['sheet_bf16_tflops'] or 'unknown'} TFLOP/s, matmul measured {peak['matmul_bf16_tflops']:.0f} TFLOP/s")
    nets = networks(device)
    sides = {"edsr-full": 192 if args.quick else 384, "rrdb": 256 if args.quick else 512}
    figures: list[dict[str, Any]] = [{"figure": "peak", **peak}]
    steps: list[Callable[[], list[dict[str, Any]]]] = [
        lambda: whole_figures(nets, sides, device, peak, rounds),
        lambda: tile_figures(nets["rrdb"], 512 if args.quick else 1024, device, rounds),
        lambda: [peer_figure(nets["rrdb"], 512 if args.quick else 1024, device, rounds)],
    ]
    if not (args.quick or args.no_compile):
        steps.append(lambda: [compile_figure(nets["rrdb"], sides["rrdb"], device, rounds)])
    for step in steps:
        for row in step():
            figures.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "figures": figures}, indent=1) + "\n")


if __name__ == "__main__":
    main()

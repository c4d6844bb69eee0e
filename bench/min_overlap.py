"""Measure the tile context each family needs for tiled == whole within 1 level (feeds archs/*.py, docs/benchmarks.md).

Two parts.
1. Real weights (the bundled RRDB x4plus and SRVGG animevideov3) and seeded official-layout EDSR/MDSR, on
   real photos (Set5/Set14 x4 LR, 128x128 crops, 1 thread): the error-vs-context curve. Each photo is
   upscaled whole, then as two one-edge windows (its left 128xW and top Wx128 part): an output pixel of a
   window at input distance d from the cut has exactly d pixels of real context on that side (the other
   sides are the true border), so one window gives the error at every context 0..W at once. e(d) = the
   max |window - whole| (clamped to [0,1], in 8-bit levels) over pixels with context d; the family needs
   the smallest c with max_{d >= c} e(d) <= 1 level over every photo.
   `--engine`: the engine itself, as the API runs it (the fade inside the context, engine/blending.py), on
   48x256 strips of three Set14 HR photos cut into 2 tiles across at contexts 32/48/64/80 and into 3 at
   64/80 (`--configs=TILE:CONTEXT,...` for others; rows of other configurations are kept), for the
   families whose context is below their exact radius (RRDB): max/mean |tiled - whole| in levels.
   Both write docs/images/tile_context.json (the plot: bench/plot_tile_cost.py).
2. `--timing`: CPU seconds of the old and new tile plans and of RealESRGANer's window geometry, interleaved.
   `--fades=0,8,16,24 [--contexts=72,76,80]`: the engine on RRDB's strips (tiles 128 and 86) with the fade's
   half-width varied too (the engine's constant `blending.MAX_FEATHER`, overridden here only): max float
   levels and the 8-bit outputs' largest difference per (context, fade); printed, not saved.
3. `--random`: the older random-init sweep (8x8 cores; random init is not a proxy for trained models).

Run: python3 bench/min_overlap.py [SHARED_DIR] [--random] [--families=rrdb,srvgg,edsr,mdsr] [--engine [--configs=86:80]] [--timing]
     python3 bench/min_overlap.py [SHARED_DIR] --fades=0,8,16,24 --contexts=72,76,80
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sr_cli.archs.edsr import EDSRParams
from sr_cli.archs.mdsr import MDSRParams
from sr_cli.archs.rrdb import RRDBParams
from sr_cli.archs.runtime import AnyParams, SRNet, build_module, receptive_radius, to_srnets
from sr_cli.archs.srvgg import SRVGGParams
from sr_cli.archs.vdsr import VDSRParams
from sr_cli.weights.loading import load_checkpoint, srnet_for

SIZE, CORE = 128, 8


def needed_context(net: SRNet, image: torch.Tensor, limit: int) -> tuple[int | None, list[tuple[int, float]]]:
    s = net.scale
    with torch.no_grad():
        whole = net(image)
        lo = (SIZE - CORE) // 2
        reference = whole[..., lo * s:(lo + CORE) * s, lo * s:(lo + CORE) * s]
        trace: list[tuple[int, float]] = []
        for c in range(0, limit + 1, 2):
            tile = image[..., lo - c:lo + CORE + c, lo - c:lo + CORE + c]
            out = net(tile)[..., c * s:(c + CORE) * s, c * s:(c + CORE) * s]
            err = (out - reference).abs().max().item()
            trace.append((c, err))
            if err < 1 / 255:
                return c, trace
    return None, trace


def random_init_sweep(shared: Path) -> None:
    hr = np.asarray(Image.open(shared / "datasets/set5/HR/baby.png").convert("RGB"), dtype=np.float32) / 255
    h, w, _ = hr.shape
    crop = hr[(h - SIZE) // 2:(h + SIZE) // 2, (w - SIZE) // 2:(w + SIZE) // 2]
    rgb = torch.from_numpy(crop).permute(2, 0, 1)[None].contiguous()
    y = (16 + 65.481 * rgb[:, 0] + 128.553 * rgb[:, 1] + 24.966 * rgb[:, 2])[:, None] / 255
    torch.manual_seed(0)
    cases: list[tuple[str, AnyParams]] = [
        ("edsr", EDSRParams(scale=2)), ("edsr", EDSRParams(scale=4)),
        ("edsr", EDSRParams(n_resblocks=32, n_feats=256, res_scale=0.1, scale=2)),
        ("mdsr", MDSRParams()), ("rrdb", RRDBParams()), ("rrdb", RRDBParams(scale=2)),
        ("vdsr", VDSRParams()), ("srvgg", SRVGGParams()),
    ]
    for family, params in cases:
        module = build_module(family, params).eval()
        for scale, net in to_srnets(module).items():
            found, trace = needed_context(net, y if family == "vdsr" else rgb, limit=56)
            print(f"{family} {params} x{scale}: random init needs {found} (receptive radius "
                  f"{receptive_radius(family, params)}); trace {[(c, round(e * 255, 3)) for c, e in trace]}")
    vdsr_file = shared / "weights/model_epoch_50.pth"
    if vdsr_file.is_file():
        print(f"vdsr real weights, Set5 sweep: worst needed context {vdsr_set5_sweep(shared, vdsr_file)}")


def vdsr_set5_sweep(shared: Path, vdsr_file: Path) -> int:
    """Real VDSR on every Set5 image (x3 PIL-bicubic down+up, Y), 8x8 cores at 4 positions each."""
    net = srnet_for(load_checkpoint(vdsr_file), 3)
    worst = 0
    for path in sorted((shared / "datasets/set5/HR").glob("*.png")):
        im = Image.open(path).convert("RGB")
        w, h = im.size
        up = im.resize((w // 3, h // 3), Image.Resampling.BICUBIC).resize((w // 3 * 3, h // 3 * 3), Image.Resampling.BICUBIC)
        a = np.asarray(up, dtype=np.float32) / 255
        y = torch.from_numpy((16 + 65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255)[None, None]
        hh, ww = y.shape[-2:]
        with torch.no_grad():
            whole = net(y)
            for cy, cx in ((hh // 2, ww // 2), (hh // 3, ww // 3), (2 * hh // 3, ww // 2), (hh // 2, 2 * ww // 3)):
                for c in range(0, 21):
                    tile = y[..., cy - c:cy + CORE + c, cx - c:cx + CORE + c]
                    err = (net(tile)[..., c:c + CORE, c:c + CORE] - whole[..., cy:cy + CORE, cx:cx + CORE]).abs().max()
                    if err.item() < 1 / 255:
                        break
                print(f"  {path.stem} core at ({cy},{cx}): {c} px (max err {err.item() * 255:.3f}/255)")
                worst = max(worst, c)
    return worst

# --- part 1: real photos, real weights --------------------------------------------------------------

PHOTOS = ("set14/LR_bicubic/X4/bridge.png", "set14/LR_bicubic/X4/lenna.png", "set14/LR_bicubic/X4/man.png",
          "set14/LR_bicubic/X4/pepper.png", "set5/LR_bicubic/X4/baby.png", "set14/LR_bicubic/X4/barbara.png")
PHOTO_SIDE = 128
WINDOW = 80  # context measured up to this many input pixels
LEVEL = 1 / 255
OUT_JSON = Path(__file__).resolve().parents[1] / "docs/images/tile_context.json"
BUNDLED = Path(__file__).resolve().parents[1] / "sr_cli/bundled"


def photo(shared: Path, relative: str) -> torch.Tensor:
    image = np.asarray(Image.open(shared / "datasets" / relative).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(image[:PHOTO_SIDE, :PHOTO_SIDE].copy()).permute(2, 0, 1).contiguous()


def context_curve(net: SRNet, image: torch.Tensor, whole: torch.Tensor) -> list[float]:
    """e(d) in levels for d = 0..WINDOW-1: worst pixel with exactly d input pixels of context on the cut side."""
    s, m = net.scale, net.size_multiple
    width = WINDOW - WINDOW % m
    worst = [0.0] * width
    with torch.inference_mode():
        for window in (image[None, :, :, :width], image[None, :, :width, :]):
            out = net(window).clamp(0, 1)
            ref = whole[..., :out.shape[-2], :out.shape[-1]]
            diff = (out - ref).abs().amax(dim=(0, 1))  # [H_out, W_out]
            along = diff.amax(dim=0) if window.shape[-1] == width else diff.amax(dim=1)
            for index, value in enumerate(along.tolist()):
                d = width - 1 - index // s
                worst[d] = max(worst[d], value / LEVEL)
    return worst


def needed(curve: list[float], limit_levels: float = 1.0) -> int | None:
    """Smallest c with every e(d >= c) <= limit_levels (None: not reached inside the window)."""
    for c in range(len(curve)):
        if max(curve[c:]) <= limit_levels:
            return c if c < len(curve) - 4 else None  # the last few columns prove nothing
    return None


def real_nets(families: set[str]) -> dict[str, SRNet]:
    nets: dict[str, SRNet] = {}
    if "rrdb" in families:
        nets["rrdb realesrgan-x4plus (real)"] = srnet_for(load_checkpoint(BUNDLED / "realesrgan-x4plus.fp16.safetensors"), 4)
    if "srvgg" in families:
        nets["srvgg animevideov3 (real)"] = srnet_for(load_checkpoint(BUNDLED / "realesr-animevideov3.fp16.safetensors"), 4)
    torch.manual_seed(0)  # seeded official layouts: the hyperparameters of the official checkpoints
    if "edsr" in families:
        nets["edsr baseline x4 (seeded)"] = SRNet(build_module("edsr", EDSRParams(scale=4)))
    if "mdsr" in families:
        nets["mdsr x4 (seeded)"] = to_srnets(build_module("mdsr", MDSRParams()))[4]
    return {name: net.eval() for name, net in nets.items()}


STRIP_PHOTOS = ("set14/HR/bridge.png", "set14/HR/lenna.png", "set14/HR/baboon.png")
STRIP = (48, 256)  # rows x columns of each photo strip, from its centre
# (tile, context): 2 tiles across a strip at every context, 3 at the contexts around RRDB's min_overlap
ENGINE_CONFIGS = [(128, 32), (128, 48), (128, 64), (128, 80), (86, 64), (86, 80)]


def strip(shared: Path, relative: str) -> torch.Tensor:
    image = np.asarray(Image.open(shared / "datasets" / relative).convert("RGB"), dtype=np.float32) / 255
    h, w, _ = image.shape
    rows, cols = STRIP
    part = image[(h - rows) // 2:(h + rows) // 2, (w - cols) // 2:(w + cols) // 2]
    return torch.from_numpy(part.copy()).permute(2, 0, 1).contiguous()


def engine_sweep(shared: Path, net: SRNet, configs: list[tuple[int, int]],
                 save: Callable[[list[dict[str, object]]], None]) -> None:
    """The engine itself with the fade inside the context (as the API runs it): strips of real photos cut
    into tiles across, for each (tile, context) of `configs`; max and mean |tiled - whole| in levels.
    `save` gets the rows so far after each run (a long sweep keeps what it measured)."""
    from sr_cli.engine import EnginePlan, upscale_tensor

    rows: list[dict[str, object]] = []
    for rel in STRIP_PHOTOS:
        image = strip(shared, rel)
        with torch.inference_mode():
            whole = net(image[None])[0].clamp(0, 1)
        for tile, context in configs:
            plan = EnginePlan(scale=net.scale, device=torch.device("cpu"), precision="fp32", tile=tile, overlap=context,
                              min_overlap=context, exact_overlap=net.exact_overlap, size_multiple=net.size_multiple)
            out = upscale_tensor(net, image, plan).clamp(0, 1)
            diff = (out - whole).abs() / LEVEL
            rows.append({"photo": rel, "tile": tile, "context": context, "max_levels": round(diff.max().item(), 3),
                         "mean_levels": round(diff.mean().item(), 4)})
            print(f"  engine {rel} tile {tile} context {context}: max {diff.max().item():.2f} levels", flush=True)
            save(rows)


def real_photo_sweep(shared: Path, families: set[str], run_engine: bool, configs: list[tuple[int, int]]) -> None:
    torch.set_num_threads(1)  # on a loaded 2-core machine 1 thread is several times faster than 2
    results: dict[str, object] = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {}
    for name, net in real_nets(families).items():
        if run_engine:  # the engine sweep only (the curves are kept from an earlier run)
            if net.min_overlap < net.exact_overlap:  # exact families: tiles equal the whole pass anyway
                record = dict(results.get(name, {}))  # type: ignore[call-overload]
                earlier = [row for row in record.get("engine", [])
                           if (row["tile"], row["context"]) not in configs]  # other configurations are kept

                def save(rows: list[dict[str, object]], record: dict[str, object] = record, name: str = name,
                         earlier: list[dict[str, object]] = earlier) -> None:
                    record["engine"] = earlier + rows
                    results[name] = record
                    OUT_JSON.write_text(json.dumps(results, indent=1) + "\n")

                engine_sweep(shared, net, configs, save)
            continue
        curves: dict[str, list[float]] = {}
        for rel in PHOTOS:
            image = photo(shared, rel)
            started = time.perf_counter()
            with torch.inference_mode():
                whole = net(image[None]).clamp(0, 1)
            curves[rel] = [round(e, 3) for e in context_curve(net, image, whole)]
            print(f"{name} {rel}: needs {needed(curves[rel])} px ({time.perf_counter() - started:.0f} s)", flush=True)
        worst = [max(c[d] for c in curves.values()) for d in range(len(next(iter(curves.values()))))]
        context = needed(worst)
        results[name] = {"curves": curves, "worst": worst, "needed": context,
                         "radius": receptive_radius(net.family, net.module.params)}
        print(f"{name}: needed context {context} px (radius {net.exact_overlap}); worst e(d) "
              f"{[(d, worst[d]) for d in range(0, len(worst), 4)]}", flush=True)
        OUT_JSON.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {OUT_JSON}")


def timing(shared: Path, rounds: int = 2, side: int = 256, tile: int = 128) -> None:
    """Interleaved rounds, process CPU seconds, RRDB x4plus at `tile` on a side x side Set14 monarch crop:
    the old plan (48 px + 16 fade on top), the new (80 px, fade inside), and RealESRGANer's window geometry
    (tile_pad 10, hard seams) run by the same engine -- the time that geometry alone costs."""
    from sr_cli.engine import EnginePlan, upscale_tensor

    torch.set_num_threads(1)
    net = real_nets({"rrdb"})["rrdb realesrgan-x4plus (real)"]
    image = np.asarray(Image.open(shared / "datasets/set14/HR/monarch.png").convert("RGB"), dtype=np.float32) / 255
    h, w, _ = image.shape
    crop = torch.from_numpy(image[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2].copy())
    crop = crop.permute(2, 0, 1).contiguous()
    plans = {"old 48+16 on top": (48, None, None), "new 80 inside": (80, 80, net.exact_overlap),
             "RealESRGANer geometry (pad 10)": (10, 10, 10)}
    seconds: dict[str, list[float]] = {name: [] for name in plans}
    for round_index in range(rounds):
        for name in list(plans)[round_index % 3:] + list(plans)[:round_index % 3]:
            overlap, least, exact = plans[name]
            plan = EnginePlan(scale=4, device=torch.device("cpu"), precision="fp32", tile=tile, overlap=overlap,
                              min_overlap=least, exact_overlap=exact)
            started = time.process_time()
            upscale_tensor(net, crop, plan)
            seconds[name].append(time.process_time() - started)
            print(f"round {round_index} {name}: {seconds[name][-1]:.1f} CPU-s", flush=True)
    base = min(seconds["RealESRGANer geometry (pad 10)"])
    for name, values in seconds.items():
        print(f"{name}: best {min(values):.1f} CPU-s, x{min(values) / base:.3f} of the pad-10 geometry")


def fade_sweep(shared: Path, contexts: list[int], fades: list[int], tiles: tuple[int, ...] = (128, 86)) -> None:
    """RRDB x4plus through the engine at each context x fade half-width on the strips of STRIP_PHOTOS."""
    from sr_cli.engine import EnginePlan, blending, upscale_tensor

    torch.set_num_threads(2)
    net = next(iter(real_nets({"rrdb"}).values()))
    images = {rel: strip(shared, rel) for rel in STRIP_PHOTOS}
    with torch.inference_mode():
        wholes = {rel: net(image[None])[0].clamp(0, 1) for rel, image in images.items()}
    default = blending.MAX_FEATHER
    print("| context | fade | max float levels | max 8-bit levels | worst case |")
    print("|---|---|---|---|---|")
    try:
        for context in contexts:
            for fade in fades:
                blending.MAX_FEATHER = fade  # the sweep's one knob; restored below
                worst: list[tuple[float, int, str]] = []
                for tile in tiles:
                    for rel, image in images.items():
                        plan = EnginePlan(scale=4, device=torch.device("cpu"), precision="fp32", tile=tile,
                                          overlap=context, min_overlap=context, exact_overlap=net.exact_overlap)
                        out = upscale_tensor(net, image, plan).clamp(0, 1)
                        levels = float(((out - wholes[rel]).abs() / LEVEL).max())
                        rounded = int(((out * 255).round() - (wholes[rel] * 255).round()).abs().max())
                        worst.append((levels, rounded, f"{Path(rel).stem} tile {tile}"))
                top = max(worst)
                print(f"| {context} | {fade} | {top[0]:.2f} | {max(w[1] for w in worst)} | {top[2]} |", flush=True)
    finally:
        blending.MAX_FEATHER = default


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    shared = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "shared"
    if "--random" in sys.argv:
        random_init_sweep(shared)
        return
    if "--timing" in sys.argv:
        timing(shared)
        return
    values = {flag.split("=", 1)[0]: flag.split("=", 1)[1] for flag in sys.argv if "=" in flag}
    if "--fades" in values:
        fade_sweep(shared, [int(c) for c in values.get("--contexts", "72,76,80").split(",")],
                   [int(f) for f in values["--fades"].split(",")])
        return
    families = {"rrdb", "srvgg", "edsr", "mdsr"}
    for flag in sys.argv:
        if flag.startswith("--families="):
            families = set(flag.split("=", 1)[1].split(","))
    configs = ENGINE_CONFIGS
    for flag in sys.argv:
        if flag.startswith("--configs="):  # e.g. --configs=86:80,128:72 (tile:context)
            configs = [(int(a), int(b)) for a, b in (pair.split(":") for pair in flag.split("=", 1)[1].split(","))]
    real_photo_sweep(shared, families, run_engine="--engine" in sys.argv, configs=configs)


if __name__ == "__main__":
    main()

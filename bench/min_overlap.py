"""Measure the tile context each family needs for tiled == whole within 1/255 (feeds archs/runtime.py).

Method: a 128x128 crop of a Set5 HR image (the centre of `baby`), values in [0,1], is upscaled whole.
Then, for context c = 0, 2, 4, ..., the centre 8x8 input pixels plus c pixels of real context on each
side are upscaled alone (the tile's outer border sees the convs' zero padding, as a tile in the engine
does), and the output pixels of the 8x8 core are compared with the same pixels of the whole result.
Reported: the smallest c with max |tile - whole| < 1/255, over all channels of the core. VDSR runs on the
Y channel (BT.601) and is also measured with the real `model_epoch_50.pth`.

Run: python3 bench/min_overlap.py [SHARED_DIR]   (default ../shared). Random init: torch.manual_seed(0).
"""
from __future__ import annotations

import sys
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


def main() -> None:
    shared = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared"
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

if __name__ == "__main__":
    main()

"""Peak memory of one huge upscale: a 4096x4096 RGB photo at x4 with the bundled SRVGG (realesr-animevideov3)
gives 16384x16384 (805 MB as 8-bit RGB), streamed to a PNG row band by row band (issue 13, goal 3).

The run is a fresh `python -m sr_cli upscale` process under `/usr/bin/time -v` (its "Maximum resident set size"
is the figure; without GNU time, the child's ru_maxrss from getrusage). The input is made here: a real photo
from the shared datasets (SR_SHARED_DIR, default ../shared) resized to the size with Lanczos, else a smooth
synthetic picture; its content does not change the memory, only the PNG sizes. The load average before and
after is printed with the figures: on a shared machine the time is only meaningful beside the load.
The output is checked: its header gives the expected size.

Run: nice python3 bench/huge_image.py [--size 4096] [--tile auto] [--threads 2] [--keep DIR] [--model NAME]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "realesr-animevideov3"
SCALE = 4
GOAL_BYTES = 1.5e9


def make_input(path: Path, size: int, rows: int) -> str:
    """A size-wide, rows-high RGB PNG at `path`; returns what it was made from."""
    shared = Path(os.environ.get("SR_SHARED_DIR", REPO_ROOT.parent / "shared"))
    photos = sorted(shared.glob("**/*.png"))
    photos = [p for p in photos if "HR" in str(p)] or photos
    if photos:
        source = max(photos[:40], key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])
        with Image.open(source) as opened:
            opened.convert("RGB").resize((size, rows), Image.Resampling.LANCZOS).save(path)
        return f"{source.relative_to(shared)} resized to {size}x{rows}"
    y, x = np.mgrid[0:rows, 0:size].astype(np.float32) / size
    pixels = np.stack([np.sin(40 * x) * 0.5 + 0.5, np.cos(33 * y) * 0.5 + 0.5, x * y], axis=2)
    Image.fromarray((pixels * 255).astype(np.uint8)).save(path)
    return "synthetic sin/cos pattern"


def run_upscale(source: Path, output: Path, tile: str, threads: int, model: str) -> tuple[float, float, str]:
    """(peak RSS bytes, wall seconds, how it was measured) of one `sr upscale` process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS=str(threads), SR_MAX_PIXELS="300M")
    command = [sys.executable, "-m", "sr_cli", "upscale", str(source), "-o", str(output), "--model", model,
               "--tile", tile, "--device", "cpu"]
    gnu_time = shutil.which("time") if Path("/usr/bin/time").exists() else None
    start = time.perf_counter()
    if gnu_time:
        done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"sr upscale failed ({done.returncode}):\n{done.stderr[-3000:]}")
        for line in done.stderr.splitlines():
            if "Maximum resident set size" in line:
                return float(line.split(":")[1]) * 1024, wall, "/usr/bin/time -v"
        raise SystemExit("no 'Maximum resident set size' in /usr/bin/time's report")
    subprocess.run(command, env=env, check=True)
    wall = time.perf_counter() - start
    return float(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024, wall, "getrusage ru_maxrss"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="input side in pixels")
    parser.add_argument("--rows", type=int, help="input height (default: --size); a short input of the full width "
                        "holds the same band, so it shows most of the peak in a fraction of the time")
    parser.add_argument("--tile", default="auto", help="passed to sr upscale --tile")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the run")
    parser.add_argument("--keep", type=Path, help="a folder to keep the input and output in")
    parser.add_argument("--model", default=MODEL, help=f"passed to sr upscale --model (default {MODEL}, goal 3's; "
                        "realesrgan-x4plus, the default model, needs far more memory and time a pixel)")
    arguments = parser.parse_args()
    folder = arguments.keep or Path(tempfile.mkdtemp(prefix="sr-huge-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = arguments.rows or arguments.size
    source, output = folder / f"huge_{arguments.size}x{rows}.png", folder / f"huge_{arguments.size}x{rows}_x4.png"
    output.unlink(missing_ok=True)
    made_from = make_input(source, arguments.size, rows)
    load_before = os.getloadavg()
    peak, wall, method = run_upscale(source, output, arguments.tile, arguments.threads, arguments.model)
    load_after = os.getloadavg()
    Image.MAX_IMAGE_PIXELS = None  # the header only: 268 Mpx is over Pillow's bomb limit, and expected here
    with Image.open(output) as opened:
        size = opened.size
    expected = (arguments.size * SCALE, rows * SCALE)
    print(f"input: {source} ({made_from}), {source.stat().st_size / 1e6:.1f} MB")
    print(f"output: {output} {size[0]}x{size[1]} (expected {expected[0]}x{expected[1]}), "
          f"{output.stat().st_size / 1e6:.1f} MB PNG, {size[0] * size[1] * 3 / 1e6:.0f} MB as 8-bit RGB")
    goal = f"; goal <= {GOAL_BYTES / 1e9:.1f} GB: {'met' if peak <= GOAL_BYTES else 'NOT met'}" \
        if arguments.model == MODEL else f" ({arguments.model}: goal 3 is {MODEL}'s)"
    print(f"peak RSS: {peak / 1e9:.3f} GB ({method}){goal}")
    print(f"wall: {wall:.1f} s with {arguments.threads} threads, --tile {arguments.tile}; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} cores")
    if size != expected:
        raise SystemExit("the output has the wrong size")
    if arguments.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()

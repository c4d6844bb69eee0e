"""`sr env` (what a bug report needs: versions, devices, caches, network settings) and `sr --version`.

Package versions come from the installed distributions' metadata, so `sr env` imports none of them
except torch, which it must ask for its devices and threads. Nothing here touches the network.
"""
from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import typer

from sr_cli import __version__
from sr_cli.cli.console import json_line
from sr_cli.cli.conventions import VARIABLE_NAMES
from sr_cli.cli.options import Json, Quiet, Verbose

# The distributions a bug report needs, under their report names (the first installed one of each).
PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("torch", ("torch",)),
    ("numpy", ("numpy",)),
    ("Pillow", ("pillow",)),
    ("opencv", ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                "opencv-contrib-python")),
    ("huggingface_hub", ("huggingface-hub",)),
    ("httpx2", ("httpx2",)),
    ("safetensors", ("safetensors",)),
    ("ncnn", ("ncnn",)),
    ("typer", ("typer",)),
    ("rich", ("rich",)),
)


def package_version(distributions: tuple[str, ...]) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def devices() -> dict[str, Any]:
    """What torch can run on here: CUDA GPUs (name, memory), Apple MPS, and the CPU threads it uses."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": properties.name, "memory_bytes": int(properties.total_memory)})
    mps = getattr(torch.backends, "mps", None)
    return {
        "torch_cuda_build": torch.version.cuda,  # None: a CPU-only build of torch
        "cuda_devices": gpus,
        "mps_available": bool(mps is not None and mps.is_available()),
        "torch_threads": torch.get_num_threads(),
    }


def devices_text(found: dict[str, Any]) -> str:
    """`cuda:0 NVIDIA H200 (139.8 GiB), cpu` -- the devices `--device auto` chooses from, best first."""
    names = [f"cuda:{gpu['index']} {gpu['name']} ({gpu['memory_bytes'] / 2**30:.1f} GiB)" for gpu in found["cuda_devices"]]
    if found["mps_available"]:
        names.append("mps")
    names.append("cpu")
    return ", ".join(names)


def version_text() -> str:
    """`sr --version`: sr's version, then torch's and the devices it sees (torch is imported only here)."""
    torch_version = package_version(("torch",))
    if torch_version is None:
        return f"sr {__version__}\ntorch not installed"
    found = devices()
    build = f"CUDA {found['torch_cuda_build']} build" if found["torch_cuda_build"] else "CPU-only build"
    return f"sr {__version__}\ntorch {torch_version} ({build})\ndevices: {devices_text(found)}"


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) under `folder`, links not counted (the Hugging Face cache links snapshots to blobs)."""
    total = files = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # removed while we walked
            if not os.path.islink(os.path.join(root, name)):
                total += info.st_size
                files += 1
    return total, files


def caches() -> dict[str, Any]:
    """`<key>`: the folder, `<key>_bytes`: what it holds (0 when absent), for each cache sr reads or fills."""
    from sr_cli.files.places import cache_root
    from sr_cli.weights.hub import effective_hub_cache_dir

    root = cache_root()
    places = {"sr_cache": root, "weights_cache": root / "weights", "datasets_cache": root / "datasets",
              "train_cache": root / "train", "hf_hub_cache": effective_hub_cache_dir()}
    record: dict[str, Any] = {}
    for key, path in places.items():
        record[key] = str(path)
        record[f"{key}_bytes"] = folder_size(path)[0] if path.is_dir() else 0
    return record


CACHE_LABELS = {"sr_cache": "sr cache", "weights_cache": "  weights", "datasets_cache": "  datasets",
                "train_cache": "  training data", "hf_hub_cache": "hf hub cache"}


def without_password(value: str) -> str:
    """A mirror URL may carry `user:password@`: a bug report must not."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", value)


def environment_report() -> dict[str, Any]:
    """Every field of `sr env`, flat where it can be."""
    from sr_cli.files.http import offline_mode
    from sr_cli.weights.hub import hub_endpoint

    record: dict[str, Any] = {
        "sr": __version__,
        "python": f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    for label, distributions in PACKAGES:
        record[label] = package_version(distributions)
    if record["torch"] is not None:
        record.update(devices())
    record["offline"] = offline_mode()
    record["hf_endpoint"] = hub_endpoint()
    record.update(caches())
    record["variables"] = {name: without_password(os.environ[name]) for name in VARIABLE_NAMES if name in os.environ}
    return record


def env(as_json: Json = False, quiet: Quiet = False, verbose: Verbose = False) -> None:
    """Versions, devices, caches and network settings: paste this into a bug report.

    Examples:
      sr env
      sr env --json
    """
    report = environment_report()
    if as_json:
        json_line({"command": "env", "status": "ok", **report})
        return
    typer.echo(format_report(report))


def format_report(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = [("sr", report["sr"]), ("python", report["python"]), ("platform", report["platform"]),
                                   ("cpus", f"{report['cpu_count']} ({report['cpus_usable']} usable)")]
    rows += [(label, report[label] or "not installed") for label, _ in PACKAGES]
    if report["torch"] is not None:
        build = report["torch_cuda_build"]
        rows.append(("torch build", f"{'CUDA ' + build if build else 'CPU only'}, {report['torch_threads']} threads"))
        rows.append(("devices", devices_text(report)))
    rows.append(("offline", "yes (SR_OFFLINE or HF_HUB_OFFLINE)" if report["offline"] else "no"))
    rows.append(("hf endpoint", report["hf_endpoint"]))
    for key, label in CACHE_LABELS.items():
        held = f"{report[key + '_bytes'] / 1e6:.1f} MB" if Path(report[key]).is_dir() else "absent"
        rows.append((label, f"{report[key]} ({held})"))
    variables = report["variables"]
    rows.append(("variables", ", ".join(f"{name}={value}" for name, value in variables.items()) or "none set"))
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


__all__ = ["env", "environment_report", "version_text"]

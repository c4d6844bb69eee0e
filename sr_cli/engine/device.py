"""Which device runs the model: `auto | cpu | cuda | cuda:N | mps`, checked before any work starts."""
from __future__ import annotations

import re

import torch

from sr_cli.errors import DeviceError

_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(spec: str) -> torch.device:
    """The torch.device for `spec`; auto = the first CUDA GPU, else Apple MPS, else the CPU.

    Raises DeviceError when the requested device is absent (never falls back silently: a user who asked
    for a GPU and got the CPU would wait hours without knowing why).
    """
    text = spec.strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise DeviceError("--device mps: Apple MPS is not available in this torch build or machine; use --device cpu")
        return torch.device("mps")
    match = _CUDA.fullmatch(text)
    if match is None:
        raise DeviceError(f"--device {spec!r} is not one of auto, cpu, cuda, cuda:N, mps")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {spec}: CUDA is not available (torch {torch.__version__} sees no GPU); "
                          "use --device cpu or install a CUDA build of torch")
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) "
                          f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())



def describe_device(device: torch.device) -> str:
    """`cuda:0 (NVIDIA H200)`, `mps`, `cpu`: the device and, for a GPU, its name (what a bug report needs)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)

"""torchrun integration for `sr train`: one process per device, rank 0 logs and writes, the others only compute.

`torchrun --nproc_per_node=K -m sr_cli train ...` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; without them the run is a single process and no process group is created. Backend:
nccl when the processes use CUDA devices, gloo on CPU. The process group, shared failures (`together`)
and the teardown live in sr_cli.distributed (`sr upscale` shards batches with them too); this module
adds training's device choice, its error class for unforeseen failures, and the averaging of logs.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sr_cli import distributed as shared
from sr_cli.distributed import Ranks, any_true, barrier, ranks_from_environment, teardown
from sr_cli.errors import DeviceError, TrainingError, UsageError

__all__ = ["DistContext", "setup", "teardown", "barrier", "any_true", "mean_over_ranks", "together", "pick_device"]


@dataclass(frozen=True)
class DistContext(Ranks):
    """The ranks of a training run, and the device this rank trains on."""

    device: torch.device = torch.device("cpu")


def pick_device(request: str, local_rank: int) -> torch.device:
    """"auto": this process's GPU when CUDA is present, else the CPU; "cuda" means cuda:LOCAL_RANK."""
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    if request == "cpu":
        return torch.device("cpu")
    if request.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {request}: CUDA is not available in this torch build/machine; use --device cpu")
        return torch.device(request if ":" in request else f"cuda:{local_rank}")
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {request!r}")


def setup(device_request: str) -> DistContext:
    """Read torchrun's environment, pick this process's device, create the process group if K > 1."""
    ranks = ranks_from_environment()
    device = pick_device(device_request, ranks.local_rank)
    group = shared.start(ranks, backend="nccl" if device.type == "cuda" else "gloo", device=device)
    return DistContext(group.rank, group.world_size, group.local_rank, group.local_world_size, group.backend,
                       group.collective_device, device)


def mean_over_ranks(values: dict[str, float], context: DistContext) -> dict[str, float]:
    """Average logged scalars over ranks (each rank saw its share of the global batch)."""
    if not context.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=context.collective_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {k: float(v) / context.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}


@contextlib.contextmanager
def together(context: DistContext) -> Iterator[None]:
    """sr_cli.distributed.together; a failure that is not ours becomes a TrainingError naming the rank."""
    with shared.together(context, unforeseen=TrainingError):
        yield

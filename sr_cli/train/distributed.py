"""torchrun integration: one process per device, rank 0 logs and writes, the others only compute.

`torchrun --nproc_per_node=K -m sr_cli train ...` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; without them the run is a single process and no process group is created. Backend:
nccl when the processes use CUDA devices, gloo on CPU.

Failures are shared (`together`): a check or a write that only rank 0 does (an existing checkpoint,
the data preparation, non-finite weights at a save) is followed by one collective at which every rank
learns whether any rank failed, and then every rank raises the same one-line error. Without it the
other ranks died in their next collective with a gloo "Connection reset by peer" traceback, or waited
for the NCCL watchdog.
"""
from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

import sr_cli.errors
from sr_cli.errors import DeviceError, SRError, TrainingError, UsageError

MAX_MESSAGE_BYTES = 4096  # a failure's one line, as shared with the other ranks


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


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
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = pick_device(device_request, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown(context: DistContext, *, completed: bool) -> None:
    """Destroy the process group, releasing DDP first.

    DistributedDataParallel sits in a reference cycle (its hooks refer back to it), so returning from the
    run does not free it; left to the cyclic collector, its reducer may be destroyed after the group or
    during interpreter exit, and gloo's threads then abort the process (SIGABRT, "terminate called without
    an active exception"). Collect it here, while the group and the interpreter are alive. After a completed
    run every rank also waits for the others first: rank 0 is still exporting when rank 1 is done, and no
    rank should close its connections while a peer holds them. (After an error there is no barrier: the
    other ranks may never get there.)"""
    if not (context.distributed and dist.is_initialized()):
        return
    gc.collect()
    if completed:
        dist.barrier()
    dist.destroy_process_group()


def barrier(context: DistContext) -> None:
    if context.distributed:
        dist.barrier()


def any_true(flag: bool, context: DistContext) -> bool:
    """True on every rank when `flag` is true on any rank (e.g. a non-finite loss somewhere)."""
    if not context.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(values: dict[str, float], context: DistContext) -> dict[str, float]:
    """Average logged scalars over ranks (each rank saw its share of the global batch)."""
    if not context.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {k: float(v) / context.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}


@contextlib.contextmanager
def together(context: DistContext) -> Iterator[None]:
    """Run a block that may fail on some ranks only; at its end every rank meets the others once, and
    if any rank failed, every rank raises that failure (the lowest failing rank's, with its class and
    message; an error that is not ours becomes a TrainingError naming the rank on the other ranks).
    The block must contain no collective itself, or the ranks would pair different collectives."""
    failure: Exception | None = None
    try:
        yield
    except Exception as error:  # shared below, then raised on every rank
        if not context.distributed:
            raise
        failure = error
    if context.distributed:
        _raise_shared(failure, context)


def _raise_shared(failure: Exception | None, context: DistContext) -> None:
    device = context.device
    first = torch.tensor([context.rank if failure is not None else context.world_size], device=device)
    dist.all_reduce(first, op=dist.ReduceOp.MIN)
    failed_rank = int(first.item())
    if failed_rank == context.world_size:
        return
    # The failing rank's class name and message travel as UTF-8 bytes in a tensor: plain data, no pickle.
    payload = torch.zeros(MAX_MESSAGE_BYTES, dtype=torch.uint8, device=device)
    if context.rank == failed_rank:
        assert failure is not None
        text = f"{type(failure).__name__}\n{_one_line(failure)}".encode()[:MAX_MESSAGE_BYTES]
        payload[:len(text)] = torch.frombuffer(bytearray(text), dtype=torch.uint8).to(device)
    dist.broadcast(payload, src=failed_rank)
    if failure is not None and context.rank == failed_rank:
        raise failure
    name, _, message = bytes(payload.cpu().tolist()).rstrip(b"\0").decode("utf-8", "replace").partition("\n")
    raise _same_error(name, message, failed_rank)


def _one_line(error: Exception) -> str:
    return str(error) if isinstance(error, SRError) else f"{type(error).__name__}: {error}"


def _same_error(name: str, message: str, rank: int) -> SRError:
    """Our exception class of that name with that message (so the exit code matches rank `rank`'s)."""
    candidate = getattr(sr_cli.errors, name, None)
    if isinstance(candidate, type) and issubclass(candidate, SRError):
        return candidate(message)
    return TrainingError(f"torchrun process {rank} failed: {message}")

"""torchrun processes working together: the process group, shared failures, plain-data exchange.

`torchrun --nproc-per-node=K -m sr_cli CMD ...` sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE /
MASTER_ADDR / MASTER_PORT; without them a run is a single process and no process group is created.
Used by `sr train` (sr_cli.train.distributed adds its device choice and DDP) and `sr upscale` (sharding
a batch, sr_cli.scaleout). Below the commands, above torch: it knows no models and no files.

Failures are shared (`together`): a check or a write that only some ranks do is followed by one
collective at which every rank learns whether any rank failed, and then every rank raises the same
one-line error. Without it the other ranks died in their next collective with a gloo "Connection
reset by peer" traceback, or waited for the NCCL watchdog.

Everything that crosses between ranks is plain data (UTF-8 / JSON bytes in uint8 tensors), never a
pickle: a rank's listening port is reachable by whoever can reach the machine. Importing this module
loads no torch (a single process only reads the environment).
"""
from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sr_cli.errors
from sr_cli.errors import SRError, UsageError

if TYPE_CHECKING:  # torch loads when a process group is made: reading the environment needs none
    import torch

MAX_MESSAGE_BYTES = 4096  # a failure's one line, as shared with the other ranks


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among torchrun's, and how its collectives run: (0, 1, 0, 1) for a
    plain single process (no process group)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int = 1  # processes on this machine (they share its cores and GPUs)
    backend: str = "gloo"  # of the process group; nccl: collectives on `collective_device`
    collective_device: str = "cpu"  # where the tensors of a collective live (nccl: this rank's GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE_PROCESS = Ranks(rank=0, world_size=1, local_rank=0)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def ranks_from_environment() -> Ranks:
    """This process's place, from torchrun's variables (a single process without them)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size if world_size > 1 else 1)
    if world_size < 1 or not 0 <= rank < world_size or not 0 <= local_rank < max(local_world_size, 1):
        raise UsageError(f"torchrun's RANK={rank}, LOCAL_RANK={local_rank}, WORLD_SIZE={world_size} do not fit "
                         "together; start the command with torchrun (or without any of them)")
    return Ranks(rank, world_size, local_rank, max(local_world_size, 1))


def start(ranks: Ranks, *, backend: str = "gloo", device: torch.device | None = None) -> Ranks:
    """Create the process group when there are several ranks; nccl needs this rank's GPU (`device`),
    which becomes the current one and holds the collectives' tensors."""
    import torch
    import torch.distributed as dist

    collective = str(device) if backend == "nccl" and device is not None else "cpu"
    if ranks.world_size > 1 and not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(torch.device(collective))
        dist.init_process_group(backend=backend, rank=ranks.rank, world_size=ranks.world_size)
    return Ranks(ranks.rank, ranks.world_size, ranks.local_rank, ranks.local_world_size, backend, collective)


def teardown(context: Ranks, *, completed: bool) -> None:
    """Destroy the process group, releasing DDP (or anything else holding it) first.

    DistributedDataParallel sits in a reference cycle (its hooks refer back to it), so returning from the
    run does not free it; left to the cyclic collector, its reducer may be destroyed after the group or
    during interpreter exit, and gloo's threads then abort the process (SIGABRT, "terminate called without
    an active exception"). Collect it here, while the group and the interpreter are alive. After a completed
    run every rank also waits for the others first: rank 0 is still writing when rank 1 is done, and no
    rank should close its connections while a peer holds them. (After an error there is no barrier: the
    other ranks may never get there.)"""
    import torch.distributed as dist

    if not (context.distributed and dist.is_initialized()):
        return
    gc.collect()
    if completed:
        dist.barrier()
    dist.destroy_process_group()


def barrier(context: Ranks) -> None:
    import torch.distributed as dist

    if context.distributed:
        dist.barrier()


def any_true(flag: bool, context: Ranks) -> bool:
    """True on every rank when `flag` is true on any rank (e.g. a non-finite loss somewhere)."""
    import torch
    import torch.distributed as dist

    if not context.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.collective_device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_gather_bytes(payload: bytes, context: Ranks) -> list[bytes]:
    """Every rank's `payload`, in rank order, on every rank (plain bytes: no pickle)."""
    import torch
    import torch.distributed as dist

    if not context.distributed:
        return [payload]
    device = context.collective_device
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(context.world_size)]
    dist.all_gather(sizes, size)
    longest = max(int(s.item()) for s in sizes)
    buffer = torch.zeros(max(longest, 1), dtype=torch.uint8, device=device)
    if payload:
        buffer[:len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    buffers = [torch.zeros_like(buffer) for _ in range(context.world_size)]
    dist.all_gather(buffers, buffer)
    return [bytes(b[:int(s.item())].cpu().numpy().tobytes()) for b, s in zip(buffers, sizes, strict=True)]


@contextlib.contextmanager
def together(context: Ranks, *, unforeseen: type[SRError] = SRError) -> Iterator[None]:
    """Run a block that may fail on some ranks only; at its end every rank meets the others once, and
    if any rank failed, every rank raises that failure (the lowest failing rank's, with its class and
    message; an error that is not ours becomes `unforeseen` naming the rank on the other ranks).
    The block must contain no collective itself, or the ranks would pair different collectives."""
    failure: Exception | None = None
    try:
        yield
    except Exception as error:  # shared below, then raised on every rank
        if not context.distributed:
            raise
        failure = error
    if context.distributed:
        _raise_shared(failure, context, unforeseen)


def _raise_shared(failure: Exception | None, context: Ranks, unforeseen: type[SRError]) -> None:
    import torch
    import torch.distributed as dist

    device = context.collective_device
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
    raise _same_error(name, message, failed_rank, unforeseen)


def _one_line(error: Exception) -> str:
    return str(error) if isinstance(error, SRError) else f"{type(error).__name__}: {error}"


def _same_error(name: str, message: str, rank: int, unforeseen: type[SRError]) -> SRError:
    """Our exception class of that name with that message (so the exit code matches rank `rank`'s)."""
    candidate = getattr(sr_cli.errors, name, None)
    if isinstance(candidate, type) and issubclass(candidate, SRError):
        return candidate(message)
    return unforeseen(f"torchrun process {rank} failed: {message}")

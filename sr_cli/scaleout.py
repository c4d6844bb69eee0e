"""`torchrun -m sr_cli upscale`: one batch shared by K processes (on one machine or several).

Every rank plans the whole batch the same way (sr_cli.batch: sorted inputs, output names, clash and
existing-output checks), then checks that all ranks planned the same (a digest of the plan: inputs on
a filesystem some machine sees differently would otherwise be processed twice or never). Each rank
then runs its share and the results travel to rank 0, which prints all of them in the plan's order,
then the one summary.

Shares: a file's cost is its pixel count (from its header; the ranks read the headers of a strided
share each and exchange them), and the files are dealt greedily, largest first, to the rank with the
least work so far (ties: the lower rank, then the file earlier in the plan) -- the same answer on every
rank, each file to exactly one rank. Files whose output is kept (--skip-existing) cost nothing and are
reported by rank 0.

Devices and threads: with CUDA, rank r uses the GPU of its LOCAL_RANK (`--device auto` or `cuda`; an
explicit cuda:N is kept). The CPU cores are split between the ranks of one machine; torchrun sets
OMP_NUM_THREADS=1 when it is unset, which is read as unset here (any other value is the user's and kept).
The process group is gloo in every case: only plans, digests and results cross it, never pixels.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from sr_cli import distributed
from sr_cli.batch import Job
from sr_cli.batch_run import FileResult
from sr_cli.distributed import SINGLE_PROCESS, Ranks
from sr_cli.errors import DeviceError, UsageError
from sr_cli.imageio.reader import peek_header

TORCHRUN_DEFAULT_THREADS = "1"  # what torchrun puts in OMP_NUM_THREADS when it starts several processes


@dataclass(frozen=True)
class Share:
    """This rank's part of a planned batch."""

    jobs: list[Job]  # in plan order
    counts: list[int]  # files per rank (the summary says how the batch was split)


def start(device_request: str) -> Ranks:
    """Join the other ranks: pin this rank's GPU, split the cores, create the gloo group. A single
    process is left exactly as it was (and loads no torch here)."""
    ranks = distributed.ranks_from_environment()
    if not ranks.distributed:
        return SINGLE_PROCESS
    import torch

    pin_gpu(device_request, ranks)
    torch.set_num_threads(threads_per_rank(ranks, os.environ.get("OMP_NUM_THREADS"), usable_cpus()))
    return distributed.start(ranks, backend="gloo")


def pin_gpu(device_request: str, ranks: Ranks) -> None:
    """Make cuda:LOCAL_RANK the current device, so `auto` and `cuda` resolve to it (engine.resolve_device)."""
    import torch

    if device_request.strip().lower() not in ("auto", "cuda") or not torch.cuda.is_available():
        return
    count = torch.cuda.device_count()
    if ranks.local_rank >= count:
        raise DeviceError(f"torchrun process {ranks.rank} has LOCAL_RANK {ranks.local_rank} but this machine has "
                          f"{count} GPU(s); start at most {count} per machine (--nproc-per-node {count}) "
                          "or give --device cpu or cuda:N")
    torch.cuda.set_device(ranks.local_rank)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_rank(ranks: Ranks, omp_num_threads: str | None, cpus: int) -> int:
    """The user's OMP_NUM_THREADS, else this machine's cores split evenly between its ranks."""
    if omp_num_threads not in (None, "", TORCHRUN_DEFAULT_THREADS):
        try:
            return max(int(omp_num_threads or ""), 1)
        except ValueError:
            raise UsageError(f"OMP_NUM_THREADS={omp_num_threads!r} is not a whole number of threads") from None
    return max(cpus // ranks.local_world_size, 1)


# --- the plan, the same on every rank ------------------------------------------------------------------


def plan_digest(jobs: Sequence[Job]) -> str:
    """A digest of everything planning decided (inputs, outputs, formats, what is kept)."""
    text = json.dumps([[str(job.source), str(job.output), job.format, job.skip, job.note] for job in jobs])
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_plan(jobs: Sequence[Job], context: Ranks) -> None:
    """UsageError on every rank when some rank planned a different batch than rank 0."""
    if not context.distributed:
        return
    mine = json.dumps([plan_digest(jobs), len(jobs), sum(job.skip for job in jobs)]).encode()
    plans = [json.loads(item) for item in distributed.all_gather_bytes(mine, context)]
    for rank, (digest, count, kept) in enumerate(plans):
        if digest != plans[0][0]:
            raise UsageError(
                f"torchrun process {rank} planned {count} file(s) ({kept} kept), process 0 {plans[0][1]} "
                f"({plans[0][2]} kept), or other names: every process must see the same inputs and output "
                "folder (a filesystem shared by all machines) and get the same arguments")


def share_for_rank(jobs: Sequence[Job], context: Ranks) -> Share:
    """This rank's jobs (plan order) and how many each rank got; all of them for a single process."""
    if not context.distributed:
        return Share(list(jobs), [len(jobs)])
    owners = assign(pixel_counts(jobs, context), [job.skip for job in jobs], context.world_size)
    counts = [owners.count(rank) for rank in range(context.world_size)]
    return Share([job for job, owner in zip(jobs, owners, strict=True) if owner == context.rank], counts)


def pixel_counts(jobs: Sequence[Job], context: Ranks) -> list[int]:
    """Width x height of every input from its header (0 when unreadable: it fails fast when its turn
    comes); rank r reads every world_size-th header from r, then all ranks exchange them."""
    mine = {index: _pixels(jobs[index]) for index in range(context.rank, len(jobs), context.world_size)
            if not jobs[index].skip}
    counts = [0] * len(jobs)
    for payload in distributed.all_gather_bytes(json.dumps(mine).encode(), context):
        for index, pixels in json.loads(payload).items():
            counts[int(index)] = int(pixels)
    return counts


def _pixels(job: Job) -> int:
    header = peek_header(job.source)
    return header[0] * header[1] if header is not None else 0


def assign(costs: Sequence[int], kept: Sequence[bool], world_size: int) -> list[int]:
    """The rank of each job: kept ones to rank 0; the others largest first to the least loaded rank."""
    owners = [0] * len(costs)
    loads = [(0, rank) for rank in range(world_size)]  # (work so far, rank): the heap's order breaks ties
    order = sorted((index for index in range(len(costs)) if not kept[index]), key=lambda index: (-costs[index], index))
    for index in order:
        load, rank = heapq.heappop(loads)
        owners[index] = rank
        # +1: files of equal (or unknown, 0) size still alternate between the ranks
        heapq.heappush(loads, (load + costs[index] + 1, rank))
    return owners


# --- the results, on rank 0 ----------------------------------------------------------------------------


def gather_results(results: Sequence[FileResult], jobs: Sequence[Job], context: Ranks) -> list[FileResult]:
    """Every rank's results, in the plan's order (results for no job -- a folder that could not be
    listed -- first), on rank 0; a single process gets its own back, in the same order."""
    if context.distributed:
        payload = json.dumps([asdict(result) for result in results], ensure_ascii=False).encode()
        everyone = [result_from_record(record) for item in distributed.all_gather_bytes(payload, context)
                    for record in json.loads(item)]
    else:
        everyone = list(results)
    position = {str(job.source): index for index, job in enumerate(jobs)}
    return sorted(everyone, key=lambda result: position.get(result.input, -1))


def result_from_record(record: dict[str, object]) -> FileResult:
    """The FileResult that `asdict` made `record` from (JSON turned its tuples into lists)."""
    known = {item.name for item in fields(FileResult)}
    values = {key: value for key, value in record.items() if key in known}
    for key in ("input_size", "output_size"):
        size = values.get(key)
        if isinstance(size, list):
            values[key] = tuple(size)
    if isinstance(values.get("run"), dict):  # how the engine ran it (device, tile, ...): the summary reads it
        from sr_cli.api import RunReport

        values["run"] = RunReport(**values["run"])  # type: ignore[arg-type]  # RunReport's own fields
    return FileResult(**values)  # type: ignore[arg-type]  # the keys are FileResult's own fields

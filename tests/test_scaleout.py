"""sr_cli.scaleout on its own: how a batch is dealt to torchrun ranks, threads per rank, plan checks,
results gathered in the plan's order (tests/test_upscale_torchrun.py runs the whole command)."""
from __future__ import annotations

import itertools
import random
import socket
from dataclasses import asdict
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from sr_cli.batch import Job
from sr_cli.batch_run import FileResult
from sr_cli.distributed import SINGLE_PROCESS, Ranks
from sr_cli.errors import UsageError
from sr_cli.scaleout import (
    assign,
    check_same_plan,
    gather_results,
    plan_digest,
    result_from_record,
    share_for_rank,
    threads_per_rank,
)


def _optimal_makespan(costs: list[int], world: int) -> int:
    """The best possible largest load (brute force over every assignment: independent of `assign`)."""
    return min(max(sum(c for c, owner in zip(costs, owners, strict=True) if owner == rank) for rank in range(world))
               for owners in itertools.product(range(world), repeat=len(costs)))


@pytest.mark.parametrize("seed", range(20))
def test_assignment_is_a_partition_close_to_the_best_balance(seed: int) -> None:
    rng = random.Random(seed)
    world = rng.choice([2, 3])
    costs = [rng.choice([0, rng.randint(1, 5000)]) for _ in range(rng.randint(1, 7))]
    owners = assign(costs, [False] * len(costs), world)
    assert all(0 <= owner < world for owner in owners) and len(owners) == len(costs)
    assert owners == assign(costs, [False] * len(costs), world)  # deterministic
    loads = [sum(c for c, owner in zip(costs, owners, strict=True) if owner == rank) for rank in range(world)]
    # largest-first greedy is within 4/3 of the optimum (Graham); the +1 per file adds at most len(costs)
    assert max(loads) <= 4 / 3 * _optimal_makespan(costs, world) + len(costs)


def test_equal_files_alternate_and_kept_files_go_to_rank_0() -> None:
    assert assign([7] * 5, [False] * 5, 2) == [0, 1, 0, 1, 0]
    assert assign([0] * 4, [False] * 4, 3) == [0, 1, 2, 0]  # unknown sizes (0) still spread
    assert assign([5, 9, 5, 9], [True, False, True, False], 2) == [0, 0, 0, 1]
    assert assign([3, 2, 1], [False] * 3, 1) == [0, 0, 0]


def test_threads_per_rank_split_the_machine_unless_the_user_chose() -> None:
    ranks = Ranks(rank=3, world_size=8, local_rank=1, local_world_size=4)
    assert threads_per_rank(ranks, None, 16) == 4
    assert threads_per_rank(ranks, "1", 16) == 4  # torchrun's own default: taken as unset
    assert threads_per_rank(ranks, "6", 16) == 6
    assert threads_per_rank(ranks, None, 2) == 1  # never 0
    with pytest.raises(UsageError, match="OMP_NUM_THREADS"):
        threads_per_rank(ranks, "many", 16)


def _jobs(names: list[str], skip: tuple[str, ...] = ()) -> list[Job]:
    return [Job(Path(f"in/{name}.png"), Path(f"out/{name}_x2.png"), "png", skip=name in skip) for name in names]


def test_a_single_process_keeps_everything_in_plan_order() -> None:
    jobs = _jobs(["a", "b", "c"])
    assert share_for_rank(jobs, SINGLE_PROCESS).jobs == jobs
    check_same_plan(jobs, SINGLE_PROCESS)  # nothing to compare with
    done = [FileResult(str(job.source), str(job.output), "done") for job in reversed(jobs)]
    folder = FileResult("in/locked", "", "failed", "in/locked: cannot list", 3)
    ordered = gather_results([*done, folder], jobs, SINGLE_PROCESS)
    assert [result.input for result in ordered] == ["in/locked", "in/a.png", "in/b.png", "in/c.png"]


def test_plan_digest_sees_every_decision() -> None:
    jobs = _jobs(["a", "b"])
    assert plan_digest(jobs) == plan_digest(_jobs(["a", "b"]))
    assert plan_digest(jobs) != plan_digest(_jobs(["b", "a"]))
    assert plan_digest(jobs) != plan_digest(_jobs(["a", "b"], skip=("b",)))
    assert plan_digest(jobs) != plan_digest([jobs[0], Job(jobs[1].source, jobs[1].output, "jpeg")])


def test_a_result_survives_the_trip_between_ranks() -> None:
    import json

    result = FileResult("in/a.png", "out/a.png", "done", notes=["16-bit"], input_size=(3, 4), output_size=(6, 8),
                        bit_depth=16, format="png", seconds=0.5)
    assert result_from_record(json.loads(json.dumps(asdict(result)))) == result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _planning_rank(rank: int, port: int, record: str) -> None:
    import os

    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo",
                       "OMP_NUM_THREADS": "1"})
    from sr_cli import distributed, scaleout

    context = scaleout.start("cpu")
    outcome = ""
    try:
        # rank 1 sees one more file (a folder that is not shared between machines, say)
        jobs = _jobs(["a", "b", "c"] if rank == 0 else ["a", "b", "c", "d"])
        scaleout.check_same_plan(jobs, context)
        outcome = "passed"
    except UsageError as error:
        outcome = str(error)
    finally:
        distributed.teardown(context, completed=False)
    Path(record, f"rank{rank}.txt").write_text(outcome, encoding="utf-8")


@pytest.mark.slow
def test_ranks_that_planned_differently_stop_with_the_same_error(tmp_path: Path) -> None:
    mp.start_processes(_planning_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    outcomes = [(tmp_path / f"rank{rank}.txt").read_text(encoding="utf-8") for rank in (0, 1)]
    assert outcomes[0] == outcomes[1], outcomes
    assert "torchrun process 1 planned 4 file(s)" in outcomes[0] and "process 0 3" in outcomes[0]

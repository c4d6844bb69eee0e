"""The torchrun-like worker of tests/test_train_ddp_failures.py: one rank of a 2-process gloo run in which
one rank fails, recording how this rank ended (spawned processes cannot report through pytest)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def failing_rank_worker(rank: int, world_size: int, port: int, data: str, out: str, scenario: str, record: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "GLOO_SOCKET_IFNAME": "lo"})
    from train_support import tiny_options

    import sr_cli.train.loop as loop
    from sr_cli.errors import DatasetError, SRError

    if scenario == "non-finite-weights-on-rank-0" and rank == 0:
        loop.all_finite = lambda state: False  # type: ignore[assignment]
    if scenario == "data-fails-on-rank-1" and rank == 1:
        def unreadable(*args: Any, **kwargs: Any) -> Any:
            raise DatasetError(f"{data}: the training cache cannot be read on this machine")

        loop.prepare_training_set = unreadable
    try:
        loop.train(tiny_options(Path(data), Path(out), steps=2, batch=4, save_every=1))
        outcome = "finished"
    except SRError as error:
        outcome = f"{type(error).__name__} exit {error.exit_code}: {error}"
    except BaseException as error:  # what the fix removes: a gloo RuntimeError on the rank that did not fail
        outcome = f"not ours: {type(error).__name__}: {error}"
    Path(record, f"rank{rank}.txt").write_text(outcome, encoding="utf-8")

"""DDP: 2 gloo processes on CPU, each with half the global batch, end where 1 process with the whole
batch ends (within float tolerance: only the order of the gradient sums differs)."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_support import ddp_worker, tiny_options, write_images


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_cli.train.loop import train

    data = write_images(tmp_path / "hr", count=4, size=(40, 48))
    overrides = dict(steps=3, batch=4, save_every=3)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    train(tiny_options(data, tmp_path / "one", **overrides))
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    mp.start_processes(ddp_worker, args=(2, _free_port(), str(data), str(tmp_path / "two"), overrides),
                       nprocs=2, join=True, start_method="spawn")
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    assert one["step"] == two["step"] == 3
    moved = 0
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5)
    # The comparison is meaningful: the weights moved by far more than the tolerance.
    initial = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    from sr_cli.train.network import build_network

    torch.manual_seed(0)
    start = build_network(tiny_options(data, tmp_path / "x", **overrides))[0].state_dict()
    moved = sum(float((initial[k] - start[k]).abs().max()) > 1e-4 for k in start if k.endswith("weight"))
    assert moved > 3

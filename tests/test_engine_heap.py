"""engine/heap.py: freed feature maps stay in the heap while a CPU forward runs, and only then."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sr_cli.engine import heap

BIG_FLOATS = 10 * 1024 * 1024  # 40 MiB: above glibc's largest mmap threshold (32 MiB), so mmapped by default
PAGES = BIG_FLOATS * 4 // 4096
REPO = Path(__file__).resolve().parents[1]


class FakeGlibc:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int] | tuple[str, int]] = []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append(("mallopt", option, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


def test_holders_share_one_setting_and_the_last_restores_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeGlibc()
    monkeypatch.setattr(heap, "_libc", fake)
    monkeypatch.setattr(heap, "_looked_up", True)
    entered, release = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with heap.reuse_freed_heap():
            entered.wait()
            release.wait()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    entered.wait()  # both threads hold it now
    with heap.reuse_freed_heap():  # and a nested holder on this thread
        pass
    assert fake.calls == [("mallopt", heap.M_MMAP_MAX, 0), ("mallopt", heap.M_TRIM_THRESHOLD, heap.HELD_TRIM_THRESHOLD)]
    release.set()
    for thread in threads:
        thread.join()
    assert fake.calls[2:] == [("mallopt", heap.M_MMAP_MAX, heap.DEFAULT_MMAP_MAX),
                              ("mallopt", heap.M_TRIM_THRESHOLD, heap.DEFAULT_TRIM_THRESHOLD), ("malloc_trim", 0)]
    assert heap._holders == 0


def test_an_error_inside_still_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeGlibc()
    monkeypatch.setattr(heap, "_libc", fake)
    monkeypatch.setattr(heap, "_looked_up", True)
    with pytest.raises(KeyboardInterrupt), heap.reuse_freed_heap():
        raise KeyboardInterrupt
    assert fake.calls[-1] == ("malloc_trim", 0) and heap._holders == 0


def test_without_glibc_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_libc", None)
    monkeypatch.setattr(heap, "_looked_up", True)
    with heap.reuse_freed_heap():
        assert heap._holders == 0


# Run in a fresh interpreter: the default behaviour is only observable on a heap without big free holes
# (a process that has already freed a big block in the heap's middle serves the next one from there).
_PROBE = """
import json, resource, torch
from sr_cli.engine import heap

BIG_FLOATS, CYCLES = {big}, 8

def faults_per_allocation():
    for _ in range(CYCLES):  # unmeasured: while held, the first few land at new addresses until freed ones merge
        torch.ones(BIG_FLOATS)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(CYCLES):
        torch.ones(BIG_FLOATS)  # touched, then freed at once: as a forward's layers are
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / CYCLES

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

report = {{"glibc": heap.glibc() is not None, "default": faults_per_allocation()}}
with heap.reuse_freed_heap():
    report["held"] = faults_per_allocation()
    report["rss_held"] = rss_kib()
report["rss_after"] = rss_kib()
print(json.dumps(report))
"""


def test_real_glibc_reuses_freed_blocks_only_while_held() -> None:
    """The behaviour itself: the kernel page-faults a fresh block in page by page (one fault per 4 KiB page,
    or per huge page where they are used); a reused one needs none. On leaving, the heap is trimmed."""
    if heap.glibc() is None or not Path("/proc/self/status").is_file():
        pytest.skip("not glibc on Linux: reuse_freed_heap is a no-op here")
    done = subprocess.run([sys.executable, "-c", _PROBE.format(big=BIG_FLOATS)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["glibc"]
    assert report["default"] > PAGES / 2, f"glibc did not mmap a fresh 40 MiB block: {report}"
    assert report["held"] < PAGES / 20, f"freed blocks were not reused while held: {report}"
    assert report["rss_after"] < report["rss_held"] - 30 * 1024, f"the held memory was not given back: {report}"

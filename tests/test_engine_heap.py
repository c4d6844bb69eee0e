"""engine/heap.py: freed feature maps stay in the heap while a CPU forward runs, and only then."""
from __future__ import annotations

import threading

import pytest
import torch

from sr_cli.engine import heap

BIG_FLOATS = 10 * 1024 * 1024  # 40 MiB: above glibc's largest mmap threshold (32 MiB), so mmapped by default
PAGES = BIG_FLOATS * 4 // 4096


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


def _faults_per_big_allocation() -> float:
    """Mean page faults of same-sized allocations, each touched and freed before the next (as a forward's
    layers are), after as many unmeasured ones. By default every one is mmapped afresh and unmapped on free.
    While held, the first few land at new addresses (memalign's remainders and small allocations in between
    keep a freed block from merging) until freed blocks coalesce; from then on most are reused."""
    resource = pytest.importorskip("resource")
    cycles = 8
    for _ in range(cycles):
        _touched_block()  # freed as soon as it returns: nothing holds it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(cycles):
        _touched_block()  # freed as soon as it returns: nothing holds it
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / cycles


def _touched_block() -> torch.Tensor:
    return torch.ones(BIG_FLOATS)


def test_real_glibc_reuses_freed_blocks_only_while_held() -> None:
    """The behaviour itself: the kernel page-faults a fresh block in page by page (one fault per 4 KiB page,
    or per huge page where they are used); a reused one needs none."""
    if heap.glibc() is None:
        pytest.skip("not glibc: reuse_freed_heap is a no-op here")
    with heap.reuse_freed_heap():
        held = _faults_per_big_allocation()
    after = _faults_per_big_allocation()
    assert held < PAGES / 4, f"{held:.0f} page faults per allocation while held ({PAGES} pages each)"
    assert after > 2 * held + 16, f"defaults not restored: {after:.0f} faults per allocation after, {held:.0f} while held"

"""Download, verification and cache behaviour against a local server that fails on demand."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_fault_server import FaultServer  # tests/ is on sys.path (pytest prepend import mode)
from huggingface_hub.utils import _http as hf_http

from sr_cli.errors import ChecksumError, DownloadError, InputError, OfflineError, OutputError
from sr_cli.weights import cache, download
from sr_cli.weights.manifest import HubSource, ManifestEntry, UrlSource, load_manifest

REVISION = "0123456789abcdef0123456789abcdef01234567"
PAYLOAD = bytes(range(256)) * 1024 + b"tail"  # 262,148 bytes: several 64 KiB reads, odd length


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultServer]:
    with FaultServer() as running:
        monkeypatch.setenv("HF_ENDPOINT", running.hub_endpoint)
        yield running


def make_entry(*sources: HubSource | UrlSource, data: bytes = PAYLOAD, prefix_only: bool = False,
               size_known: bool = True) -> ManifestEntry:
    digest = hashlib.sha256(data).hexdigest()
    template = load_manifest().get("vdsr")
    assert template is not None
    return dataclasses.replace(
        template, name="test-model", filename="weights.pth", sources=tuple(sources),
        sha256=None if prefix_only else digest, sha256_prefix=digest[:8] if prefix_only else None,
        size=len(data) if size_known else None)


def cache_dirs() -> list[Path]:
    root = cache.weights_dir()
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.exists() else []


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SR_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("SR_CACHE_DIR")
    assert cache.cache_root() == tmp_path / "xdg" / "sr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "sr"


def test_url_500_falls_back(server: FaultServer) -> None:
    server.add_file("/a.pth", PAYLOAD)
    server.set_fault("/a.pth", "500")
    server.add_file("/b.pth", PAYLOAD)
    entry = make_entry(UrlSource(server.url("/a.pth")), UrlSource(server.url("/b.pth")))
    assert download.fetch(entry).read_bytes() == PAYLOAD
    assert [r.status for r in server.requests] == [500, 200]


def test_url_404_falls_back_and_caches_verified_bytes(server: FaultServer) -> None:
    server.add_file("/a.pth", PAYLOAD)
    server.add_file("/b.pth", PAYLOAD)
    server.set_fault("/a.pth", "404")
    entry = make_entry(UrlSource(server.url("/a.pth")), UrlSource(server.url("/b.pth")))
    seen: list[tuple[int, int]] = []
    path = download.fetch(entry, progress=lambda done, total: seen.append((done, total)))
    assert path == cache.weights_dir() / hashlib.sha256(PAYLOAD).hexdigest() / "weights.pth"
    assert path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert not download.part_path(entry).exists()
    # a second fetch is a cache hit: no new request
    before = len(server.requests)
    assert download.fetch(entry) == path
    assert len(server.requests) == before


class _NoSleep:
    """Stands in for huggingface_hub's `time` module: its 5xx backoff (about 20 s) is its business, not ours."""

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


def test_hub_500_falls_back_to_url(server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_http, "time", _NoSleep())
    hub_path = server.add_hub_file("owner/mirror", REVISION, "w.pth", PAYLOAD)
    server.set_fault(hub_path, "500")
    server.add_file("/w.pth", PAYLOAD)
    entry = make_entry(HubSource("owner/mirror", "w.pth", REVISION), UrlSource(server.url("/w.pth")))
    assert download.fetch(entry).read_bytes() == PAYLOAD
    assert server.gets("/w.pth"), "the URL source was not tried"


def test_hub_download_lands_in_hf_home_and_second_mirror_is_tried(server: FaultServer,
                                                                   isolated_caches: Path) -> None:
    missing = server.add_hub_file("owner/gone", REVISION, "w.pth", PAYLOAD)
    server.set_fault(missing, "404")
    server.add_hub_file("owner/good", REVISION, "sub/w.pth", PAYLOAD, repo_type="dataset")
    entry = make_entry(HubSource("owner/gone", "w.pth", REVISION),
                       HubSource("owner/good", "sub/w.pth", REVISION, repo_type="dataset"))
    seen: list[tuple[int, int]] = []
    path = download.fetch(entry, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == PAYLOAD
    assert seen and seen[-1] == (len(PAYLOAD), len(PAYLOAD)), "hub progress is not forwarded"
    hub_copy = isolated_caches / "hf" / "hub" / "datasets--owner--good" / "snapshots" / REVISION / "sub" / "w.pth"
    assert hub_copy.is_file() and hub_copy.read_bytes() == PAYLOAD


def test_offline_uses_the_hub_cache_but_not_the_network(server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.add_hub_file("owner/good", REVISION, "w.pth", PAYLOAD)
    entry = make_entry(HubSource("owner/good", "w.pth", REVISION))
    download.fetch(entry)
    for item in cache.cached_files():  # forget sr's copy; the hub cache still has it
        item.path.unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(server.requests)
    assert download.fetch(entry).read_bytes() == PAYLOAD
    assert len(server.requests) == before


@pytest.mark.parametrize("variable", ["SR_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_and_not_cached_names_the_fix(server: FaultServer, monkeypatch: pytest.MonkeyPatch,
                                             variable: str) -> None:
    server.add_file("/w.pth", PAYLOAD)
    entry = make_entry(UrlSource(server.url("/w.pth")))
    monkeypatch.setenv(variable, "1")
    with pytest.raises(OfflineError) as caught:
        download.fetch(entry)
    assert str(caught.value) == ("test-model is not in the cache; run `sr weights download test-model` "
                                 "where there is network, or pass --weights FILE")
    assert server.requests == []


def test_wrong_bytes_are_rejected_and_never_cached(server: FaultServer) -> None:
    server.add_file("/w.pth", PAYLOAD)
    server.set_fault("/w.pth", "wrong_bytes")
    entry = make_entry(UrlSource(server.url("/w.pth")))
    with pytest.raises(ChecksumError, match="sha256"):
        download.fetch(entry)
    assert cache_dirs() == []
    assert not download.part_path(entry).exists()


def test_wrong_bytes_from_the_hub_are_evicted_and_the_next_source_used(server: FaultServer,
                                                                        isolated_caches: Path) -> None:
    bad = server.add_hub_file("owner/bad", REVISION, "w.pth", PAYLOAD)
    server.set_fault(bad, "wrong_bytes")
    server.add_file("/w.pth", PAYLOAD)
    entry = make_entry(HubSource("owner/bad", "w.pth", REVISION), UrlSource(server.url("/w.pth")))
    assert download.fetch(entry).read_bytes() == PAYLOAD
    blobs = list((isolated_caches / "hf" / "hub" / "models--owner--bad" / "blobs").glob("*"))
    assert blobs == [], "the wrong bytes stayed in the Hugging Face cache"


@pytest.mark.parametrize("ranges", [True, False], ids=["resume", "restart"])
def test_truncated_download_is_not_cached_and_a_retry_completes(server: FaultServer, ranges: bool) -> None:
    server.add_file("/w.pth", PAYLOAD)
    server.set_fault("/w.pth", "truncate", times=1)
    server.set_ranges("/w.pth", ranges)
    entry = make_entry(UrlSource(server.url("/w.pth")))
    with pytest.raises(DownloadError, match="truncated|closed|connection lost") as caught:
        download.fetch(entry)
    assert not isinstance(caught.value, ChecksumError)
    assert cache_dirs() == [] and cache.find_cached(entry) is None
    part = download.part_path(entry)
    assert 0 < part.stat().st_size < len(PAYLOAD)
    kept = part.stat().st_size

    path = download.fetch(entry)
    assert path.read_bytes() == PAYLOAD
    retry = server.gets("/w.pth")[-1]
    if ranges:
        assert retry.range == f"bytes={kept}-" and retry.status == 206
    else:
        assert retry.status == 200
    assert not part.exists()


def test_a_corrupt_partial_file_is_discarded_after_the_resumed_hash_fails(server: FaultServer) -> None:
    server.add_file("/w.pth", PAYLOAD)
    entry = make_entry(UrlSource(server.url("/w.pth")))
    part = download.part_path(entry)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"\xff" * 1000)  # not a prefix of the file
    assert download.fetch(entry).read_bytes() == PAYLOAD
    statuses = [r.status for r in server.gets("/w.pth")]
    assert statuses == [206, 200]


def test_slow_first_byte_times_out_and_the_next_source_is_used(server: FaultServer) -> None:
    server.add_file("/slow.pth", PAYLOAD)
    server.set_fault("/slow.pth", "slow_first_byte", delay=3.0)
    server.add_file("/w.pth", PAYLOAD)
    entry = make_entry(UrlSource(server.url("/slow.pth")), UrlSource(server.url("/w.pth")))
    assert download.fetch(entry, timeout=0.5).read_bytes() == PAYLOAD


def test_every_source_failing_lists_each_in_one_line(server: FaultServer) -> None:
    server.add_file("/a.pth", PAYLOAD)
    server.set_fault("/a.pth", "500")
    hub_path = server.add_hub_file("owner/m", REVISION, "w.pth", PAYLOAD)
    server.set_fault(hub_path, "404")
    entry = make_entry(HubSource("owner/m", "w.pth", REVISION), UrlSource(server.url("/a.pth")),
                       UrlSource(server.url("/missing.pth")))
    with pytest.raises(DownloadError) as caught:
        download.fetch(entry)
    message = str(caught.value)
    assert "\n" not in message
    assert "hf:owner/m@01234567/w.pth: HTTP 404" in message
    assert f"{server.url('/a.pth')}: HTTP 500" in message
    assert f"{server.url('/missing.pth')}: HTTP 404" in message


def test_prefix_only_entry_is_checked_by_prefix_and_stored_under_its_full_hash(server: FaultServer) -> None:
    server.add_file("/w.pth", PAYLOAD)
    entry = make_entry(UrlSource(server.url("/w.pth")), prefix_only=True, size_known=False)
    path = download.fetch(entry)
    assert path.parent.name == hashlib.sha256(PAYLOAD).hexdigest()
    assert cache.find_cached(entry) == path
    other = dataclasses.replace(entry, sha256_prefix="00000000")
    assert cache.find_cached(other) is None


def test_a_cached_file_of_the_wrong_size_is_not_used(server: FaultServer) -> None:
    server.add_file("/w.pth", PAYLOAD)
    entry = make_entry(UrlSource(server.url("/w.pth")))
    path = download.fetch(entry)
    path.write_bytes(PAYLOAD[:100])  # damaged after the fact
    assert cache.find_cached(entry) is None
    assert download.fetch(entry).read_bytes() == PAYLOAD


def test_verify_all_rehashes_and_reports_damage(server: FaultServer) -> None:
    server.add_file("/w.pth", PAYLOAD)
    path = download.fetch(make_entry(UrlSource(server.url("/w.pth"))))
    assert [r.ok for r in cache.verify_all()] == [True]
    damaged = bytearray(PAYLOAD)
    damaged[5] ^= 1
    path.write_bytes(bytes(damaged))
    results = cache.verify_all()
    assert [r.ok for r in results] == [False]
    assert results[0].actual_sha256 == hashlib.sha256(bytes(damaged)).hexdigest()
    cache.verify_all(remove_bad=True)
    assert cache.cached_files() == []


def test_import_checks_sha256(tmp_path: Path) -> None:
    entry = make_entry(UrlSource("https://example.invalid/w.pth"))
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(PAYLOAD[:-1] + b"X")
    with pytest.raises(ChecksumError, match="nothing was imported"):
        cache.import_file(entry, wrong)
    assert cache.cached_files() == []
    with pytest.raises(InputError):
        cache.import_file(entry, tmp_path / "absent.pth")
    good = tmp_path / "good.pth"
    good.write_bytes(PAYLOAD)
    stored = cache.import_file(entry, good)
    assert stored.read_bytes() == PAYLOAD and good.exists()
    assert cache.find_cached(entry) == stored
    assert not os.path.samefile(good, stored), "an imported file must be a copy the user cannot edit by accident"


def test_ctrl_c_mid_download_leaves_no_entry_and_the_next_run_resumes(server: FaultServer) -> None:
    big = PAYLOAD * 12  # about 3 MiB: several 1 MiB reads
    server.add_file("/w.pth", big)
    entry = make_entry(UrlSource(server.url("/w.pth")), data=big)

    def interrupt(done: int, total: int) -> None:
        if done >= 1 << 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download.fetch(entry, progress=interrupt)
    assert cache_dirs() == []
    kept = download.part_path(entry).stat().st_size
    assert 1 << 20 <= kept < len(big)
    assert download.fetch(entry).read_bytes() == big
    assert server.gets("/w.pth")[-1].range == f"bytes={kept}-"


def test_a_complete_partial_file_is_used_without_the_network(server: FaultServer) -> None:
    entry = make_entry(UrlSource(server.url("/absent.pth")))
    part = download.part_path(entry)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(PAYLOAD)  # all bytes arrived, the rename did not happen
    assert download.fetch(entry).read_bytes() == PAYLOAD
    assert server.requests == []


def test_concurrent_fetches_of_one_file_download_it_once(server: FaultServer) -> None:
    server.add_file("/w.pth", PAYLOAD)
    server.set_fault("/w.pth", "slow_first_byte", delay=0.3)
    entry = make_entry(UrlSource(server.url("/w.pth")))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(download.fetch(entry))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2 and results[0] == results[1] and results[0].read_bytes() == PAYLOAD
    assert len(server.gets("/w.pth")) == 1, "the second fetch should have waited and found the cached file"


def test_a_range_answer_for_the_wrong_offset_restarts_cleanly(server: FaultServer) -> None:
    server.add_file("/w.pth", PAYLOAD)
    server.set_fault("/w.pth", "bad_range", times=1)
    entry = make_entry(UrlSource(server.url("/w.pth")))
    part = download.part_path(entry)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(PAYLOAD[:1000])
    assert download.fetch(entry).read_bytes() == PAYLOAD
    assert [(r.range, r.status) for r in server.gets("/w.pth")] == [("bytes=1000-", 206), (None, 200)]


def test_a_longer_file_than_the_manifest_says_is_cut_off_and_deleted(server: FaultServer) -> None:
    server.add_file("/w.pth", PAYLOAD + b"extra bytes")
    entry = make_entry(UrlSource(server.url("/w.pth")))
    with pytest.raises(ChecksumError, match="more than the expected"):
        download.fetch(entry)
    assert cache_dirs() == [] and not download.part_path(entry).exists()


def test_an_unwritable_cache_is_an_output_error_not_a_source_failure(server: FaultServer, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("SR_CACHE_DIR", str(blocker / "sr"))
    server.add_file("/w.pth", PAYLOAD)
    with pytest.raises(OutputError, match="SR_CACHE_DIR"):
        download.fetch(make_entry(UrlSource(server.url("/w.pth"))))


EDSR_HISTORY_COMMIT = "d4a255bdd0a26c195fb10a3296f99c8230454a5d"
EDSR_HISTORY_FILES = {"edsr-baseline-x2": "EDSR_baseline_x2.pt", "edsr-baseline-x3": "EDSR_baseline_x3.pt",
                      "edsr-baseline-x4": "EDSR_baseline_x4.pt", "mdsr-baseline": "MDSR_baseline.pt"}


@pytest.mark.parametrize("name", sorted(EDSR_HISTORY_FILES))
def test_baselines_fall_back_from_the_authors_server_to_the_pinned_git_history(server: FaultServer, name: str) -> None:
    """The manifest's own sources, in its order, each moved onto the local server under its host and path:
    the authors' server failing, the raw file at the pinned EDSR-PyTorch commit is fetched next."""
    entry = load_manifest().get(name)
    assert entry is not None
    urls = [source.url for source in entry.sources if isinstance(source, UrlSource)]
    assert urls == [f"https://cv.snu.ac.kr/research/EDSR/models/{entry.filename}",
                    f"https://raw.githubusercontent.com/sanghyun-son/EDSR-PyTorch/{EDSR_HISTORY_COMMIT}/"
                    f"experiment/model/{EDSR_HISTORY_FILES[name]}"]
    local = [url.replace("https://", "/", 1) for url in urls]
    for path in local:
        server.add_file(path, PAYLOAD)
    server.set_fault(local[0], "500")
    entry = dataclasses.replace(make_entry(*(UrlSource(server.url(path)) for path in local)), name=entry.name,
                                filename=entry.filename)
    assert download.fetch(entry).read_bytes() == PAYLOAD
    assert [(r.path, r.status) for r in server.requests if r.method == "GET"] == [(local[0], 500), (local[1], 200)]

"""files.http: the one verified download stream, as datasets/DIV2K/VGG use it (`download_to`) and as
weights use it (free space). Weights' source fallbacks are in test_download.py."""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from http_fault_server import FaultServer  # tests/ is on sys.path under pytest

from sr_cli.errors import ChecksumError, DownloadError, OutputError
from sr_cli.files import http
from sr_cli.files.digest import ExpectedSha256
from sr_cli.weights import download
from sr_cli.weights.manifest import UrlSource

PAYLOAD = bytes(range(251)) * 997  # 250,247 bytes, several 1 MiB-or-less reads
FULL = ExpectedSha256.full(hashlib.sha256(PAYLOAD).hexdigest())


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


@pytest.fixture()
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        running.add_file("/f.bin", PAYLOAD)
        yield running


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "A" * 64, "0" * 63, "0" * 65])
def test_a_full_digest_is_64_lowercase_hex_digits(bad: str) -> None:
    with pytest.raises(ValueError):
        ExpectedSha256.full(bad)


@pytest.mark.parametrize("bad", ["", "abc", "0" * 7, "g" * 8, "A" * 8, "0" * 64])
def test_a_prefix_is_8_to_63_lowercase_hex_digits(bad: str) -> None:
    """Before: an empty digest accepted any file (every sha256 starts with "")."""
    with pytest.raises(ValueError):
        ExpectedSha256.prefix(bad)


def test_a_prefix_digest_accepts_only_files_that_start_with_it() -> None:
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert ExpectedSha256.prefix(digest[:8]).matches(digest)
    assert not ExpectedSha256.prefix("0" * 8).matches(digest) or digest.startswith("0" * 8)
    assert not FULL.matches(digest[:63] + ("0" if digest[-1] != "0" else "1"))


def test_the_hash_is_computed_while_streaming_not_in_a_second_pass(server: FaultServer, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def no_second_pass(path: Path, progress: object = None) -> str:
        raise AssertionError(f"{path} was read back to hash it")

    monkeypatch.setattr(http, "sha256_of", no_second_pass)
    dest = tmp_path / "f.bin"
    assert http.download_to(server.url("/f.bin"), dest, FULL, len(PAYLOAD)).read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no .part, no lock file left


def test_a_resume_answered_with_the_wrong_range_restarts_and_verifies(server: FaultServer, tmp_path: Path) -> None:
    """Before: datasets accepted any 206 and appended a body from byte 0 to the kept prefix."""
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    server.set_fault("/f.bin", "bad_range", times=1)
    assert http.download_to(server.url("/f.bin"), dest, FULL, None).read_bytes() == PAYLOAD
    assert [(r.range, r.status) for r in server.gets("/f.bin")] == [("bytes=1000-", 206), (None, 200)]


def test_an_over_long_body_is_refused_and_deleted(server: FaultServer, tmp_path: Path) -> None:
    with pytest.raises(ChecksumError, match="more than the expected"):
        http.download_to(server.url("/f.bin"), tmp_path / "f.bin", FULL, len(PAYLOAD) - 1)
    assert list(tmp_path.iterdir()) == []


def test_a_connection_lost_mid_body_is_a_download_error_and_resumes(server: FaultServer, tmp_path: Path) -> None:
    server.set_fault("/f.bin", "truncate", times=1)
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="kept and resumed") as caught:
        http.download_to(server.url("/f.bin"), dest, FULL, len(PAYLOAD))
    assert type(caught.value) is DownloadError  # the network's fault: not OutputError, not a checksum
    kept = (tmp_path / "f.bin.part").stat().st_size
    assert 0 < kept < len(PAYLOAD)
    assert http.download_to(server.url("/f.bin"), dest, FULL, len(PAYLOAD)).read_bytes() == PAYLOAD
    assert server.gets("/f.bin")[-1].range == f"bytes={kept}-"


def test_a_server_error_does_not_claim_a_partial_file_that_does_not_exist(server: FaultServer, tmp_path: Path) -> None:
    server.set_fault("/f.bin", "500")
    with pytest.raises(DownloadError) as caught:
        http.download_to(server.url("/f.bin"), tmp_path / "f.bin", FULL, None)
    assert "HTTP 500" in str(caught.value) and "partial" not in str(caught.value)


@pytest.mark.timeout(60)
def test_two_processes_downloading_one_file_fetch_it_once(server: FaultServer, tmp_path: Path) -> None:
    server.set_fault("/f.bin", "slow_first_byte", delay=0.3)
    dest = tmp_path / "f.bin"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(http.download_to(server.url("/f.bin"), dest, FULL, None)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [dest, dest] and dest.read_bytes() == PAYLOAD
    assert len(server.gets("/f.bin")) == 1


def test_weights_downloads_check_free_space_too(server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: only the dataset downloader looked at the free space."""
    from test_download import make_entry

    monkeypatch.setattr(http.shutil, "disk_usage", lambda _path: DiskUsage(10**12, 10**12 - 1000, 1000))
    with pytest.raises(OutputError, match="GB free; free space or set SR_CACHE_DIR"):
        download.fetch(make_entry(UrlSource(server.url("/f.bin")), data=PAYLOAD))
    assert server.gets("/f.bin") == []


def test_a_tls_error_while_reading_is_that_source_failing_not_our_disk(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: datasets mapped an OSError from the network read (ssl.SSLError is one) to OutputError,
    exit 4, "check free space"."""
    import io
    import ssl

    class BrokenBody(io.BytesIO):
        status = 200
        headers = {"Content-Length": str(len(PAYLOAD))}

        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= 4096:
                raise ssl.SSLError("[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed")
            return super().read(min(size or 4096, 4096))

    monkeypatch.setattr(http.urllib.request, "urlopen", lambda *args, **kwargs: BrokenBody(PAYLOAD))
    with pytest.raises(DownloadError, match="connection lost after 4096") as caught:
        http.download_to("https://example.invalid/f.bin", tmp_path / "f.bin", FULL, len(PAYLOAD))
    assert type(caught.value) is DownloadError and (tmp_path / "f.bin.part").stat().st_size == 4096

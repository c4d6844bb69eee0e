"""No network and no SR_OFFLINE: a name that does not resolve or a refused connection stops the download at
once, in one line that names the model and the two ways on (SR_OFFLINE=1, sr weights import)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import run_cli
from http_fault_server import FaultServer
from huggingface_hub.utils import _http as hf_http

from sr_cli.errors import DownloadError
from sr_cli.files import http
from sr_cli.weights import download, hub
from sr_cli.weights import manifest as manifest_module
from sr_cli.weights.manifest import HubSource, UrlSource, load_manifest

REVISION = "0123456789abcdef0123456789abcdef01234567"
SANITY_BOUND_S = 30.0  # not a speed test (attempts are counted): the old behaviour took ~55 s here


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound once to get a free number, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Attempts:
    """Counts what would have been slow: connections opened, huggingface_hub calls and its backoff sleeps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connects: list[tuple[str, int]] = []
        self.hub_calls = 0
        self.sleeps: list[float] = []
        real_connect = socket.create_connection
        real_download = hub.hf_hub_download

        def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
            self.connects.append(address)
            return real_connect(address, *args, **kwargs)

        def hub_download(*args: Any, **kwargs: Any) -> Any:
            self.hub_calls += 1
            return real_download(*args, **kwargs)

        class _Time:
            def __getattr__(self, name: str) -> object:
                return getattr(time, name)

            @staticmethod
            def sleep(seconds: float) -> None:
                outer.sleeps.append(seconds)

        outer = self
        monkeypatch.setattr(http.socket, "create_connection", connect)
        monkeypatch.setattr(hub, "hf_hub_download", hub_download)
        monkeypatch.setattr(hf_http, "time", _Time())


def dead_entry(port: int) -> Any:
    """esrgan's entry, but every source on a closed local port: two hub mirrors and a URL."""
    entry = load_manifest().get("esrgan")
    assert entry is not None
    return dataclasses.replace(entry, sources=(
        HubSource("databuzzword/esrgan", "RRDB_ESRGAN_x4.pth", REVISION),
        HubSource("Voix/ESRGAN1", "RRDB_ESRGAN_x4.pth", REVISION),
        UrlSource(f"http://127.0.0.1:{port}/ESRGAN.pth")))


def assert_no_network_line(message: str, name: str) -> None:
    assert "\n" not in message.strip()
    assert message.count(name) >= 2  # named, and in the import command
    assert "no network" in message and "SR_OFFLINE=1" in message and f"sr weights import {name}" in message
    assert "refused" in message
    assert len(message) < 400, message


def test_a_refused_connection_stops_at_once(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    attempts = Attempts(monkeypatch)
    start = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download.fetch(dead_entry(closed_port))
    assert time.monotonic() - start < SANITY_BOUND_S
    assert_no_network_line(str(caught.value), "esrgan")
    # one connection to the one dead host (both mirrors and the URL live there), no hub retries at all
    assert attempts.connects == [("127.0.0.1", closed_port)]
    assert attempts.hub_calls == 0 and attempts.sleeps == []
    assert caught.value.exit_code == 6


def test_a_name_that_does_not_resolve_is_no_network_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://sr-test-host.invalid")  # .invalid never resolves (RFC 2606)
    attempts = Attempts(monkeypatch)
    entry = dead_entry(9)
    entry = dataclasses.replace(entry, sources=(*entry.sources[:2], UrlSource("http://sr-test-host.invalid/x.pth")))
    with pytest.raises(DownloadError) as caught:
        download.fetch(entry)
    message = str(caught.value)
    assert "cannot resolve sr-test-host.invalid" in message and "SR_OFFLINE=1" in message
    assert attempts.hub_calls == 0 and attempts.sleeps == []


def test_a_dead_host_does_not_stop_a_live_mirror(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"weights" * 1000
    with FaultServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.hub_endpoint)
        server.add_hub_file("owner/good", REVISION, "w.pth", payload)
        entry = dataclasses.replace(dead_entry(closed_port), filename="w.pth", size=len(payload),
                                    sha256=hashlib.sha256(payload).hexdigest(), sources=(
                                        UrlSource(f"http://127.0.0.1:{closed_port}/w.pth"),
                                        HubSource("owner/good", "w.pth", REVISION)))
        assert download.fetch(entry).read_bytes() == payload


def test_a_reachable_proxy_is_probed_instead_of_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        http.check_reachable("http://sr-test-host.invalid/x", timeout=5)  # through the proxy: no error
        monkeypatch.setenv("no_proxy", "sr-test-host.invalid")
        with pytest.raises(http.SourceFailed) as caught:
            http.check_reachable("http://sr-test-host.invalid/x", timeout=5)
        assert caught.value.unreachable


@pytest.fixture
def dead_manifest(tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    data = json.loads((Path(__file__).resolve().parents[1] / "weights_manifest.json").read_text())
    esrgan = next(m for m in data["models"] if m["name"] == "esrgan")
    for source in esrgan["sources"]:
        if source["kind"] == "url":
            source["url"] = f"https://127.0.0.1:{closed_port}/ESRGAN.pth"
    path = tmp_path / "weights_manifest.json"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(manifest_module, "manifest_path", lambda: path)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    yield closed_port


@pytest.mark.parametrize("command", [
    lambda image: ["weights", "download", "esrgan"],
    lambda image: ["upscale", str(image), "--model", "esrgan", "-o", str(image.parent / "out")],
], ids=["weights download", "upscale"])
def test_the_cli_says_it_in_one_line_and_exits_6(command: Callable[[Path], list[str]], dead_manifest: int,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(image)
    attempts = Attempts(monkeypatch)
    start = time.monotonic()
    code, out, err = run_cli(capsys, command(image))
    assert time.monotonic() - start < SANITY_BOUND_S
    assert code == 6, err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, err
    assert_no_network_line(error_lines[0], "esrgan")
    assert "Retry" not in err and "Traceback" not in err
    assert attempts.hub_calls == 0 and attempts.sleeps == []
    assert len(attempts.connects) == 1

"""A small threaded HTTP server on 127.0.0.1 that misbehaves on demand (a reusable test fixture module).

It serves files two ways:
- plain URLs: `server.url("/files/x.pth")`;
- the Hugging Face hub "resolve" layout, `/{repo}/resolve/{revision}/{filename}` (datasets under
  `/datasets/...`), with the headers `hf_hub_download` needs when HF_ENDPOINT points here:
  `X-Repo-Commit` (the revision), `ETag` / `X-Linked-Etag` (the sha256, as for LFS files),
  `X-Linked-Size` and `Content-Length`.

Faults, per path: "404", "500", "truncate" (announces the full length, sends half, closes),
"wrong_bytes" (same length, other bytes), "slow_first_byte" (waits `delay` seconds, at most
MAX_DELAY_S, before the status line), "bad_range" (answers a Range request with 206 and the whole
file from byte 0, a range it was not asked for). `times=N` applies a fault to the next N GETs only (HEADs
see "404"/"500"/"slow_first_byte" too, without using them up). Range support can be switched off
per path, and every request is logged in `server.requests`.

    from http_fault_server import FaultServer  # tests/ is on sys.path under pytest

    with FaultServer() as server:
        server.add_file("/files/a.bin", data)
        server.set_fault("/files/a.bin", "truncate", times=1)
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

FaultKind = Literal["404", "500", "truncate", "wrong_bytes", "slow_first_byte", "bad_range"]
MAX_DELAY_S = 10.0
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class _Served:
    data: bytes
    revision: str | None = None  # set for hub-layout files
    fault: FaultKind | None = None
    times: int | None = None  # None: every request
    delay: float = 0.0
    ranges: bool = True


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    range: str | None
    status: int


@dataclass
class _State:
    files: dict[str, _Served] = field(default_factory=dict)
    requests: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)


class FaultServer:
    def __init__(self) -> None:
        self._state = _State()
        handler = type("_BoundHandler", (_Handler,), {"state": self._state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-server", daemon=True)

    # --- lifecycle ---
    def start(self) -> FaultServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._state.closing.set()  # wakes any slow_first_byte sleeper
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- addresses ---
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server
        return f"http://{host}:{port}"

    @property
    def hub_endpoint(self) -> str:
        """The value for HF_ENDPOINT."""
        return self.base_url

    def url(self, path: str) -> str:
        return self.base_url + path

    # --- content ---
    def add_file(self, path: str, data: bytes) -> str:
        with self._state.lock:
            self._state.files[path] = _Served(data=data)
        return self.url(path)

    def add_hub_file(self, repo: str, revision: str, filename: str, data: bytes,
                     repo_type: Literal["model", "dataset"] = "model") -> str:
        prefix = "/datasets" if repo_type == "dataset" else ""
        path = f"{prefix}/{repo}/resolve/{revision}/{filename}"
        with self._state.lock:
            self._state.files[path] = _Served(data=data, revision=revision)
        return path

    def set_fault(self, path: str, fault: FaultKind | None, *, times: int | None = None, delay: float = 0.0) -> None:
        if delay > MAX_DELAY_S:
            raise ValueError(f"delay {delay} s is over the {MAX_DELAY_S} s bound")
        with self._state.lock:
            served = self._state.files[path]
            served.fault, served.times, served.delay = fault, times, delay

    def set_ranges(self, path: str, enabled: bool) -> None:
        with self._state.lock:
            self._state.files[path].ranges = enabled

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def gets(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.method == "GET" and r.path == path]


class _Handler(BaseHTTPRequestHandler):
    state: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        return

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        with self.state.lock:
            served = self.state.files.get(path)
            fault = served.fault if served is not None else None
            if served is not None and fault is not None and not head and served.times is not None:
                served.times -= 1
                if served.times <= 0:
                    served.fault, served.times = None, None
        if served is None:
            return self._status(404, head, path)
        if fault == "slow_first_byte":
            self.state.closing.wait(min(served.delay, MAX_DELAY_S))
        if fault in ("404", "500"):
            return self._status(int(fault), head, path)
        data = served.data
        if fault == "wrong_bytes" and not head:
            data = bytes(b ^ 0x5A for b in data)
        start = 0
        requested = self.headers.get("Range")
        match = _RANGE.match(requested or "")
        status = 200
        if fault == "bad_range" and match and not head:
            status = 206  # claims a partial answer but sends everything from 0
        elif served.ranges and match and not head:
            start = int(match.group(1))
            if start >= len(data):
                return self._status(416, head, path)
            status = 206
        body = data[start:]
        # Logged before the client can see the answer: a client that moves on to its next source
        # must never race this request's log line (the order of `requests` is what tests assert).
        self._log(path, status)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        if served.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if served.revision is not None:
            digest = hashlib.sha256(served.data).hexdigest()
            self.send_header("X-Repo-Commit", served.revision)
            self.send_header("ETag", f'"{digest}"')
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(len(served.data)))
        if fault == "truncate" and not head:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if head:
            return
        if fault == "truncate":
            body = body[: len(body) // 2]
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up (e.g. its timeout): nothing to do

    def _status(self, code: int, head: bool, path: str) -> None:
        body = f"{code}\n".encode()
        self._log(path, code)  # before the answer, as in _serve
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        if code == 404:
            self.send_header("X-Error-Code", "EntryNotFound")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _log(self, path: str, status: int) -> None:
        with self.state.lock:
            self.state.requests.append(LoggedRequest(self.command, path, self.headers.get("Range"), status))

"""`wbcap.weights.download`: atomic downloads from a local HTTP server and file:// URLs.

Every failure must raise a one-line DownloadError naming the URL and destination (or re-raise
KeyboardInterrupt), leave an existing destination file as it was and leave no temporary file.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import random
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from wbcap import atomic
from wbcap.errors import WbcapError
from wbcap.weights import download as download_module
from wbcap.weights.download import DownloadError, download

DATA = random.Random(0).randbytes(300_000)
DATA_SHA = hashlib.sha256(DATA).hexdigest()
HALF = len(DATA) // 2
TIMEOUT = 0.3  # seconds; the stalling routes wait much longer than this
OLD = b"previous checkpoint\n"


class _Handler(BaseHTTPRequestHandler):
    """Routes: /good, /noclen (no Content-Length), /truncated (Content-Length says all, sends half),
    /partial-noclen (no Content-Length, sends half), /stall-headers, /stall-body, any other -> 404,
    /error -> 500."""

    server: _Server

    def do_GET(self) -> None:
        self.server.user_agents.append(self.headers.get("User-Agent", ""))
        path = self.path.split("?")[0]
        if path == "/good":
            self._send(DATA, length=len(DATA))
        elif path == "/noclen":
            self._send(DATA, length=None)
        elif path == "/truncated":
            self._send(DATA[:HALF], length=len(DATA))
        elif path == "/partial-noclen":
            self._send(DATA[:HALF], length=None)
        elif path == "/stall-headers":
            self.server.release.wait(5)
        elif path == "/stall-body":
            self._send(DATA[:HALF], length=len(DATA))
            self.wfile.flush()
            self.server.release.wait(5)
        elif path == "/error":
            self.send_error(500)
        else:
            self.send_error(404)

    def _send(self, body: bytes, length: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True  # HTTP/1.0: closing ends a body without Content-Length

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    user_agents: list[str]
    release: threading.Event


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.user_agents = []
    srv.release = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@pytest.fixture
def base(server: _Server, monkeypatch: pytest.MonkeyPatch) -> str:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # urllib would send 127.0.0.1 through a proxy
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "weights" / "model.pth.tar"  # the folder does not exist yet


def _leftovers(folder: Path, dest: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != dest.name) if folder.exists() else []


def _check_failure(info: pytest.ExceptionInfo[BaseException], url: str, dest: Path, before: bytes | None) -> str:
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert url in msg and str(dest) in msg, msg
    if before is None:
        assert not dest.exists()
    else:
        assert dest.read_bytes() == before
    assert _leftovers(dest.parent, dest) == []
    return msg


# --- success ------------------------------------------------------------------------------------

def test_good_download_writes_bytes_returns_sha_and_reports_progress(base, server, dest, caplog):
    calls: list[tuple[int, int | None]] = []
    with caplog.at_level(logging.INFO, logger="wbcap.weights.download"):
        digest = download(f"{base}/good", dest, size=len(DATA), sha256=DATA_SHA.upper(),
                          progress=lambda done, total: calls.append((done, total)), chunk=1 << 14)
    assert digest == DATA_SHA
    assert dest.read_bytes() == DATA
    assert _leftovers(dest.parent, dest) == []
    assert calls[0] == (0, len(DATA)) and calls[-1] == (len(DATA), len(DATA))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) > 2
    assert server.user_agents[-1].startswith("wbcap/")
    assert f"{base}/good" in caplog.text and str(dest) in caplog.text


def test_download_replaces_an_existing_file(base, dest):
    dest.parent.mkdir(parents=True)
    dest.write_bytes(OLD)
    assert download(f"{base}/good", dest) == DATA_SHA
    assert dest.read_bytes() == DATA and _leftovers(dest.parent, dest) == []


def test_without_content_length_progress_total_is_size_or_none(base, dest):
    calls: list[tuple[int, int | None]] = []
    download(f"{base}/noclen", dest, size=len(DATA), progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, len(DATA)) and calls[-1] == (len(DATA), len(DATA))
    calls.clear()
    assert download(f"{base}/noclen", dest, progress=lambda d, t: calls.append((d, t))) == DATA_SHA
    assert calls[0] == (0, None) and calls[-1] == (len(DATA), None)
    assert dest.read_bytes() == DATA


def test_file_url(tmp_path, dest):
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    assert download(src.as_uri(), dest, size=len(DATA), sha256=DATA_SHA) == DATA_SHA
    assert dest.read_bytes() == DATA


def test_empty_size_and_sha_are_not_checked(base, dest):
    assert download(f"{base}/good", dest, size=0, sha256="") == DATA_SHA


# --- failures -----------------------------------------------------------------------------------

@pytest.mark.parametrize("existing", [False, True], ids=["no-dest", "dest-kept"])
@pytest.mark.parametrize(
    ("route", "kwargs", "expect"),
    [
        ("/good", {"sha256": "ef01" * 16}, f"sha256 {DATA_SHA[:12]}… differs from the expected ef01ef01ef01…"),
        ("/truncated", {}, f"got {HALF} of {len(DATA)} bytes (connection closed early); run the command again"),
        ("/partial-noclen", {"size": len(DATA)}, f"got {HALF} of {len(DATA)} bytes (connection closed early)"),
        ("/noclen", {"size": HALF}, f"got more than the {HALF} bytes expected"),
        ("/good", {"size": len(DATA) + 1}, f"the server reports {len(DATA)} bytes but {len(DATA) + 1} were expected"),
        ("/missing", {}, "HTTP 404 Not Found; check the URL or download it by hand and import it with `wbcap weights import`"),
        ("/error", {}, "HTTP 500"),
        ("/stall-headers", {}, "timed out"),
        ("/stall-body", {}, "timed out"),
    ],
    ids=["sha-mismatch", "truncated", "partial-no-length", "too-long", "length-vs-size", "404", "500",
         "timeout-headers", "timeout-body"],
)
def test_http_failures_leave_nothing(base, dest, route, kwargs, expect, existing):
    before = None
    if existing:
        dest.parent.mkdir(parents=True)
        dest.write_bytes(OLD)
        before = OLD
    url = f"{base}{route}"
    with pytest.raises(DownloadError) as info:
        download(url, dest, timeout=TIMEOUT, **kwargs)
    msg = _check_failure(info, url, dest, before)
    assert f"download of {url} to {dest} failed: " in msg
    assert expect in msg, msg


def test_size_mismatch_fails_before_the_body(base, dest):
    calls: list[tuple[int, int | None]] = []
    with pytest.raises(DownloadError):
        download(f"{base}/good", dest, size=123, progress=lambda d, t: calls.append((d, t)))
    assert calls == []


def test_connection_refused(dest):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pth.tar"
    with pytest.raises(DownloadError) as info:
        download(url, dest, timeout=TIMEOUT)
    assert "connection refused; check the network connection" in _check_failure(info, url, dest, None)


def test_missing_file_url(tmp_path, dest):
    url = (tmp_path / "absent.bin").as_uri()
    with pytest.raises(DownloadError) as info:
        download(url, dest)
    assert "no such file" in _check_failure(info, url, dest, None)


@pytest.mark.parametrize("url", ["nosuch://host/x", "not a url", "http://[::1/x"])
def test_unusable_url(dest, url):
    with pytest.raises(DownloadError) as info:
        download(url, dest)
    assert "use an http://, https:// or file:// URL" in _check_failure(info, url, dest, None)


def test_password_in_url_is_refused_and_not_shown(dest):
    with pytest.raises(DownloadError) as info:
        download("http://user:secret@127.0.0.1:1/x", dest)
    msg = _check_failure(info, "http://user:***@127.0.0.1:1/x", dest, None)
    assert "secret" not in msg


@pytest.mark.parametrize("at", [0, HALF], ids=["at-start", "mid-body"])
@pytest.mark.parametrize("existing", [False, True], ids=["no-dest", "dest-kept"])
def test_keyboard_interrupt_from_progress_cleans_up(base, dest, at, existing):
    if existing:
        dest.parent.mkdir(parents=True)
        dest.write_bytes(OLD)

    def progress(done: int, total: int | None) -> None:
        if done >= at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(f"{base}/good", dest, progress=progress, chunk=1 << 14)
    assert (dest.read_bytes() == OLD) if existing else not dest.exists()
    assert _leftovers(dest.parent, dest) == []


def test_other_progress_exceptions_propagate_unchanged(base, dest):
    def progress(done: int, total: int | None) -> None:
        if done:
            raise OSError("callback bug")

    with pytest.raises(OSError, match="callback bug") as info:
        download(f"{base}/good", dest, progress=progress)
    assert not isinstance(info.value, WbcapError)
    assert not dest.exists() and _leftovers(dest.parent, dest) == []


def test_disk_full_while_writing(base, dest, monkeypatch):
    real_open = open

    class _FillsUp:
        def __init__(self, path, mode):
            self._fh = real_open(path, mode)
            self._writes = 0

        def write(self, data):
            self._writes += 1
            if self._writes > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self._fh.write(data)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    # The module's global ``open`` shadows the builtin for download() only.
    monkeypatch.setattr(download_module, "open", _FillsUp, raising=False)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(OLD)
    url = f"{base}/good"
    with pytest.raises(DownloadError) as info:
        download(url, dest, chunk=1 << 14)
    assert "No space left on device); free disk space" in _check_failure(info, url, dest, OLD)


def test_rename_failure(base, dest, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    url = f"{base}/good"
    with pytest.raises(DownloadError) as info:
        download(url, dest)
    assert f"cannot move the download onto {dest} (Permission denied)" in _check_failure(info, url, dest, None)


def test_destination_folder_cannot_be_created(base, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(OLD)
    dest = blocker / "model.pth.tar"
    url = f"{base}/good"
    with pytest.raises(DownloadError) as info:
        download(url, dest)
    msg = str(info.value)
    assert "\n" not in msg and url in msg and "cannot create the folder" in msg
    assert blocker.read_bytes() == OLD and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.parametrize("kwargs", [{"sha256": "abc"}, {"size": -1}, {"timeout": 0}, {"chunk": 0}])
def test_bad_arguments_raise_value_error_before_any_io(dest, kwargs):
    with pytest.raises(ValueError):
        download("http://127.0.0.1:1/x", dest, **kwargs)
    assert not dest.parent.exists()

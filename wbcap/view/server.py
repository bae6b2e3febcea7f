"""A static file server for a viewer folder, on 127.0.0.1, with HTTP Range requests.

Standard library only: the same file is copied as ``serve.py`` into every folder ``wbcap view
--html`` writes, so that a colleague without wbcap can open the page with ``python3 serve.py``.

Why not ``python -m http.server``: it answers every request with the whole file (no ``Range``,
RFC 9110 section 14), and Chromium then cannot seek in a video (``currentTime`` snaps back to 0).
This handler answers ``Range: bytes=a-b`` with ``206 Partial Content``, serves only files under
its folder (no directory listings, symbolic links followed as the operating system does), sends
the content types the page needs (``.js``/``.mjs`` as JavaScript for ES modules, ``.glb``) and
binds to the loopback interface only. It answers only requests addressed to it by a loopback
name (``Host: 127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT``), others with ``403``: a web
page elsewhere cannot read the served files by pointing a name of its own at 127.0.0.1 (DNS
rebinding).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import posixpath
import re
import shutil
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

__all__ = ["RangeRequestHandler", "ViewServer", "main"]

#: Content types by file ending (what Python's ``mimetypes`` may lack or spell otherwise).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".glb": "model/gltf-binary",
    ".obj": "text/plain; charset=utf-8",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".py": "text/plain; charset=utf-8",
}

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class _Slice(io.RawIOBase):
    """``length`` bytes of ``fh`` from its current position (for ``copyfile``)."""

    def __init__(self, fh: BinaryIO, length: int) -> None:
        self._fh, self._left = fh, length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._fh.read(n)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._fh.close()
        super().close()


def _unquote(path: str) -> str:
    """A URL path's ``%XX`` escapes decoded as UTF-8, any other byte kept as its surrogate escape,
    as Python names a file whose name is not UTF-8 (``os.fsdecode``)."""
    return urllib.parse.unquote(path, errors="surrogateescape")


def _as_utf8_url(path: str) -> str:
    """``path`` re-escaped so that http.server's decoding (UTF-8 with ``surrogatepass``) gives
    :func:`_unquote`'s name."""
    return urllib.parse.quote(_unquote(path), safe="/", errors="surrogatepass")


def _url_path(path: str) -> str:
    """A request's URL path without its query (``?...``) and fragment (``#...``)."""
    return path.split("?", 1)[0].split("#", 1)[0]


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """:class:`~http.server.SimpleHTTPRequestHandler` with single byte ranges, no listings,
    fixed content types, and quiet logs (``quiet`` class attribute)."""

    quiet = True
    #: URL paths served (an entry ending in "/" serves everything under it); empty: the whole folder.
    only: ClassVar[tuple[str, ...]] = ()
    #: Where ``/`` sends a browser (a redirect to the page) on a server of :attr:`only` paths; None:
    #: nowhere (a viewer trial: the colleague who typed the host and port got "File not found").
    home: ClassVar[str | None] = None
    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(HTTPStatus.NOT_FOUND, "No directory listings")
        return None

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def _host_allowed(self) -> bool:
        """Whether the request's ``Host`` names a loopback host (``127.0.0.1``, ``localhost``,
        ``[::1]``), with any port: a page of another site that a DNS rebinding points at this
        server still sends its own host name, while a tunnel or editor forwarding another local
        port (``ssh -L 8000:127.0.0.1:PORT``) sends ``localhost:8000``."""
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rpartition(":")[0] if host.rpartition(":")[2].isdigit() and not host.endswith("]") else host
        return name in ("127.0.0.1", "localhost", "[::1]")

    def translate_path(self, path: str) -> str:
        """The file of a URL path, its ``%XX`` bytes taken as the file name's own bytes: a byte that
        is not UTF-8 (a name in Latin-1, ``lat%E9.jpg``) became U+FFFD in http.server's, and the
        file was not found. It is handed on as the surrogate escape UTF-8 can carry. A path holding
        a NUL byte (``%00``), which no file name has, is a name that is not there: the file
        functions raised on it, and http.server printed their traceback."""
        found = super().translate_path(_as_utf8_url(_url_path(path)))
        return found if "\x00" not in found else os.path.join(self.directory, ".wbcap-no-such-file")

    def _allowed(self) -> bool:
        if not self.only:
            return True
        path = posixpath.normpath(_unquote(_url_path(self.path)))
        return any(path == p or (p.endswith("/") and path.startswith(p)) for p in self.only)

    def send_head(self) -> Any:
        if not self._host_allowed():
            port = self.server.server_address[1]
            self.send_error(HTTPStatus.FORBIDDEN, "Wrong host",
                            f"This server answers only requests to http://127.0.0.1:{port}/ (or localhost, [::1])")
            return None
        if self.home is not None and _url_path(self.path) == "/":
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", self.home)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if not self._allowed():
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not header or os.path.isdir(path):
            return super().send_head()
        match = _RANGE.match(header.strip())
        try:
            fh = open(path, "rb")  # noqa: SIM115 - handed to the response as a _Slice, closed by the server
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        size = os.fstat(fh.fileno()).st_size
        first, last = (match.group(1), match.group(2)) if match else ("", "")
        if not match or (not first and not last):
            fh.close()
            return super().send_head()  # a form this server does not handle: the whole file
        if first and last and int(last) < int(first):
            fh.close()  # (an invalid range, which RFC 9110 sec. 14.2 says to ignore: the whole file)
            return super().send_head()
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:  # a suffix: the last N bytes
            start, end = max(0, size - int(last)), size - 1
        if start >= size or start > end:
            fh.close()
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        fh.seek(start)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return _Slice(fh, end - start + 1)

    def copyfile(self, source: Any, outputfile: Any) -> None:
        # the browser cancels ranges it no longer needs (normal while seeking)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            shutil.copyfileobj(source, outputfile)


class ViewServer:
    """Serve ``folder`` on ``127.0.0.1:port`` (0: a free port) from a background thread.

    Use as a context manager; :attr:`url` is the address of ``page`` on it. ``only``: the URL
    paths served (see :attr:`RangeRequestHandler.only`); empty: everything in ``folder``.
    """

    def __init__(self, folder: str | os.PathLike[str], port: int = 0, page: str = "index.html",
                 only: tuple[str, ...] = ()) -> None:
        handler_class = type("Handler", (RangeRequestHandler,), {"only": only, "home": f"/{urllib.parse.quote(page)}"}
                             ) if only else RangeRequestHandler
        handler = functools.partial(handler_class, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        self.folder = Path(folder)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/{urllib.parse.quote(page)}"  # (a page named "a#1.html")
        self._thread: threading.Thread | None = None

    def start(self) -> ViewServer:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="wbcap-view-server", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> None:
        """Block until the server is stopped (Ctrl-C raises ``KeyboardInterrupt`` here)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python3 serve.py [--port N]``: serve the folder above this file (where the page is)."""
    parser = argparse.ArgumentParser(description="Serve this wbcap viewer page on 127.0.0.1 (Ctrl-C to stop).")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--page", default=None, help="page to print the address of (default: the .html beside this folder)")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    root = here.parent
    page = args.page or next((p.name for p in sorted(root.iterdir()) if p.suffix.lower() in (".html", ".htm")
                              and (root / f"{p.stem}_files") == here), "index.html")
    # the page and its folder only: whatever else is beside them stays private
    server = ViewServer(root, args.port, page, only=(f"/{page}", f"/{here.name}/")).start()
    sys.stdout.write(f"{server.url}\n")
    sys.stdout.flush()
    try:
        server.wait()
    except KeyboardInterrupt:
        sys.stdout.write("stopped\n")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

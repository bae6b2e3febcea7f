"""Download a checkpoint file atomically, checking its size and sha256.

:func:`download` streams a URL into a hidden temporary file beside the destination, hashing it
while it is written, and renames it onto the destination (``os.replace``) only after the byte
count and the sha256 matched. Any failure, including ``KeyboardInterrupt``, removes the
temporary file and leaves an existing destination file as it was.

Only the standard library is used: ``urllib.request`` already speaks http, https and ``file://``
(handy for mirrors on a shared disk and for tests), and a plain read loop gives exact control of
the temporary file, the byte count and the one-line error messages, which a third-party client
(requests, httpx) would wrap in its own exceptions while adding a dependency to the install.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NoReturn

from wbcap.atomic import atomic_path
from wbcap.errors import WbcapError
from wbcap.versions import wbcap_version

log = logging.getLogger(__name__)

_MANUAL = "download it by hand and import it with `wbcap weights import`"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class DownloadError(WbcapError):
    """A download that failed; the one-line message names the URL, the cause and a fix."""


# One function on purpose (~100 lines): the checks run in a fixed order inside one temporary-file
# scope, and each failure has its own one-line wording; split up, the cleanup guarantee would be spread out.
def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 30.0,
    chunk: int = 1 << 16,
    check: Callable[[Path], object] | None = None,
    by_hand: str = _MANUAL,
) -> str:
    """Download ``url`` to ``dest`` atomically and return the file's sha256 hex digest.

    Args:
        url: An ``http://``, ``https://`` or ``file://`` URL.
        dest: The final file; its folder is created when missing. An existing file there is
            replaced only by a download that passed every check.
        size: Expected length in bytes; ``None`` or ``0`` means not checked. When the server's
            ``Content-Length`` differs, the download fails before the body is read.
        sha256: Expected hex digest (any case); ``None`` or ``""`` means not checked.
        progress: Called as ``progress(done_bytes, total_bytes)`` once with 0 before the body
            and after every chunk; ``total_bytes`` is the ``Content-Length``, else ``size``,
            else ``None``. An exception it raises aborts the download (the temporary file is
            removed) and propagates unchanged.
        timeout: Seconds to wait for the connection and for each read (not the whole download).
        chunk: Bytes per read.
        check: Called with the complete, hash-checked temporary file before it is moved onto
            ``dest`` (e.g. to validate a network's signature); a :class:`WbcapError` it raises
            fails the download and the file is not kept.
        by_hand: how the failure messages end, the way to get the file without this download
            (``wbcap weights fetch`` names its ``wbcap weights import NAME FILE``).

    Returns:
        The sha256 hex digest (lower case) of the downloaded bytes.

    Raises:
        DownloadError: HTTP error status, network failure or timeout, a body shorter or longer
            than ``Content-Length`` or ``size``, a sha256 mismatch, or a disk error.
        ValueError: ``sha256`` is not 64 hex digits, or ``size``, ``timeout`` or ``chunk`` is
            negative or zero where it must be positive (caller errors, checked before any I/O).
        KeyboardInterrupt: re-raised unchanged after the temporary file was removed.
    """
    expected_sha = (sha256 or "").strip().lower()
    if expected_sha and not _SHA256_RE.fullmatch(expected_sha):
        raise ValueError(f"expected sha256 {sha256!r} is not 64 hex digits")
    if size is not None and size < 0:
        raise ValueError(f"expected size {size} is negative")
    if timeout <= 0 or chunk <= 0:
        raise ValueError(f"timeout ({timeout}) and chunk ({chunk}) must be positive")
    expected_size = size or None
    final = Path(dest)
    shown = _redact(url)

    def fail(cause: str, fix: str) -> NoReturn:
        raise DownloadError(f"download of {shown} to {final} failed: {_one_line(cause)}; {fix}")

    log.info("downloading %s to %s", shown, final)
    try:
        netloc = urllib.parse.urlsplit(url).netloc
        request = urllib.request.Request(url, headers={"User-Agent": f"wbcap/{wbcap_version()}", "Accept-Encoding": "identity"})
    except ValueError as exc:  # "unknown url type", "Invalid IPv6 URL"
        fail(f"not a URL that can be opened ({exc})", "use an http://, https:// or file:// URL")
    if "@" in netloc:
        fail("user names and passwords in the URL are not supported", "use a URL without them")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create the folder {final.parent} ({_os_reason(exc)})", "choose another destination")

    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if 500 <= exc.code < 600:
            fail(f"HTTP {exc.code} {exc.reason}", f"the server failed; run the command again later or {by_hand}")
        fail(f"HTTP {exc.code} {exc.reason}", f"check the URL or {by_hand}")
    except urllib.error.URLError as exc:
        fail(*_network_failure(exc.reason, timeout, by_hand=by_hand))
    except (OSError, http.client.HTTPException) as exc:  # a timeout or reset while reading the headers
        fail(*_network_failure(exc, timeout, by_hand=by_hand))

    with response:
        length = _content_length(response.headers.get("Content-Length"))
        if expected_size is not None and length is not None and length != expected_size:
            fail(f"the server reports {length} bytes but {expected_size} were expected",
                 f"check the URL (the file may have changed upstream) or {by_hand}")
        total = length if length is not None else expected_size
        limit = total

        body_written = False
        try:
            with atomic_path(final) as tmp:
                digest = hashlib.sha256()
                done = 0
                try:
                    fh: BinaryIO = open(tmp, "xb")  # noqa: SIM115 - entered below; open errors are worded apart
                except OSError as exc:
                    fail(f"cannot write {tmp} ({_os_reason(exc)})", "free disk space or choose another destination")
                with fh:
                    if progress is not None:
                        progress(0, total)
                    while True:
                        try:
                            block = response.read(chunk)
                        except (OSError, http.client.HTTPException) as exc:
                            if isinstance(exc, http.client.IncompleteRead) and total is not None:
                                fail(f"got {done + len(exc.partial)} of {total} bytes (connection closed early)",
                                     "run the command again")
                            fail(*_network_failure(exc, timeout, done, by_hand=by_hand))
                        if not block:
                            break
                        done += len(block)
                        if limit is not None and done > limit:
                            fail(f"got more than the {limit} bytes expected",
                                 f"check the URL and the expected size, or {by_hand}")
                        digest.update(block)
                        try:
                            fh.write(block)
                        except OSError as exc:
                            fail(f"cannot write {tmp} ({_os_reason(exc)})", "free disk space or choose another destination")
                        if progress is not None:
                            progress(done, total)
                    if total is not None and done < total:
                        fail(f"got {done} of {total} bytes (connection closed early)", "run the command again")
                    got_sha = digest.hexdigest()
                    if expected_sha and got_sha != expected_sha:
                        fail(f"sha256 {got_sha[:12]}… differs from the expected {expected_sha[:12]}…; the file was not kept",
                             f"check the URL and the expected hash, or {by_hand}")
                    try:
                        fh.flush()
                        os.fsync(fh.fileno())
                        fh.close()
                    except OSError as exc:
                        fail(f"cannot write {tmp} ({_os_reason(exc)})", "free disk space or choose another destination")
                if check is not None:
                    try:
                        check(tmp)
                    except WbcapError as exc:
                        fail(f"the file is not usable ({_one_line(str(exc))}); it was not kept",
                             f"check the URL, or {by_hand}")
                body_written = True
        except OSError as exc:
            if not body_written:  # raised by the progress callback: not ours to reword
                raise
            fail(f"cannot move the download onto {final} ({_os_reason(exc)})", "choose another destination")

    log.info("downloaded %s (%d bytes, sha256 %s)", final, done, got_sha)
    return got_sha



def _content_length(value: str | None) -> int | None:
    """The Content-Length header as an int, or None when absent or malformed."""
    try:
        n = int(value) if value is not None else -1
    except ValueError:
        return None
    return n if n >= 0 else None


def _network_failure(reason: object, timeout: float, done: int | None = None,
                     by_hand: str = _MANUAL) -> tuple[str, str]:
    """(cause, fix) for a connection, timeout or protocol failure (``reason`` from URLError or raised)."""
    network_fix = f"check the network connection and the URL, or {by_hand}"
    after = f" after {done} bytes" if done else ""
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no data for {timeout:g} s{after} (timed out)", f"run the command again later or {by_hand}"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused", network_fix
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering", f"run the command again later or {by_hand}"
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, http.client.IncompleteRead)):
        return f"connection lost{after}", "run the command again"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host name ({reason.strerror or reason})", network_fix
    if isinstance(reason, FileNotFoundError):
        return "no such file", "check the path in the URL"
    if isinstance(reason, OSError):
        return _os_reason(reason), network_fix
    if isinstance(reason, http.client.InvalidURL):
        return f"not a URL that can be opened ({reason})", "use an http://, https:// or file:// URL"
    if isinstance(reason, http.client.HTTPException):
        return f"bad response from the server ({type(reason).__name__}: {reason})", f"check the URL or {by_hand}"
    if str(reason).startswith("unknown url type"):
        return str(reason), "use an http://, https:// or file:// URL"
    return str(reason), network_fix


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _redact(url: str) -> str:
    """``url`` with a password in it replaced by ``***`` (for messages and logs)."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:
        return url

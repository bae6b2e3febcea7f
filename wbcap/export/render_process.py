"""OpenGL rendering in a child process, started before this process imports torch.

``wbcap image`` on one photo spends most of its time importing and loading: torch (~1.3 s), the
network (~0.7 s), and for the two renders pyrender with trimesh and PyOpenGL (~0.9 s) plus the
GL context. Imports hold the interpreter lock, and once the network runs it takes every core, so
a thread importing pyrender beside it slowed the first call from 0.2 to 0.9 s on a 2-core Xeon.
:class:`RenderProcess` instead starts a child first (at nice +10, in its own session so that
Ctrl-C reaches only the command): it imports pyrender, chooses the GL platform
(:func:`wbcap.export.render.render_backend`) and draws a warm-up frame at each size it will be
asked for on another core while this process imports torch, then waits. Each
:meth:`RenderProcess.render_meshes` call is :func:`wbcap.export.render.render_meshes` run there.

Protocol (the child's stdin and stdout, both ours): each message is an 8-byte little-endian
length, then a NumPy ``.npz`` archive read with ``allow_pickle=False``. A request holds
``image``, ``faces``, ``mesh_<i>``, ``focal``, ``princpt``, ``colors`` and ``alpha``; a reply holds ``rgb`` or ``error`` (one line), and
``log``: the child's log records at this process's level or above, as
``"<logger>\t<levelno>\t<message>"``, logged again here under the same logger names (so the
command's per-logger levels apply). The child's arguments: that log level, the backend (``""``:
``WBCAP_RENDERER``), used for every request, and the warm-up sizes as ``<height>x<width>``. An empty message, or the pipe closing, ends the child;
:meth:`RenderProcess.close` kills it instead (it writes no file).

When the child cannot start, dies, sends something malformed or takes longer than
:data:`REPLY_TIMEOUT_S` to take a request or answer it, the call renders in this process
instead and the child is not used again. When it answers with an error (bad arguments), the
call renders here too, which raises the error :func:`~wbcap.export.render.render_meshes` raises.
Not used on Windows (its pipes cannot be waited on with a timeout).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
ENV_RENDER_PROCESS = "WBCAP_RENDER_PROCESS"
#: The longest wait for the child to take one request and answer it (the first includes its
#: imports and GL set-up).
REPLY_TIMEOUT_S = 120.0
_HEADER = 8
#: Run by ``python -c``: the current folder leaves the module path (``-c`` puts it first, where a
#: stray ``numpy.py`` would shadow the real one) and wbcap comes from where this process's does.
_BOOT = """import sys
sys.path.pop(0)
import importlib.util, os, runpy
root = sys.argv.pop(1)
spec = importlib.util.find_spec("wbcap")
if spec is None or spec.origin is None or not spec.origin.startswith(root.rstrip(os.sep) + os.sep):
    sys.path.insert(0, root)
runpy.run_module("wbcap.export.render_process", run_name="__main__", alter_sys=True)
"""


def render_process_setting() -> str:
    """``WBCAP_RENDER_PROCESS``: ``"1"`` (default: a render process where it saves time) or ``"0"``.

    Raises:
        InputError: any other value.
    """
    setting = os.environ.get(ENV_RENDER_PROCESS, "1").strip() or "1"
    if setting not in ("0", "1"):
        from wbcap.errors import InputError

        raise InputError(f"{ENV_RENDER_PROCESS}={setting}: use 0 (render in this process) or 1 (a render process)")
    return setting


class RenderProcess:
    """A renderer child process; use as a context manager (or call :meth:`close`).

    Args:
        backend: ``"pyrender"``, ``"auto"``, or None for ``WBCAP_RENDERER``: as
            :func:`~wbcap.export.render.render_backend` takes it, resolved in the child.
        sizes: ``(height, width)`` pixels of the images that will be rendered, when known: the
            child's warm-up draws one frame at each (the first frame of a size costs ~50 ms more
            with Mesa's llvmpipe); default one 16x16 frame.
    """

    def __init__(self, backend: str | None = None, sizes: Sequence[tuple[int, int]] = ()) -> None:
        self.backend = backend
        self._proc: subprocess.Popen | None = None
        package_root = str(Path(__file__).resolve().parents[2])  # the folder holding wbcap/
        level = logging.getLogger().getEffectiveLevel()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, package_root, str(level), backend or "",
                 *(f"{int(h)}x{int(w)}" for h, w in sizes)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            log.debug("could not start the render process: %s", exc)

    @classmethod
    def start_if_useful(cls, backend: str | None = None,
                        sizes: Sequence[tuple[int, int]] = ()) -> RenderProcess | None:
        """A started :class:`RenderProcess`, or None where it would not save time or cannot
        run: the software renderer is asked for (no imports to hide), pyrender is already
        imported here, ``WBCAP_RENDER_PROCESS=0`` (render in this process; ``1`` or unset: this
        choice), Windows, or the child did not start.

        Raises:
            InputError: ``WBCAP_RENDER_PROCESS`` is neither ``0`` nor ``1``.
        """
        from wbcap.export.render import requested_renderer

        setting = render_process_setting()
        if (setting == "0" or requested_renderer(backend) == "software" or "pyrender" in sys.modules
                or sys.platform == "win32"):
            return None
        proc = cls(backend, sizes)
        return proc if proc.alive else None

    @property
    def alive(self) -> bool:
        """Whether the child is running and has not failed."""
        return self._proc is not None and self._proc.poll() is None

    def render_meshes(
        self,
        image: np.ndarray,
        meshes: Sequence[np.ndarray],
        faces: np.ndarray,
        focal: tuple[float, float],
        princpt: tuple[float, float],
        colors: Sequence[tuple[float, float, float]] | None = None,
        alpha: float = 1.0,
    ) -> np.ndarray:
        """:func:`wbcap.export.render.render_meshes` with this process's ``backend`` and 4x
        multisampling (same other arguments, shapes and result: the ``(H, W, 3)`` uint8 RGB
        image with the meshes drawn over it; ``faces`` ``(F, 3)`` shared by all meshes), drawn in
        the child; in this process when the child cannot (module docstring), which raises what
        ``render_meshes`` raises."""
        from wbcap.export.render import render_meshes

        if self.alive:
            try:
                arrays = {"image": np.ascontiguousarray(image), "faces": np.asarray(faces, np.int64),
                          "focal": np.asarray(focal, np.float64), "princpt": np.asarray(princpt, np.float64),
                          "alpha": np.float64(alpha)}
                arrays.update({f"mesh_{i}": np.asarray(m, np.float64) for i, m in enumerate(meshes)})
                if colors is not None:
                    arrays["colors"] = np.asarray(colors, np.float64)
                reply = self._ask(arrays)
            except Exception as exc:  # whatever broke, the render below is the answer
                log.debug("the render process failed (%s: %s); rendering here", type(exc).__name__, exc)
                self.close()
            else:
                if "rgb" in reply:
                    return reply["rgb"]
                # The child is fine; the arguments were not: the render here raises the error.
                log.debug("the render process answered: %s; rendering here", reply.get("error", "?"))
        return render_meshes(image, meshes, faces, focal, princpt, colors=colors, alpha=alpha, backend=self.backend)

    def _ask(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send one request and return the reply, within :data:`REPLY_TIMEOUT_S` in all.

        The request goes through a writer thread: a child still importing reads nothing, and a
        request larger than the pipe's buffer would block this process with no limit."""
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        failed: list[BaseException] = []

        def write() -> None:
            try:
                _send(self._proc.stdin, arrays)  # type: ignore[union-attr]
            except BaseException as exc:  # reported below
                failed.append(exc)

        writer = threading.Thread(target=write, name="wbcap-render-request", daemon=True)
        writer.start()
        writer.join(REPLY_TIMEOUT_S)
        if writer.is_alive():
            raise TimeoutError(f"the render process took no request within {REPLY_TIMEOUT_S:.0f} s")
        if failed:
            raise failed[0]
        reply = _receive(self._proc.stdout, timeout=max(0.0, deadline - time.monotonic()))
        if reply is None:
            raise OSError("the render process closed its output")
        for line in reply.pop("log", np.array([], str)).tolist():
            name, level, message = line.split("\t", 2)
            logging.getLogger(name).log(int(level), "%s", message)
        return reply

    def close(self) -> None:
        """End the child now. It writes no file, so it is killed rather than waited for (it may
        still be importing, when an early error ends the command)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> RenderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _send(stream, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    stream.write(len(data).to_bytes(_HEADER, "little"))
    stream.write(data)
    stream.flush()


def _receive(stream, timeout: float | None = None) -> dict[str, np.ndarray] | None:
    """The next message as a dict of arrays; None when the stream ends or the message is empty.

    Raises TimeoutError when the whole message has not arrived within ``timeout`` seconds (a
    child that stops half-way through a reply included), ValueError for a malformed message."""
    deadline = None if timeout is None else time.monotonic() + timeout
    head = _read_exactly(stream, _HEADER, deadline)
    if head is None:
        return None
    size = int.from_bytes(head, "little")
    if size == 0:
        return None
    data = _read_exactly(stream, size, deadline)
    if data is None:
        raise ValueError("message cut short")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _read_exactly(stream, size: int, deadline: float | None = None) -> bytes | None:
    """``size`` bytes from ``stream``'s file descriptor (read directly, so that waiting for it
    with ``select`` sees every byte not yet read), waiting until ``deadline``
    (``time.monotonic()``) at most; None when the stream ends before the first byte."""
    fd = stream.fileno()
    chunks, left = [], size
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError("no complete answer in time")
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            if left == size:
                return None
            raise ValueError("message cut short")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Collect(logging.Handler):
    """The child's log records as ``"<logger>\t<levelno>\t<message>"`` lines for the reply."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split("\t"))
        self.lines.append(f"{record.name}\t{record.levelno}\t{message}")


def _warm_up(backend: str, sizes: Sequence[tuple[int, int]]) -> None:
    """Import the renderer and draw one frame per size (GL context, shaders, framebuffers, and
    buffers for a mesh of SMPL-X's size: a 103 x 103 grid, 10609 vertices, 20808 triangles)."""
    from wbcap.export.render import render_meshes

    n = 103
    u, v = np.meshgrid(np.linspace(-0.3, 0.3, n), np.linspace(-0.5, 0.5, n))
    verts = np.stack([u.ravel(), v.ravel(), 2.0 + 0.1 * np.cos(4.0 * u.ravel())], axis=1)
    i = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]).ravel()  # each cell's top-left
    faces = np.concatenate([np.stack([i, i + n, i + 1], 1), np.stack([i + 1, i + n, i + n + 1], 1)])
    for h, w in sizes or [(16, 16)]:
        render_meshes(np.zeros((h, w, 3), np.uint8), [verts], faces, (float(w), float(w)), (w / 2.0, h / 2.0),
                      backend=backend or None)


def _serve() -> None:
    """The child: warm up, then answer requests until the input ends. It runs at a lower CPU
    priority (nice +10): its warm-up is for later, and the parent's loading and network come
    first when they want every core; when a render is asked for, the parent waits, idle."""
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no os.nice (Windows)
        os.nice(10)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the replies
    inp = sys.stdin.buffer
    level, backend, *sizes = sys.argv[1:]
    collect = _Collect(int(level))
    root = logging.getLogger()
    root.addHandler(collect)
    root.setLevel(int(level))
    try:
        _warm_up(backend, [tuple(int(n) for n in arg.split("x")) for arg in sizes])
    except Exception:  # the request's own render reports it
        collect.lines.clear()
    from wbcap.export.render import render_meshes

    while True:
        request = _receive(inp)
        if request is None:
            break
        meshes = [request[f"mesh_{i}"] for i in range(sum(k.startswith("mesh_") for k in request))]
        try:
            rgb = render_meshes(request["image"], meshes, request["faces"], tuple(request["focal"]),
                                tuple(request["princpt"]), colors=request.get("colors"), alpha=float(request["alpha"]),
                                backend=backend or None)
            reply = {"rgb": rgb}
        except Exception as exc:
            reply = {"error": np.str_(" ".join(f"{type(exc).__name__}: {exc}".split()))}
        reply["log"] = np.array(collect.lines, dtype=str)
        collect.lines.clear()
        _send(out, reply)
    out.flush()


if __name__ == "__main__":
    try:
        _serve()
    except BaseException:  # the parent sees the pipe close and renders itself; no traceback
        os._exit(1)
    os._exit(0)  # nothing left to write; skip tearing down the GL context and modules

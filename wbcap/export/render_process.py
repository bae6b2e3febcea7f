"""OpenGL rendering in a child process, started before this process imports torch.

``wbcap image`` on one photo spends most of its time importing and loading: torch (~1.3 s), the
network (~0.7 s), and for the two renders pyrender with trimesh and PyOpenGL (~0.9 s) plus the
GL context. Imports hold the interpreter lock, and once the network runs it takes every core, so
a thread importing pyrender beside it slowed the first call from 0.2 to 0.9 s on a 2-core Xeon.
:class:`RenderProcess` instead starts ``python -m wbcap.export.render_process`` first: the child
imports pyrender, chooses the GL platform (:func:`wbcap.export.render.render_backend`) and draws
one small frame (compiling the shaders) on another core while this process imports torch, then
waits. Each :meth:`RenderProcess.render_meshes` call is :func:`wbcap.export.render.render_meshes`
run there, with the same arguments and result.

Protocol (the child's stdin and stdout, both ours): each message is an 8-byte little-endian
length, then a NumPy ``.npz`` archive read with ``allow_pickle=False``. A request holds
``image``, ``faces``, ``mesh_<i>``, ``focal``, ``princpt``, ``colors``, ``alpha`` and
``backend`` (``""``: ``WBCAP_RENDERER``; the child's arguments are the same and the warm-up sizes
as ``<height>x<width>``); a reply holds ``rgb`` or ``error`` (one line), and
``log`` (the child's log records as ``"<levelno>\\t<message>"``, logged again here under
``wbcap.export.render``). An empty message, or the pipe closing, ends the child;
:meth:`RenderProcess.close` kills it instead (it writes no file).

Whatever goes wrong with the child (it cannot start, dies, answers with an error, or takes
longer than :data:`REPLY_TIMEOUT_S`), the call renders in this process instead, which raises
the errors :func:`~wbcap.export.render.render_meshes` raises; the child is not used again.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import select
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
ENV_RENDER_PROCESS = "WBCAP_RENDER_PROCESS"
#: The longest wait for one reply (the first one includes the child's imports and GL set-up).
REPLY_TIMEOUT_S = 120.0
_HEADER = 8


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
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "wbcap.export.render_process", backend or "",
                 *(f"{int(h)}x{int(w)}" for h, w in sizes)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=env)
        except OSError as exc:
            log.debug("could not start the render process: %s", exc)

    @classmethod
    def start_if_useful(cls, backend: str | None = None,
                        sizes: Sequence[tuple[int, int]] = ()) -> RenderProcess | None:
        """A started :class:`RenderProcess`, or None where it would not save time: the software
        renderer is asked for (no imports to hide), pyrender is already imported here, or
        ``WBCAP_RENDER_PROCESS=0`` (render in this process; ``1`` or unset: this choice).

        Raises:
            InputError: ``WBCAP_RENDER_PROCESS`` is neither ``0`` nor ``1``.
        """
        setting = os.environ.get(ENV_RENDER_PROCESS, "1").strip() or "1"
        if setting not in ("0", "1"):
            from wbcap.errors import InputError

            raise InputError(f"{ENV_RENDER_PROCESS}={setting}: use 0 (render in this process) or 1 (a render process)")
        choice = (os.environ.get("WBCAP_RENDERER", "") if backend is None else backend).strip().lower()
        if setting == "0" or choice == "software" or "pyrender" in sys.modules:
            return None
        return cls(backend, sizes)

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
        """:func:`wbcap.export.render.render_meshes` (same arguments, shapes and result: the
        ``(H, W, 3)`` uint8 RGB image with the meshes drawn over it; ``faces`` ``(F, 3)`` shared by
        all meshes), drawn in the child; in this process when the child cannot."""
        from wbcap.export.render import render_meshes

        if self.alive:
            arrays = {"image": np.ascontiguousarray(image), "faces": np.asarray(faces, np.int64),
                      "focal": np.asarray(focal, np.float64), "princpt": np.asarray(princpt, np.float64),
                      "alpha": np.float64(alpha), "backend": np.str_(self.backend or "")}
            arrays.update({f"mesh_{i}": np.asarray(m, np.float64) for i, m in enumerate(meshes)})
            if colors is not None:
                arrays["colors"] = np.asarray(colors, np.float64)
            try:
                reply = self._ask(arrays)
            except (OSError, ValueError, TimeoutError) as exc:
                log.debug("the render process failed (%s); rendering here", exc)
                self.close()
            else:
                if "rgb" in reply:
                    return reply["rgb"]
                log.debug("the render process answered: %s; rendering here", reply.get("error", "?"))
                self.close()
        return render_meshes(image, meshes, faces, focal, princpt, colors=colors, alpha=alpha, backend=self.backend)

    def _ask(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        _send(self._proc.stdin, arrays)
        reply = _receive(self._proc.stdout, timeout=REPLY_TIMEOUT_S)
        if reply is None:
            raise OSError("the render process closed its output")
        for line in reply.pop("log", np.array([], str)).tolist():
            level, _, message = line.partition("\t")
            logging.getLogger("wbcap.export.render").log(int(level), "%s", message)
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

    Raises TimeoutError when nothing arrives within ``timeout`` seconds, ValueError for a
    malformed message."""
    if timeout is not None:
        ready, _, _ = select.select([stream], [], [], timeout)
        if not ready:
            raise TimeoutError(f"no answer within {timeout:.0f} s")
    head = _read_exactly(stream, _HEADER)
    if head is None:
        return None
    size = int.from_bytes(head, "little")
    if size == 0:
        return None
    data = _read_exactly(stream, size)
    if data is None:
        raise ValueError("message cut short")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _read_exactly(stream, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            if left == size:
                return None
            raise ValueError("message cut short")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelno}\t{record.getMessage()}")


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
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    root.setLevel(logging.INFO)
    backend = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        _warm_up(backend, [tuple(int(n) for n in arg.split("x")) for arg in sys.argv[2:]])
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
                                backend=str(request["backend"]) or None)
            reply = {"rgb": rgb}
        except Exception as exc:
            reply = {"error": np.str_(" ".join(f"{type(exc).__name__}: {exc}".split()))}
        reply["log"] = np.array(collect.lines, dtype=str)
        collect.lines.clear()
        _send(out, reply)
    out.flush()


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        _serve()
    os._exit(0)  # nothing left to write; skip tearing down the GL context and modules

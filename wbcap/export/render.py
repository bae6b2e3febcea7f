"""Overlay shaded meshes on an image, as seen by a pinhole camera.

Conventions:

* Image: ``(H, W, 3)`` ``uint8`` RGB; the result has the same size.
* Meshes: vertices in the **OpenCV camera frame**, metres: x right, y down, z forward (into the
  scene); a point projects to pixel ``u = fx * x / z + cx``, ``v = fy * y / z + cy``, where
  integer ``(u, v)`` is the *centre* of a pixel (OpenCV convention). Faces are triangles,
  counter-clockwise seen from outside (SMPL-X, trimesh).

Backends (:func:`render_backend`):

* ``pyrender-egl`` / ``pyrender-osmesa`` (/ ``pyrender-pyglet`` off Linux): OpenGL through
  pyrender, smooth shading, anti-aliased edges, exact depth test. The OpenCV frame becomes
  OpenGL's by flipping y and z; the principal point is shifted by half a pixel because OpenGL
  puts pixel centres at ``+0.5``. One offscreen renderer is kept and resized as needed; calls
  are serialised with a lock.
* ``software``: NumPy + OpenCV, used when no OpenGL platform works (a machine without EGL or
  OSMesa drivers, e.g. a bare container or some Windows/macOS setups), so rendering never
  fails. Painter's algorithm: triangles are projected, back faces culled, triangles with a
  vertex nearer than ``ZNEAR`` dropped (no clipping), the rest sorted by
  mean depth and filled far to near with ``cv2.fillConvexPoly`` into a face-index buffer, then
  flat Lambert-shaded with a head light. Occlusion is correct for separate objects and for a
  body's own surface except where depth-sorting by centroid fails (long triangles crossing
  each other); edges are not anti-aliased.

``WBCAP_RENDERER=software|pyrender`` forces a backend (``auto`` or unset: pyrender when it works).

Large images (more than :data:`WINDOW_PIXELS`, 16.7 megapixels): the meshes are drawn only in the
window of the image that holds them (their projected vertices, 2 pixels of margin), so memory
follows the people's size, not the photo's; a window of more than :data:`GL_MAX_PIXELS` is drawn
by the software renderer (about 9 bytes per pixel of the window; OpenGL's 4x multisampled
buffers take about 40). Running out of memory all the same is an :class:`~wbcap.errors.InputError`.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.errors import InputError, setting
from wbcap.export import _gl

log = logging.getLogger(__name__)

ENV_RENDERER = "WBCAP_RENDERER"
ZNEAR = 0.05  # metres
ZFAR = 100.0  # metres; the GL far plane is pushed beyond the farthest mesh when needed
#: Default mesh colours, RGB in [0, 1], cycled over meshes.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.62, 0.75, 0.90),  # light blue
    (0.95, 0.65, 0.45),  # orange
    (0.60, 0.85, 0.55),  # green
    (0.85, 0.60, 0.85),  # violet
    (0.95, 0.85, 0.45),  # yellow
    (0.55, 0.85, 0.85),  # teal
)
_AMBIENT = 0.35  # software shading: colour * (AMBIENT + DIFFUSE * max(0, n . l))
_DIFFUSE = 0.65
_SHIFT = 4  # software raster: sub-pixel bits for cv2.fillConvexPoly
_HEAD_LIGHT = 1.2  # pyrender directional light intensities (head light, two from above)
_SIDE_LIGHT = 0.5
_MAX_COORD = float(2 ** (30 - _SHIFT))  # keep fixed-point coordinates inside int32

_GL_TRIANGLES = 4  # OpenGL's GL_TRIANGLES (pyrender.Primitive's mode)
_GL_OUT_OF_MEMORY = 0x0505  # OpenGL's GL_OUT_OF_MEMORY error code
_SHADER_DIR = Path(__file__).resolve().with_name("shaders")
#: The shader defines pyrender sets for what wbcap draws, which wbcap's shaders handle.
_WBCAP_SHADER_DEFINES = frozenset({"NORMAL_LOC", "COLOR_0_LOC", "INST_M_LOC", "MAX_DIRECTIONAL_LIGHTS",
                                   "MAX_SPOT_LIGHTS", "MAX_POINT_LIGHTS", "USE_METALLIC_MATERIAL"})
_FRAMEBUFFER_SETS = 4  # framebuffer sets (size, samples) an adapted renderer keeps
#: Images of more pixels than this (4096 x 4096) are drawn in the window holding the meshes only.
WINDOW_PIXELS = 2**24
#: The most pixels OpenGL draws in one image (8K UHD, 7680 x 4320, is 33.2 million); a larger
#: window is drawn in software.
GL_MAX_PIXELS = 2**25

_render_lock = threading.Lock()
#: (faces, vertex count, incidence matrix) of the last face arrays :func:`vertex_normals` saw:
#: a cache of derived data only (never changes a result).
_INCIDENCE: list[tuple[np.ndarray, int, Any]] = []
#: (faces, vertex count, ``(n, F, 3)`` uint32 indices of n copies, ``{count: (count * F, 3) view}``)
#: for :func:`_joined_indices`: derived data too.
_JOINED_FACES: list[tuple[np.ndarray, int, np.ndarray, dict[int, np.ndarray]]] = []
_renderer: Any = None
_warned_software = False


def requested_renderer(requested: str | None = None) -> str:
    """The renderer asked for, as :func:`render_backend` reads it: ``requested``, else
    ``WBCAP_RENDERER``; lower case, ``"auto"`` when neither says (not checked)."""
    choice = os.environ.get(ENV_RENDERER, "") if requested is None else requested
    return choice.strip().lower() or "auto"


def check_renderer_setting(requested: str | None = None) -> str:
    """Refuse an unknown renderer name before any work (``requested``, else ``WBCAP_RENDERER``);
    whether OpenGL works is left to :func:`render_backend` when rendering starts. Returns the
    choice (:func:`requested_renderer`).

    Raises:
        InputError: a value other than ``software``, ``pyrender`` or ``auto``.
    """
    choice = requested_renderer(requested)
    if choice not in ("software", "pyrender", "auto"):
        raise InputError(f"{_setting_name(requested, choice)}: unknown renderer; use 'software', 'pyrender' or 'auto'")
    return choice


def _setting_name(requested: str | None, choice: str) -> str:
    """How messages name the renderer setting: the environment variable, or the argument."""
    return f"{ENV_RENDERER}={choice}" if requested is None else f"renderer {choice!r}"


def render_backend(requested: str | None = None) -> str:
    """Which backend :func:`render_meshes` uses: ``"pyrender-<platform>"`` or ``"software"``.

    Args:
        requested: ``"software"``, ``"pyrender"`` or ``"auto"``; None reads ``WBCAP_RENDERER``
            (unset means ``"auto"``).

    Raises:
        InputError: an unknown value, or ``pyrender`` requested where no OpenGL platform works.
    """
    choice = check_renderer_setting(requested)
    if choice == "software":
        return "software"
    platform = _gl.select_gl_platform()
    if platform is None:
        if choice == "pyrender":
            raise InputError(
                f"{_setting_name(requested, choice)}: no OpenGL platform works (EGL or OSMesa); install Mesa's EGL/OSMesa "
                "libraries or use the software renderer"
            )
        global _warned_software
        if not _warned_software:
            kept = _gl.cache_file()  # (said only where it was written: a break-it trial's was not)
            from wbcap.limits import SUGGESTED_OPEN_FILES, open_files_limit, too_few_open_files

            if too_few_open_files():  # (not missing libraries: the probes could not open theirs)
                log.warning("no OpenGL platform could be tried, as this process may have only %s files open at once; "
                            "using the software renderer (raise the limit: ulimit -n %d)", open_files_limit(),
                            SUGGESTED_OPEN_FILES)
            else:
                log.warning("no OpenGL platform (EGL/OSMesa) works; using the software renderer (`wbcap doctor` says "
                            "what to install%s)",
                            f"; the answer is kept in {kept}: delete it to look again" if kept.is_file() else "")
            _warned_software = True
        return "software"
    return f"pyrender-{platform}"


def import_renderer_in_background(requested: str | None = None) -> threading.Thread | None:
    """Start choosing the OpenGL platform and importing pyrender (with PyOpenGL and trimesh) in
    a daemon thread, so that a later :func:`render_meshes` does not wait for it: ~0.7 s on the
    2-core Xeon, most of the first frame of ``wbcap run``'s ``render.mp4``, which starts it
    when its second pass starts. No OpenGL context is made there (a context belongs to the thread
    that draws). A failure is left for the render to meet and report.

    Args:
        requested: as :func:`render_backend` takes it (None: ``WBCAP_RENDERER``).

    Returns:
        The started thread; None when nothing is to be done (pyrender already imported, or the
        software renderer asked for).
    """
    if "pyrender" in sys.modules or requested_renderer(requested) == "software":
        return None

    def run() -> None:
        try:  # no warning from here: the render says what it uses when it starts
            if _gl.select_gl_platform() is not None:
                _gl.import_pyrender()
        except Exception as exc:  # the render itself reports it
            log.debug("importing the renderer ahead failed: %s: %s", type(exc).__name__, exc)

    thread = threading.Thread(target=run, name="wbcap-import-renderer", daemon=True)
    thread.start()
    return thread


def render_meshes(
    image: np.ndarray,
    meshes: Sequence[np.ndarray],
    faces: np.ndarray | Sequence[np.ndarray],
    focal: tuple[float, float],
    princpt: tuple[float, float],
    colors: Sequence[tuple[float, float, float]] | None = None,
    alpha: float = 1.0,
    *,
    backend: str | None = None,
    multisample: bool = True,
) -> np.ndarray:
    """Draw shaded meshes over an image (module docstring for conventions and backends):
    :func:`prepare_render` then :func:`draw_prepared`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB background; not modified.
        meshes: per mesh, vertices ``(V, 3)`` float (float32 or float64), metres, OpenCV camera
            frame.
        faces: ``(F, 3)`` int, 0-based, shared by all meshes (SMPL-X), or one array per mesh.
        focal: ``(fx, fy)`` in pixels.
        princpt: ``(cx, cy)`` in pixels (pixel-centre convention).
        colors: per mesh RGB in ``[0, 1]``; default cycles :data:`PALETTE`.
        alpha: mesh opacity in ``[0, 1]`` (0.0 returns the image unchanged).
        backend: ``"software"``, ``"pyrender"``, ``"auto"``; None follows ``WBCAP_RENDERER``.
        multisample: OpenGL edges anti-aliased by 4x multisampling (default); False draws one
            sample per pixel, ~35 % faster with software OpenGL (``wbcap run``'s video frames),
            with 1-pixel stair-steps along the edges. The software backend, and pyrender on
            OSMesa (no framebuffer objects), draw one sample per pixel either way.

    Returns:
        ``(H, W, 3)`` uint8 RGB: the image with the meshes blended on top.

    Raises:
        ValueError: an argument of the wrong shape, type or range (image, meshes, faces, focal
            lengths, colours, alpha).
        InputError: an unknown renderer, or ``pyrender`` asked for where no OpenGL platform
            works (:func:`render_backend`).
    """
    image = _check_image(image)
    prepared = prepare_render(image.shape[:2], meshes, faces, focal, princpt, colors, alpha, backend=backend,
                              multisample=multisample)
    return draw_prepared(image, prepared)


@dataclass(frozen=True)
class PreparedRender:
    """One image's meshes made ready to draw by :func:`prepare_render`: checked, the backend
    chosen and, for OpenGL, the vertex and index data built (no OpenGL call made yet, so any
    thread may prepare). :func:`draw_prepared` draws it over an image of ``size`` ``(H, W)``."""

    size: tuple[int, int]
    #: ``(size, vertices, faces, focal, princpt, colours)`` as the backends take them: float64
    #: ``(V, 3)`` vertices and int64 ``(F, 3)`` faces per mesh, ``(P, 3)`` float64 colours.
    args: tuple
    alpha: float
    #: the renderer asked for (None: ``WBCAP_RENDERER``), resolved again when drawing
    requested: str | None
    samples: int
    #: the meshes' OpenGL vertex and index data when OpenGL was chosen and it could be built, else None
    mesh: MeshArrays | None = None
    empty: bool = False


def prepare_render(
    size: tuple[int, int],
    meshes: Sequence[np.ndarray],
    faces: np.ndarray | Sequence[np.ndarray],
    focal: tuple[float, float],
    princpt: tuple[float, float],
    colors: Sequence[tuple[float, float, float]] | None = None,
    alpha: float = 1.0,
    *,
    backend: str | None = None,
    multisample: bool = True,
) -> PreparedRender:
    """The part of :func:`render_meshes` that needs no OpenGL context (same arguments, with
    ``size`` ``(H, W)`` pixels instead of the image): the arguments checked and, where OpenGL
    draws, the meshes' vertex and index data built (:func:`mesh_arrays`). ``wbcap run``'s
    ``render.mp4`` prepares the next frames in another thread while one is drawn.

    Raises:
        ValueError, InputError: as :func:`render_meshes`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    fx, fy = (float(f) for f in focal)
    cx, cy = (float(c) for c in princpt)
    if not (fx > 0 and fy > 0):
        raise ValueError(f"focal lengths must be > 0, got {focal}")
    verts_list = [np.asarray(m, dtype=np.float64) for m in meshes]
    if isinstance(faces, np.ndarray) and faces.ndim == 2:
        faces_list = [faces] * len(verts_list)
    else:
        faces_list = list(faces)
    if len(faces_list) != len(verts_list):
        raise ValueError(f"{len(verts_list)} meshes but {len(faces_list)} face arrays")
    faces_list = [np.asarray(f, dtype=np.int64) for f in faces_list]
    checked: set[tuple[int, int]] = set()  # (id of a face array, vertex count): each checked once
    for v, f in zip(verts_list, faces_list):
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"mesh vertices must be (V, 3), got {v.shape}")
        if (id(f), len(v)) in checked:
            continue
        if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
            raise ValueError(f"faces must be (F, 3) indices into {len(v)} vertices")
        checked.add((id(f), len(v)))
    if colors is None:
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(verts_list))]
    cols = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    if len(cols) != len(verts_list) or cols.min(initial=0) < 0 or cols.max(initial=0) > 1:
        raise ValueError("colors must be one RGB triple in [0, 1] per mesh")
    size = (int(size[0]), int(size[1]))
    args = (size, verts_list, faces_list, (fx, fy), (cx, cy), cols)
    samples = 4 if multisample else 0
    if not verts_list or alpha == 0.0:
        return PreparedRender(size, args, float(alpha), backend, samples, empty=True)
    mesh = None
    if render_backend(backend) != "software":
        try:
            mesh = mesh_arrays(verts_list, faces_list, cols)
        except Exception as exc:  # drawing builds it again, meets the error and reports it
            log.debug("could not build the meshes' data ahead: %s: %s", type(exc).__name__, exc)
    return PreparedRender(size, args, float(alpha), backend, samples, mesh)


def draw_prepared(image: np.ndarray, prepared: PreparedRender) -> np.ndarray:
    """Draw ``prepared`` (:func:`prepare_render`) over ``image`` (``(H, W, 3)`` uint8 RGB of its
    size; not modified) and return the blended image, as :func:`render_meshes` does. OpenGL
    runs in the calling thread (its context stays in the thread that made it).

    Large images are drawn in the window holding the meshes (module docstring).

    Raises:
        ValueError: ``image`` is not ``(H, W, 3)`` uint8 of the prepared size.
        InputError: not enough memory to draw on so large an image (naming its size and the way
            to go without the render).
    """
    image = _check_image(image)
    if image.shape[:2] != prepared.size:
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, prepared for "
                         f"{prepared.size[1]}x{prepared.size[0]}")
    if prepared.empty:
        return image.copy()
    try:
        if image.shape[0] * image.shape[1] <= WINDOW_PIXELS:
            return _draw(image, prepared)
        rows, cols = _mesh_window(prepared)
        out = image.copy()
        if rows.stop > rows.start and cols.stop > cols.start:
            _, verts, faces, focal, (cx, cy), colours = prepared.args
            size = (rows.stop - rows.start, cols.stop - cols.start)
            window = dataclasses.replace(  # (the window's own camera: the principal point moves with it)
                prepared, size=size, args=(size, verts, faces, focal, (cx - cols.start, cy - rows.start), colours))
            out[rows, cols] = _draw(image[rows, cols], window)
        return out
    except MemoryError:
        raise InputError(f"not enough memory to draw the meshes on this {image.shape[1]}x{image.shape[0]} image; "
                         f"scale it down, or pass {setting('no_render', api='render=False')}") from None


def _mesh_window(prepared: PreparedRender) -> tuple[slice, slice]:
    """``(rows, cols)`` of the prepared image holding every mesh (their projected vertices and 2
    pixels of margin, clipped to the image; possibly empty), or the whole image when a vertex
    lies nearer than :data:`ZNEAR` (OpenGL clips its triangles at the near plane: they may reach
    any pixel)."""
    (height, width), verts_list, _, (fx, fy), (cx, cy), _ = prepared.args
    everything = (slice(0, height), slice(0, width))
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for verts in verts_list:
        if len(verts) == 0:
            continue
        z = verts[:, 2]
        if not (z > ZNEAR).all():
            return everything
        uv = np.stack([fx * verts[:, 0] / z + cx, fy * verts[:, 1] / z + cy], axis=1)
        lo, hi = np.minimum(lo, uv.min(axis=0)), np.maximum(hi, uv.max(axis=0))
    if lo[0] == np.inf:  # (no vertex)
        return slice(0, 0), slice(0, 0)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return everything
    x0, y0 = (int(np.clip(np.floor(v) - 2, 0, n)) for v, n in zip(lo, (width, height)))
    x1, y1 = (int(np.clip(np.ceil(v) + 3, 0, n)) for v, n in zip(hi, (width, height)))
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _draw(image: np.ndarray, prepared: PreparedRender) -> np.ndarray:
    """:func:`draw_prepared` on the whole of ``image`` (checked, of the prepared size)."""
    args, alpha = prepared.args, prepared.alpha
    name = render_backend(prepared.requested)  # software from now on, after a GL failure on an earlier frame
    if name != "software" and image.shape[0] * image.shape[1] > GL_MAX_PIXELS:
        log.info("the meshes' %dx%d window is drawn in software (OpenGL draws at most %d pixels here)",
                 image.shape[1], image.shape[0], GL_MAX_PIXELS)
        name = "software"
    if name == "software":
        rgb, cover = _render_software(*args)
    else:
        try:
            rgb, cover = _render_pyrender(*args, samples=prepared.samples, mesh=prepared.mesh)
        except Exception as exc:
            # Too large for the platform's framebuffers, or GL out of memory (PyOpenGL's GLError:
            # a large photo's multisampled buffers): this image only, the platform works.
            if isinstance(exc, _TooLargeForGL) or getattr(exc, "err", None) == _GL_OUT_OF_MEMORY:
                log.warning("OpenGL cannot draw this %dx%d image (%s); it is drawn with the software renderer",
                            image.shape[1], image.shape[0], "out of memory" if getattr(exc, "err", None) else exc)
                return _composite(image, *_render_software(*args), alpha)
            # the machine's cached GL platform no longer works (drivers changed)
            _gl.forget_cached_platform()
            _gl.use_software_from_now()  # once per process: later frames do not try (and warn) again
            global _warned_software
            _warned_software = True
            log.warning("OpenGL rendering failed (%s); this process renders in software from now on, the next "
                        "run looks for a working platform again", gl_error_summary(exc))
            rgb, cover = _render_software(*args)
    return _composite(image, rgb, cover, alpha)


#: The longest summary :func:`gl_error_summary` gives, in characters.
GL_ERROR_SUMMARY_MAX = 160


def gl_error_summary(exc: BaseException) -> str:
    """``exc`` in a few words on one line: PyOpenGL's ``GLError`` as its error code and call
    (``GLError 12289 in eglInitialize``; its text spans lines, with tabs and its arguments'
    addresses, and had made the warning a dozen lines: a break-it trial), anything else as its
    type and the first line of its text, at most :data:`GL_ERROR_SUMMARY_MAX` characters."""
    code, call = getattr(exc, "err", None), getattr(exc, "baseOperation", None)
    if code is not None and call is not None:
        name = getattr(call, "__name__", None) or str(call)
        return f"{type(exc).__name__} {code} in {name}"
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__
    return text if len(text) <= GL_ERROR_SUMMARY_MAX else text[: GL_ERROR_SUMMARY_MAX - 3] + "..."


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    return image


class _TooLargeForGL(Exception):
    """The image is larger than the GL platform's framebuffers can be (``limit`` pixels a side)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} pixels a side here")
        self.limit = limit


def _gl_size_limit(offscreen: Any) -> int:
    """The largest width and height ``offscreen`` can draw (its context's renderbuffer and
    viewport limits), queried once and kept on it. Call under the lock."""
    limit = getattr(offscreen, "_wbcap_size_limit", None)
    if limit is None:
        from OpenGL import GL

        offscreen._platform.make_current()
        sizes = [int(v) for v in np.ravel(GL.glGetIntegerv(GL.GL_MAX_VIEWPORT_DIMS))]
        if offscreen._platform.supports_framebuffers():
            sizes.append(int(GL.glGetIntegerv(GL.GL_MAX_RENDERBUFFER_SIZE)))
        limit = offscreen._wbcap_size_limit = min(sizes)
    return limit


def _composite(image: np.ndarray, premultiplied: np.ndarray, cover: np.ndarray, alpha: float) -> np.ndarray:
    """``image`` (``(H, W, 3)`` uint8) under a render: ``premultiplied`` ``(H, W, 3)`` uint8 RGB
    times coverage, ``cover`` ``(H, W)`` uint8 coverage (255: covered), at opacity ``alpha``:
    ``image * (1 - alpha * cover) + alpha * premultiplied`` (Porter-Duff "over"), rounded.
    Only the box holding the covered pixels is blended (whole frames cost ~20 ms), and fully
    covered opaque pixels are copied."""
    import cv2

    out = image.copy()
    box = _covered_box(cover)
    if box is None:
        return out
    cover_box = cover[box]
    if alpha == 1.0 and not np.any((cover_box > 0) & (cover_box < 255)):  # one sample per pixel
        # OpenCV's masked copy (the mask is 0 or 255 here): 0.09 against 1.0 ms for NumPy's
        # copyto(where=) on three vtest.avi bodies' box, the same pixels
        dst = out[box]
        done = cv2.copyTo(premultiplied[box], cover_box, dst)
        if not np.shares_memory(done, dst):  # (written into a new array rather than the view)
            dst[...] = done
        return out
    weight = cover_box.astype(np.float32)[..., None] * np.float32(alpha / 255.0)
    blend = image[box].astype(np.float32) * (1.0 - weight) + premultiplied[box].astype(np.float32) * np.float32(alpha)
    out[box] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def _covered_box(cover: np.ndarray) -> tuple[slice, slice] | None:
    """The smallest ``(rows, cols)`` slices holding every pixel with ``cover > 0``; None if none."""
    rows = np.flatnonzero(cover.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(cover[rows[0] : rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _render_software(
    size: tuple[int, int],
    verts_list: list[np.ndarray],
    faces_list: list[np.ndarray],
    focal: tuple[float, float],
    princpt: tuple[float, float],
    colors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Painter's-algorithm raster -> ``(H, W, 3)`` uint8 RGB (black where uncovered, so also
    premultiplied), ``(H, W)`` uint8 coverage (0 or 255)."""
    import cv2

    height, width = size
    fx, fy = focal
    cx, cy = princpt
    pts_all, depth_all, shade_all = [], [], []
    for verts, faces, color in zip(verts_list, faces_list, colors):
        if faces.size == 0:
            continue
        tri = verts[faces]  # (F, 3 corners, xyz)
        z = tri[..., 2]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        centre = tri.mean(axis=1)
        # Visible side: the normal points back towards the camera at the origin.
        in_range = (z > ZNEAR).all(axis=1)
        keep = in_range & ((normal * centre).sum(axis=1) < 0)
        if not keep.any():
            continue
        tri, z, normal, centre = tri[keep], z[keep], normal[keep], centre[keep]
        u = fx * tri[..., 0] / z + cx
        v = fy * tri[..., 1] / z + cy
        inside = (
            (u.max(axis=1) >= -1)
            & (u.min(axis=1) <= width)
            & (v.max(axis=1) >= -1)
            & (v.min(axis=1) <= height)
        )
        if not inside.any():
            continue
        u, v, normal, centre, z = u[inside], v[inside], normal[inside], centre[inside], z[inside]
        n_hat = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-20)
        to_cam = -centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-20)
        lambert = np.clip((n_hat * to_cam).sum(axis=1), 0.0, 1.0)
        shade = color[None, :] * (_AMBIENT + _DIFFUSE * lambert)[:, None]
        uv = np.stack([u, v], axis=-1)  # (F, 3, 2)
        pts_all.append(np.clip(uv, -_MAX_COORD, _MAX_COORD))
        depth_all.append(z.mean(axis=1))
        shade_all.append(shade)

    face_id = np.full((height, width), -1, np.int32)
    if pts_all:
        pts = np.rint(np.concatenate(pts_all) * (1 << _SHIFT)).astype(np.int32)
        depth = np.concatenate(depth_all)
        order = np.argsort(-depth, kind="stable")  # far to near
        for i in order.tolist():
            cv2.fillConvexPoly(face_id, pts[i], i, cv2.LINE_8, _SHIFT)
        shades = np.concatenate(shade_all)
    else:
        shades = np.zeros((0, 3))
    covered = face_id >= 0
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[covered] = np.clip(np.rint(shades[face_id[covered]] * 255.0), 0, 255).astype(np.uint8)
    return rgb, covered.astype(np.uint8) * np.uint8(255)


def _get_renderer(pyrender: Any, width: int, height: int) -> Any:
    """The process's offscreen renderer, resized to ``width`` x ``height`` (call under the lock).

    On platforms with framebuffer objects pyrender reallocates its framebuffers when the
    viewport size changes; on the others (OSMesa) it would delete and re-create its whole
    renderer inside ``render``, with its own shaders, so it is re-created here instead.
    """
    global _renderer
    if _renderer is not None and (_renderer.viewport_width, _renderer.viewport_height) != (width, height):
        platform = getattr(_renderer, "_platform", None)
        if platform is not None and platform.supports_framebuffers():
            _renderer.viewport_width = width
            _renderer.viewport_height = height
        else:
            _delete_renderer_locked()
    if _renderer is None:
        offscreen = pyrender.OffscreenRenderer(width, height)
        try:
            _use_wbcap_shaders(offscreen)
            _adapt_renderer(offscreen)
        except BaseException:
            offscreen.delete()
            raise
        _renderer = offscreen
        atexit.unregister(_delete_renderer)  # one exit hook, however often the renderer is re-created
        atexit.register(_delete_renderer)
    return _renderer


def _use_wbcap_shaders(offscreen: Any) -> bool:
    """Make ``offscreen`` (a ``pyrender.OffscreenRenderer``) draw meshes with wbcap's shaders
    (``shaders/wbcap_mesh.vert``, ``.frag``): pyrender's shading model for wbcap's scenes
    (untextured metallic-roughness materials, directional lights) with the light loop bounded at
    compile time. Other programs (depth, segmentation, flat) stay pyrender's. Returns whether it
    could (a renderer without pyrender 0.1.45's program cache is left as it is).

    Why: with Mesa's llvmpipe, pyrender's fragment shader, whose light loops are bounded by
    uniforms, took ~25 of a ~40 ms 768x576 video frame of three bodies; this one draws the same
    pixels (tested against pyrender's shader) in about half the time.

    Only programs for what wbcap draws are swapped (:data:`_WBCAP_SHADER_DEFINES`: vertex
    normals and colours, an untextured metallic-roughness material); anything else (textures,
    shadows, glossy materials) gets pyrender's. Point and spot lights, which wbcap's scenes never
    have, are not drawn by wbcap's shader.
    """
    inner = getattr(offscreen, "_renderer", None)
    if inner is None or not hasattr(inner, "_program_cache"):
        log.debug("pyrender's renderer has no program cache: its own shaders are used")
        return False
    from pyrender.shader_program import ShaderProgramCache

    vertex, fragment = (str(_SHADER_DIR / name) for name in ("wbcap_mesh.vert", "wbcap_mesh.frag"))

    class WbcapShaders(ShaderProgramCache):  # defined here: pyrender is imported only when rendering
        def get_program(self, vertex_shader: str, fragment_shader: str, geometry_shader: str | None = None,
                        defines: dict | None = None) -> Any:
            if (geometry_shader is None and (vertex_shader, fragment_shader) == ("mesh.vert", "mesh.frag")
                    and set(defines or ()) <= _WBCAP_SHADER_DEFINES):
                vertex_shader, fragment_shader = vertex, fragment  # absolute: joined to no folder
            return super().get_program(vertex_shader, fragment_shader, geometry_shader, defines)

    inner._program_cache.clear()
    inner._program_cache = WbcapShaders()
    return True


def _adapt_renderer(offscreen: Any) -> bool:
    """Give ``offscreen`` (a ``pyrender.OffscreenRenderer``) a choice of multisampling and a
    colour-only read-back; returns whether it could (else pyrender's own methods stay).

    * pyrender's ``Renderer._configure_main_framebuffer`` always draws into 4x multisampled
      buffers, rebuilt whenever the size changes. This one draws into buffers of
      ``_wbcap_samples`` samples (4, or 0 for none; set before each render), otherwise built as
      pyrender builds them (RGBA colour, 24-bit depth, resolved into single-sample buffers), and
      keeps the sets of the last :data:`_FRAMEBUFFER_SETS` (size, samples) pairs (a photo's
      overlay and crop renders alternate between two sizes). With Mesa's llvmpipe, 4x costs
      ~35 ms of a ~95 ms 768x576 frame of three bodies.
    * ``Renderer._read_main_framebuffer`` always resolves and reads the depth buffer too and turns
      it into metric depth over the whole frame (~25 ms of that frame), which wbcap never uses.
      This reads what pyrender reads for its colour image, the same way (resolve by a linear
      blit, RGBA rows flipped to top-first; no blit without multisampling), with no depth, for
      RGBA renders (other flags go to pyrender's method).

    Written for pyrender 0.1.45's layout (its last release); a renderer without those attributes,
    on macOS (where pyrender also rescales for the display's pixel ratio), or on a platform without
    framebuffer objects (OSMesa: pyrender draws into the context's own buffer, one sample per
    pixel whatever is asked), is left as it is.
    """
    import types

    inner = getattr(offscreen, "_renderer", None)
    platform = getattr(offscreen, "_platform", None)
    if platform is None or not platform.supports_framebuffers():  # OSMesa: pyrender draws without either
        log.debug("the GL platform has no framebuffer objects: pyrender renders as it does")
        return False
    needed = ("_read_main_framebuffer", "_configure_main_framebuffer", "_delete_main_framebuffer", "_main_fb",
              "_main_fb_ms", "_main_cb", "_main_db", "_main_cb_ms", "_main_db_ms", "_main_fb_dims")
    if inner is None or sys.platform == "darwin" or not all(hasattr(inner, a) for a in needed):
        log.debug("pyrender's renderer is not the expected one: 4x multisampling, depth read back")
        return False
    from OpenGL import GL
    from pyrender import RenderFlags

    stock_read = inner._read_main_framebuffer
    inner._wbcap_samples = 4
    inner._wbcap_fb_key = None
    inner._wbcap_fbs = {}  # (width, height, samples) -> the six GL names, most recent last

    def build(width: int, height: int, samples: int) -> tuple[int, ...]:
        names: list[int] = []
        for n in (0, samples):  # single-sample (resolved) set, then the one drawn into
            colour, depth = GL.glGenRenderbuffers(2)
            for rb, fmt in ((colour, GL.GL_RGBA), (depth, GL.GL_DEPTH_COMPONENT24)):
                GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, rb)
                GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, n, fmt, width, height)
            fb = GL.glGenFramebuffers(1)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, fb)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, colour)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, depth)
            names += [fb, colour, depth]
        return tuple(names)

    def configure(self: Any) -> None:
        key = (self.viewport_width, self.viewport_height, self._wbcap_samples)
        if self._main_fb is not None and self._wbcap_fb_key == key:
            return
        sets = self._wbcap_fbs
        if key not in sets:
            if len(sets) >= _FRAMEBUFFER_SETS:  # drop the least recently used set
                fb, cb, db, fb_ms, cb_ms, db_ms = sets.pop(next(iter(sets)))
                GL.glDeleteFramebuffers(2, [fb, fb_ms])
                GL.glDeleteRenderbuffers(4, [cb, db, cb_ms, db_ms])
            sets[key] = build(*key)
        sets[key] = sets.pop(key)  # most recent last
        (self._main_fb, self._main_cb, self._main_db,
         self._main_fb_ms, self._main_cb_ms, self._main_db_ms) = sets[key]
        self._main_fb_dims = key[:2]
        self._wbcap_fb_key = key

    def read(self: Any, scene: Any, flags: int) -> tuple[np.ndarray, Any]:
        if flags & (RenderFlags.DEPTH_ONLY | RenderFlags.SEG) or not flags & RenderFlags.RGBA:
            return stock_read(scene, flags)  # not what wbcap asks for: pyrender's own
        width, height = self._main_fb_dims
        if self._wbcap_samples:
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb_ms)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb)
            GL.glBlitFramebuffer(0, 0, width, height, 0, 0, width, height, GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb)
        else:  # drawn into single-sample buffers already
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb_ms)
        # read into an array (outputType=None): PyOpenGL's default copies the pixels into bytes
        buf = GL.glReadPixels(0, 0, width, height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, outputType=None)
        return np.flip(np.asarray(buf, np.uint8).reshape(height, width, 4), axis=0), None

    inner._configure_main_framebuffer = types.MethodType(configure, inner)
    inner._read_main_framebuffer = types.MethodType(read, inner)
    lean = ("_configure_forward_pass_viewport", "_get_camera_matrices", "_get_primitive_program", "_bind_lighting")
    inner._wbcap_lean = {} if all(hasattr(inner, a) for a in lean) else None  # state of _draw_lean
    return True


def _draw_lean(renderer: Any, mesh: MeshArrays, focal: tuple[float, float], princpt: tuple[float, float]) -> np.ndarray:
    """Draw ``mesh`` with ``renderer`` (an adapted ``pyrender.OffscreenRenderer``,
    :func:`_adapt_renderer`; call under the lock) as pyrender's ``render(scene, RGBA)`` draws
    :func:`_pyrender_scene`'s scene, through the same program, uniforms, state and framebuffers
    (tested against it), without building a scene graph for each image: the camera and lights
    are a scene kept for the focal length and principal point (only the far plane changes),
    and the vertices go into one vertex array kept in the context (the indices uploaded only
    when they are another array than the last: a video's frames with as many people share
    :func:`_joined_indices`' array). Returns the ``(H, W, 4)`` uint8 RGBA image (top row first).
    (Renderers that could not be adapted, e.g. on OSMesa, draw a pyrender scene instead, built
    in the drawing thread, :func:`_render_pyrender`.)

    Why: with 5-6 SMPL-X bodies on a 768 x 576 video frame, pyrender's scene (nodes, mesh,
    primitive, its interleaving and buffers, and its per-frame traversal) took ~7 of the ~42 CPU
    milliseconds a render.mp4 frame cost on a 2-core Xeon, most of it holding the interpreter
    lock that the posing thread needs.
    """
    import ctypes

    from OpenGL import GL
    from pyrender.constants import ProgramFlags, RenderFlags

    pyrender = _gl.import_pyrender()
    inner, state = renderer._renderer, renderer._renderer._wbcap_lean
    flags = RenderFlags.RGBA | RenderFlags.OFFSCREEN
    key = (float(focal[0]), float(focal[1]), float(princpt[0]), float(princpt[1]))
    if state.get("key") != key:
        state["scene"], state["key"] = _scene_setting(pyrender, focal, princpt, mesh.far), key
    scene = state["scene"]
    camera_node = scene.main_camera_node
    camera_node.camera.zfar = mesh.far
    if "template" not in state:  # what selects the program: the attributes and the material
        state["template"] = pyrender.Primitive(
            positions=np.zeros((3, 3), np.float32), normals=np.zeros((3, 3), np.float32),
            color_0=np.ones((3, 4), np.float32), indices=np.array([[0, 1, 2]], np.uint32), material=_material(pyrender),
            mode=_GL_TRIANGLES)
    template = state["template"]
    platform = renderer._platform
    platform.make_current()
    try:
        inner.viewport_width, inner.viewport_height = renderer.viewport_width, renderer.viewport_height
        if "vao" not in state:  # this context's vertex array: vertex, model-matrix and index buffers
            vao = GL.glGenVertexArrays(1)
            GL.glBindVertexArray(vao)
            vbo, model, ebo = GL.glGenBuffers(3)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
            stride = 10 * 4
            for loc, (size, offset) in enumerate(((3, 0), (3, 3), (4, 6))):  # position, NORMAL_LOC 1, COLOR_0_LOC 2
                GL.glVertexAttribPointer(loc, size, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(4 * offset))
                GL.glEnableVertexAttribArray(loc)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, model)  # INST_M_LOC 3..6: one instance, the identity
            GL.glBufferData(GL.GL_ARRAY_BUFFER, 64, np.eye(4, dtype=np.float32), GL.GL_STATIC_DRAW)
            for i in range(4):
                GL.glEnableVertexAttribArray(3 + i)
                GL.glVertexAttribPointer(3 + i, 4, GL.GL_FLOAT, GL.GL_FALSE, 64, ctypes.c_void_p(16 * i))
                GL.glVertexAttribDivisor(3 + i, 1)
            GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, ebo)
            GL.glBindVertexArray(0)
            # (kept only once all of it is set up: a GL error half-way builds it again next time)
            state.update(vao=vao, vbo=vbo, ebo=ebo, indices=None)
        # pyrender's forward pass (Renderer._forward_pass), for this one primitive
        inner._configure_forward_pass_viewport(flags)
        GL.glClearColor(0.0, 0.0, 0.0, 0.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        GL.glEnable(GL.GL_MULTISAMPLE)
        if len(mesh.indices):
            view, projection = inner._get_camera_matrices(scene)
            program = inner._get_primitive_program(template, flags, ProgramFlags.USE_MATERIAL)
            program._bind()
            program.set_uniform("V", view)
            program.set_uniform("P", projection)
            program.set_uniform("cam_pos", scene.get_pose(camera_node)[:3, 3])
            inner._bind_lighting(scene, program, camera_node, flags)
            program.set_uniform("M", np.eye(4))  # (Renderer._bind_and_draw_primitive from here)
            material = template.material
            program.set_uniform("material.emissive_factor", material.emissiveFactor)
            program.set_uniform("material.base_color_factor", material.baseColorFactor)
            program.set_uniform("material.metallic_factor", material.metallicFactor)
            program.set_uniform("material.roughness_factor", material.roughnessFactor)
            GL.glEnable(GL.GL_BLEND)
            GL.glBlendFunc(GL.GL_ONE, GL.GL_ZERO)
            GL.glPolygonMode(GL.GL_FRONT_AND_BACK, GL.GL_FILL)
            GL.glEnable(GL.GL_CULL_FACE)
            GL.glCullFace(GL.GL_BACK)
            GL.glDisable(GL.GL_PROGRAM_POINT_SIZE)
            GL.glBindVertexArray(state["vao"])
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, state["vbo"])
            GL.glBufferData(GL.GL_ARRAY_BUFFER, mesh.vertices.nbytes, mesh.vertices, GL.GL_STREAM_DRAW)
            if state["indices"] is not mesh.indices:  # (the array kept: the same object is never changed)
                state["indices"] = None
                GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, mesh.indices.nbytes, mesh.indices, GL.GL_STATIC_DRAW)
                state["indices"] = mesh.indices
            GL.glDrawElementsInstanced(GL.GL_TRIANGLES, mesh.indices.size, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0), 1)
            GL.glBindVertexArray(0)
            program._unbind()
        GL.glFlush()
        color, _ = inner._read_main_framebuffer(scene, flags)
    finally:
        platform.make_uncurrent()
    return color


def _delete_renderer() -> None:
    with _render_lock:
        _delete_renderer_locked()


def _delete_renderer_locked() -> None:
    """Free the process's offscreen renderer, if any (call under the lock)."""
    global _renderer
    if _renderer is not None:
        try:
            _renderer.delete()
        except Exception:
            log.debug("could not delete the offscreen renderer", exc_info=True)
        _renderer = None


def _render_pyrender(
    size: tuple[int, int],
    verts_list: list[np.ndarray],
    faces_list: list[np.ndarray],
    focal: tuple[float, float],
    princpt: tuple[float, float],
    colors: np.ndarray,
    samples: int = 4,
    mesh: MeshArrays | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """OpenGL render with ``samples`` per pixel (4 or 0: none; pyrender's own choice where the
    renderer could not be adapted, :func:`_adapt_renderer`) of ``mesh`` (None, when it could not
    be built ahead: built here by :func:`mesh_arrays` from the other arguments), drawn by
    :func:`_draw_lean` where the renderer was adapted, else as a pyrender scene
    (:func:`_pyrender_scene`). Returns ``(H, W, 3)`` uint8 RGB premultiplied by coverage and
    ``(H, W)`` uint8 coverage (255: covered)."""
    pyrender = _gl.import_pyrender()
    if mesh is None:
        mesh = mesh_arrays(verts_list, faces_list, colors)
    height, width = size
    with _render_lock:
        # the size limit first, from a context of a size it can have (on OSMesa, where the context
        # has the image's size, one too large could not be made)
        limit = _gl_size_limit(_renderer or _get_renderer(pyrender, min(width, 64), min(height, 64)))
        if max(width, height) > limit:
            raise _TooLargeForGL(limit)
        renderer = _get_renderer(pyrender, width, height)
        renderer._renderer._wbcap_samples = samples
        if getattr(renderer._renderer, "_wbcap_lean", None) is not None:
            return _premultiplied_and_cover(_draw_lean(renderer, mesh, focal, princpt), None)
        scene = _pyrender_scene(pyrender, mesh, focal, princpt)
        color, depth = renderer.render(scene, flags=pyrender.RenderFlags.RGBA)
    return _premultiplied_and_cover(color, depth)


@dataclass(frozen=True)
class MeshArrays:
    """Meshes as one OpenGL primitive (:func:`mesh_arrays`), in the GL camera frame (x right,
    y up, z backwards; metres).

    Attributes:
        vertices: ``(N, 10)`` float32 rows: position (3), unit normal (3), RGBA colour (4):
            pyrender's interleaved vertex layout for these attributes.
        indices: ``(M, 3)`` uint32 triangles into the rows.
        far: the far plane (metres): beyond the farthest finite vertex.
    """

    vertices: np.ndarray
    indices: np.ndarray
    far: float


def mesh_arrays(verts_list: list[np.ndarray], faces_list: list[np.ndarray], colors: np.ndarray) -> MeshArrays:
    """The meshes (``(V, 3)`` vertices, OpenCV camera frame, metres; ``(F, 3)`` int64 faces;
    ``(P, 3)`` RGB colours in [0, 1], one per mesh) as one primitive: every mesh with faces,
    its vertex normals (:func:`vertex_normals`) and its colour on its vertices, one after
    another. No OpenGL call, so any thread may build it."""
    keep = [i for i, f in enumerate(faces_list) if f.size]
    vertices = np.ones((sum(len(verts_list[i]) for i in keep), 10), np.float32)
    indices = np.zeros((0, 3), np.uint32)
    if keep:
        # One primitive for every mesh (one buffer upload, one draw), each mesh's colour on its
        # vertices: pyrender's per-primitive work was most of a video frame's drawing. (wbcap's
        # shader takes the vertex colour as the base colour, so this draws what one material per
        # mesh drew; pyrender's own, used where wbcap's could not be installed, also tints the
        # highlights by it: up to 3/255 apart.)
        cv_to_gl = np.array([1.0, -1.0, -1.0], np.float32)  # OpenCV (x right, y down, z fwd) -> GL (y up, z back)
        counts = [len(verts_list[i]) for i in keep]
        start = 0
        for i, n in zip(keep, counts):
            rows = vertices[start : start + n]
            np.multiply(verts_list[i], cv_to_gl, out=rows[:, :3], casting="same_kind")
            rows[:, 3:6] = vertex_normals(rows[:, :3], faces_list[i])
            rows[:, 6:9] = colors[i]
            start += n
        indices = _joined_indices([faces_list[i] for i in keep], counts)
    # Far plane beyond the farthest mesh: people far from the camera (small boxes) stay visible.
    # Finite depths only: one non-finite vertex made the far plane infinite and hid every mesh.
    depths = [v[:, 2][np.isfinite(v[:, 2])] for v in verts_list]
    far = max([ZFAR] + [2.0 * float(z.max()) for z in depths if z.size])
    return MeshArrays(vertices, indices, far)


def _pyrender_scene(pyrender: Any, mesh: MeshArrays, focal: tuple[float, float], princpt: tuple[float, float]) -> Any:
    """pyrender's scene for ``mesh`` (one primitive; none when it has no triangle), the camera
    and the lights (:func:`_scene_setting`); no OpenGL call, so any thread may build it."""
    scene = _scene_setting(pyrender, focal, princpt, mesh.far)
    if len(mesh.indices):
        v = mesh.vertices
        scene.add(pyrender.Mesh([pyrender.Primitive(positions=v[:, :3], normals=v[:, 3:6], color_0=v[:, 6:],
                                                     indices=mesh.indices, material=_material(pyrender),
                                                     mode=_GL_TRIANGLES)]))
    return scene


def _material(pyrender: Any) -> Any:
    """The material every wbcap mesh has: a rough dielectric, its colour on the vertices."""
    return pyrender.MetallicRoughnessMaterial(
        metallicFactor=0.0, roughnessFactor=0.7, alphaMode="OPAQUE", baseColorFactor=(1.0, 1.0, 1.0, 1.0))


def _scene_setting(pyrender: Any, focal: tuple[float, float], princpt: tuple[float, float], far: float) -> Any:
    """A pyrender scene with wbcap's camera (``focal``, ``princpt`` pixels, OpenCV convention:
    pixel centres at integers; near plane :data:`ZNEAR`, far plane ``far``, at the origin) and
    lights (a head light along the viewing direction plus two from above-left and
    above-right), and no mesh."""
    scene = pyrender.Scene(bg_color=(0.0, 0.0, 0.0, 0.0), ambient_light=(0.3, 0.3, 0.3))
    camera = pyrender.IntrinsicsCamera(
        fx=focal[0], fy=focal[1], cx=princpt[0] + 0.5, cy=princpt[1] + 0.5, znear=ZNEAR, zfar=far
    )
    scene.add(camera, pose=np.eye(4))
    scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=_HEAD_LIGHT), pose=np.eye(4))
    for side in (-0.5, 0.5):  # GL frame: travelling sideways, down (-y) and forward (-z)
        pose = _light_pose(np.array([side, -0.6, -1.0]))
        scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=_SIDE_LIGHT), pose=pose)
    return scene


def _joined_indices(faces_list: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """``(sum F, 3)`` uint32 indices of meshes laid one after another in one vertex buffer
    (``faces_list[i]``: int64 ``(F_i, 3)`` into mesh ``i``'s ``counts[i]`` vertices). Where every
    mesh has the same faces and vertex count (a video frame's people), a read-only prefix of one
    array kept for those faces (:data:`_JOINED_FACES`), grown to the most meshes asked for:
    building it every frame was ~2 of the ~9 ms a vtest.avi frame's five or six bodies took to
    prepare."""
    f0, n = faces_list[0], len(faces_list)
    if len(set(counts)) != 1 or not all(f is f0 or np.array_equal(f, f0) for f in faces_list[1:]):
        first = np.cumsum([0] + counts[:-1])
        return np.concatenate([f + o for f, o in zip(faces_list, first)]).astype(np.uint32)
    kept = next((e for e in _JOINED_FACES if e[1] == counts[0] and len(e[2]) >= n and np.array_equal(e[0], f0)), None)
    if kept is None:
        offsets = np.arange(max(n, 8), dtype=np.uint32) * np.uint32(counts[0])
        joined = f0.astype(np.uint32)[None] + offsets[:, None, None]  # (copies, F, 3)
        joined.flags.writeable = False  # handed out as views
        kept = (f0.copy(), counts[0], joined, {})
        _JOINED_FACES[:] = [e for e in _JOINED_FACES if not (e[1] == counts[0] and np.array_equal(e[0], f0))]
        _JOINED_FACES.insert(0, kept)
        del _JOINED_FACES[2:]
    joined, views = kept[2], kept[3]
    # the same view object for the same count: _draw_lean uploads indices only when they are another object
    return views.setdefault(n, joined[:n].reshape(-1, 3))


def _premultiplied_and_cover(color: Any, depth: Any) -> tuple[np.ndarray, np.ndarray]:
    """What pyrender's render gave -> ``(H, W, 3)`` uint8 RGB premultiplied by coverage and
    ``(H, W)`` uint8 coverage. RGBA (with framebuffer objects): multisampled edges come back
    premultiplied by coverage, the background is transparent black. RGB (platforms without
    framebuffer objects, e.g. OSMesa: pyrender reads the context's own buffer, which has no
    alpha): covered where the depth buffer is (linear depth > 0), one sample per pixel."""
    color = np.asarray(color)
    if color.shape[-1] == 4:
        # the coverage contiguous: compositing scans it and OpenCV masks with it (1.4 against 1.8 ms
        # a 768 x 576 frame with strided coverage)
        return color[..., :3], np.ascontiguousarray(color[..., 3])
    covered = np.asarray(depth) > 0
    return np.where(covered[..., None], color, np.uint8(0)), covered.astype(np.uint8) * np.uint8(255)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Smooth-shading normals: each vertex's unit normal is the sum of its faces' normals
    weighted by their areas (the cross product's length is twice the area), as trimesh's
    ``geometry.mean_vertex_normals`` (tested against it) without building a ``Trimesh`` (whose
    own ``vertex_normals``, angle-weighted with caches, took ~12 ms per SMPL-X body per video
    frame), with its vertex-face incidence matrix built once per face array (:func:`_incidence`).
    ~0.7 ms per SMPL-X body here; bodies side by side in one call were slower per body (their
    temporaries no longer fit in cache).

    Args:
        vertices: ``(V, 3)`` float; faces: ``(F, 3)`` int, counter-clockwise seen from outside.

    Returns:
        ``(V, 3)`` float32 unit normals (``+z`` for a vertex in no face or only in degenerate ones).
    """
    f = np.asarray(faces, np.int64)
    # (xyz, V) rows, float32 (normals for shading): long contiguous passes, half the memory traffic
    # of float64, ~1e-7 relative error.
    coords = np.ascontiguousarray(np.asarray(vertices).T, dtype=np.float32)
    # (xyz, corner, F): np.take and contiguous differences were 4x and 3x faster than v[f[:, k]]
    # and differences of strided slices
    a, b, c = np.take(coords, f.T.reshape(-1), axis=1).reshape(3, 3, len(f)).transpose(1, 0, 2)
    # (A non-finite vertex gives its faces' normals non-finite values, silently: a NumPy warning
    # for it, once per video frame, would tell a user nothing to act on; the other meshes are
    # drawn as usual, tested in test_export.)
    with np.errstate(invalid="ignore", over="ignore"):
        e1, e2 = b - a, c - a  # (xyz, F)
        face_n = np.empty((len(f), 3), np.float32)  # e1 x e2 written out: np.cross's axis handling cost more
        face_n[:, 0] = e1[1] * e2[2] - e1[2] * e2[1]
        face_n[:, 1] = e1[2] * e2[0] - e1[0] * e2[2]
        face_n[:, 2] = e1[0] * e2[1] - e1[1] * e2[0]
        summed = _incidence(coords.shape[1], f) @ face_n  # (V, xyz)
        length = np.sqrt(np.einsum("vk,vk->v", summed, summed))
    missing = length < 1e-20
    n = summed / np.where(missing, 1.0, length)[:, None]
    n[missing] = (0.0, 0.0, 1.0)
    return n.astype(np.float32, copy=False)


def _incidence(vertex_count: int, faces: np.ndarray) -> Any:
    """trimesh's ``(V, F)`` vertex-in-face matrix for ``faces`` (int64 ``(F, 3)``), in CSR form
    for the product; the last few are kept, each with a copy of its faces, found by value (~30 µs
    for SMPL-X's; a caller's array changed in place cannot match a stale matrix)."""
    index_sparse = _gl.import_module("trimesh.geometry").index_sparse  # (pyrender may be importing trimesh)

    for kept_faces, kept_count, matrix in _INCIDENCE:
        if kept_count == vertex_count and np.array_equal(kept_faces, faces):
            return matrix
    matrix = index_sparse(vertex_count, faces).tocsr()
    _INCIDENCE.insert(0, (faces.copy(), vertex_count, matrix))
    del _INCIDENCE[4:]
    return matrix


def _light_pose(direction: np.ndarray) -> np.ndarray:
    """4x4 GL pose whose -z axis (pyrender's light direction) is ``direction`` (GL frame)."""
    z = -np.asarray(direction, np.float64)
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    return pose

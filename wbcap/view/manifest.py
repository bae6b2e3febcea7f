"""What the viewer page shows, read from a finished ``wbcap run`` or ``wbcap image`` folder.

:func:`read_output` looks at a folder and returns a :class:`SiteContent`: the manifest the page
reads (``view.json``, layout below), the files of the folder the page needs (under the URL
paths the manifest names) and the files made for the page (per-frame parameter chunks). Nothing
in the folder is written or changed.

``view.json`` (``"format": "wbcap.view/1"``; times are seconds on the source's clock, pixels
with the origin at the image's top-left corner, 3D in the y-up world of the GLB files:
:mod:`wbcap.export.gltf`)::

    kind             "video" | "image"
    title            the run's source file name / the output folder's name
    generator        "wbcap <version>"
    joint_names      the 55 SMPL-X joints (model order), for the parameter tables
    frame            "camera" | "world": the frame the 3D view shows. "camera": the source camera at
                     the origin looking down -z; "world" (track files of ``wbcap run --world`` or
                     ``wbcap export --world``): gravity -y, the ground y = 0. A video run is shown in
                     the world when any of its GLBs is (a GLB in the other frame is placed through
                     its own source camera); "camera" while it has none (``wbcap view`` then makes
                     them in meta.json's ``frame``, :attr:`SiteContent.frame`, and sets it again)
    source_camera    the source camera's pose in that frame: {"translation": [x, y, z], "rotation":
                     [x, y, z, w] (a glTF camera: looks down its -z, y up), "height_m", "pitch_deg"
                     (optical axis below the horizon), "roll_deg"}, from the ``source_camera`` node
                     of the GLB files (the truth for the bodies they hold; meta.json is not
                     rewritten by ``wbcap export --world``); the origin, no rotation, in "camera"
    world            meta.json's ``world`` (``wbcap run --world``: the ground and camera pose it
                     found, or why it fell back), or null
    video run:
      camera         {"focal": [fx, fy], "princpt": [cx, cy], "image_size": [W, H]}: the source camera
      fps            the run's clock (rows per second of the animation files)
      video          {"src": URL, "offset": s, "frame_times": [s, ...], "frame_index": [i | -1, ...]}
                     or null (a run made with --no-render): render.mp4's frame k is shown at video
                     time frame_times[k] - offset; frame_index: the source frame index of the
                     params.jsonl record nearest frame k's time, within half the gap to frame k's
                     nearer neighbour (:func:`frame_tolerance`; variable frame rates), else -1
      frame_times    the times the timeline steps through (the video's frames, else params.jsonl's)
      tracks         [{"id", "color": "#rrggbb" (render.mp4's), "first", "last" (s), "rows" (lines in
                     params.jsonl), "parts": [{"src": GLB URL, "t0", "t1", "rows", "frame", "source_camera"
                     (the file's own, as above), "start" (s: the source's time of its key time 0)}] (``t0``: the file's first key; ``t1``: the track's last
                     record in it, :func:`end_parts_at_their_rows`),
                     "chunks": [{"src": URL, "t0", "t1", "rows"}]}]: a chunk is a JSON array of
                     up to :data:`CHUNK_ROWS` params.jsonl records of the track, in frame order
      fused          (a ``wbcap fuse`` folder, :func:`_fused_content`: ``video`` null, ``world``
                     fuse.json's or ``{"ground_from": "calibration"}``) {"runs": [folder names],
                     "offsets": "none" | "given" | "auto" | "audio", "camera": a run's name with
                     ``wbcap view --camera``}; its chunks hold its npz rows (``file``: the npz); with a
                     camera, ``video`` is that run's render.mp4 on the fused clock, ``camera`` and
                     ``source_camera`` that camera's (:func:`_fused_camera`)
    image run:
      images         [{"name", "overlay": JPEG URL | null, "camera": the shared camera (the largest
                     box's, as render_original_img.jpg), "people": [{"id", "color", "obj": URL,
                     "params": URL, "matrix": 16 numbers, column-major: the person's OBJ (OpenCV
                     axes, its own camera) -> the shared camera's y-up world, a rigid motion (the
                     body translated by :func:`wbcap.camera.shared_camera_offset` at its
                     ``cam_trans``, then turned to y up)}]}]
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbcap.errors import JSON_ERRORS, InputError
from wbcap.export.gltf import glb_fix as _glb_fix
from wbcap.export.gltf import glb_json
from wbcap.io.image_results import PERSON_DIR

log = logging.getLogger(__name__)

__all__ = ["CHUNK_ROWS", "FORMAT", "SiteContent", "end_parts_at_their_rows", "glb_frame", "part_entry", "read_output",
           "set_view_frame"]

FORMAT = "wbcap.view/1"
#: Records per parameter chunk: about 5 kB each, so a chunk is about 0.5 MB of JSON.
CHUNK_ROWS = 100
_TRACK_GLB = re.compile(r"track_(\d+)(?:_part(\d+))?\.glb")
#: A camera at the origin with no rotation (glTF's default node transform): the camera frame's source camera.
ORIGIN_POSE: dict[str, list[float]] = {"translation": [0.0, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0, 1.0]}


@dataclass
class SiteContent:
    """What a viewer site holds besides the page itself.

    Attributes:
        manifest: the JSON-able ``view.json``.
        files: ``{URL path: file}`` of the output folder (served or copied as they are).
        generated: ``{URL path: bytes}`` made for the page.
        missing_glb: track ids whose animation file is missing (the caller makes them, see
            :func:`wbcap.view.site.build_site`), with the URL paths the manifest gives them.
        frame: the frame of the run's track files as meta.json says (``"camera"`` or
            ``"world"``): the frame missing animation files are made in.
        row_times: ``{track id: its params.jsonl records' times}``, sorted (s), for
            :func:`end_parts_at_their_rows`.
        warnings: what the command says once the page is built (a refusal stays one line).
        read: ``{name: file}`` of the folder read into the page (not served as they are).
        roots: ``{URL path: folder}`` of files of :attr:`files` that lie outside the output
            folder, each held to its own folder (a fused page's camera: that run's
            ``render.mp4``, held to that run's folder); every other file to the output folder.
    """

    manifest: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    generated: dict[str, bytes] = field(default_factory=dict)
    missing_glb: dict[int, str] = field(default_factory=dict)
    frame: str = "camera"
    row_times: dict[int, list[float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    read: dict[str, Path] = field(default_factory=dict)
    roots: dict[str, Path] = field(default_factory=dict)


def end_parts_at_their_rows(track: dict[str, Any], times: list[float]) -> None:
    """Set each of a manifest track's ``parts`` ``t1`` to the time of the track's last
    ``params.jsonl`` record in it (``times``: the track's, sorted). A variable-frame-rate track's
    file ends on a row up to one clock period after its last frame, holding that frame's pose
    (:func:`wbcap.export.amass.regular_clock`): shown until the file's last key, the body stood
    there a frame after the person had gone (a review). Parts with no record in them keep theirs."""
    import bisect

    for part in track["parts"]:
        k = bisect.bisect_right(times, part["t1"] + 1e-6)
        if k and times[k - 1] >= part["t0"] - 1e-6:
            part["t1"] = min(part["t1"], times[k - 1])


def track_colors(spans: dict[int, tuple[int, int]], scheme: int = 2) -> dict[int, tuple[float, float, float]]:
    """render.mp4's colour of each track, RGB in [0, 1], from ``{track id: (first frame, last
    frame)}`` of ``params.jsonl`` (render.mp4 chooses them from the same rows) and the run's colour
    ``scheme`` (meta.json's ``colors``, :data:`wbcap.export.colors.COLOR_SCHEME`): 2,
    :data:`~wbcap.export.colors.TRACK_COLORS` by :func:`~wbcap.export.colors.track_color_indices`;
    1 (an older run), :data:`~wbcap.export.colors.TRACK_COLORS_1` by ``id % 8``."""
    from wbcap.export.colors import TRACK_COLORS, TRACK_COLORS_1, track_color_indices

    if scheme == 1:
        return {tid: TRACK_COLORS_1[tid % len(TRACK_COLORS_1)] for tid in spans}
    return {tid: TRACK_COLORS[c] for tid, c in track_color_indices(spans).items()}


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def _not_a_run(out: Path) -> InputError:
    return InputError(f"{out}: not a finished `wbcap run` or `wbcap image` folder (no params.jsonl, no "
                      f"<image>/person_<k>/smplx_param.json); pass the -o folder of one of those commands")


def read_output(out: Path, camera: str | None = None) -> SiteContent:
    """The viewer content of ``out``, a ``wbcap run`` folder (holds ``params.jsonl``), a
    ``wbcap image`` folder (holds ``<name>/person_<k>/smplx_param.json``) or a ``wbcap fuse``
    folder (holds ``fuse.json``: :func:`_fused_content`).

    A run folder another wbcap process writes (a ``wbcap run`` in pass 2, ``wbcap export`` in
    place: :func:`wbcap.io.run_folder.hold_folder`) is refused; it is read holding it shared
    (:func:`wbcap.io.run_folder.reading_folder`).

    ``camera``: a fused folder's page through that run's camera (:func:`_fused_camera`).

    Raises:
        InputError: ``out`` is neither (or is damaged), naming the folder or file and the fix; or
            another wbcap process writes it; ``camera`` for a folder that is no fusion, or not one
            of its runs.
    """
    from wbcap.io.run_folder import reading_folder

    if not out.is_dir():
        raise InputError(f"{out}: no such folder; pass the -o folder of a finished `wbcap run` or `wbcap image`")
    with reading_folder(out, then="view it again"):  # (a run's pass 2 removes and rewrites these files)
        # (absolute: `wbcap view .` in a person's folder found its file's parent named "", no person's)
        content = _output_content(out.absolute(), camera)
        from wbcap.io.run_folder import META_FILE, PARAMS_FILE

        # (params.jsonl and meta.json too: params.jsonl's lines go into the page as they are, a break-it
        # trial's from elsewhere, and meta.json's world; a review)
        read = {"params": out / PARAMS_FILE, "meta": out / META_FILE} if content.manifest.get("kind") == "video" else {}
        read.update(content.read)
        _check_inside(out, {**content.files, **{k: v for k, v in read.items() if v.exists() or v.is_symlink()}},
                      content.roots)
        return content


def _check_inside(out: Path, files: dict[str, Path], roots: dict[str, Path] | None = None) -> None:
    """Refuse a file of the page that a symbolic link (its own, or a folder's on the way) puts
    outside ``out``: the page serves and copies what the link leads to, and one planted in a folder
    from someone else sent any file the user can read with the page (``output.obj -> ~/.ssh/id_rsa``
    in ``--html``'s folder: a security review). ``roots``: ``{URL path: folder}`` of files held
    to a folder of their own instead (a fused page's camera's video, to its run).

    Raises:
        InputError: naming the file, where it leads and the fix.
    """
    root = out.resolve()
    for url, path in files.items():
        own = (roots or {}).get(url)
        inside = own.resolve() if own is not None else root
        try:
            real = path.resolve()
        except (RuntimeError, OSError):  # (a loop of links: RuntimeError on Python < 3.13)
            raise InputError(f"{path}: a loop of symbolic links; the page takes only the folder's own files: put the "
                             "file itself there, or remove the link") from None
        if not real.is_relative_to(inside):
            raise InputError(f"{path}: a symbolic link leads it out of {own or out} (to {real}); the page takes only the "
                             "folder's own files: put the file itself there, or remove the link")


def _output_content(out: Path, camera: str | None = None) -> SiteContent:
    """:func:`read_output` of the folder ``out`` (held)."""
    from wbcap.errors import setting
    from wbcap.fuse_app import FUSE_FILE
    from wbcap.io.run_folder import PARAMS_FILE, unfinished_outputs_note

    if (out / FUSE_FILE).is_file() and not (out / PARAMS_FILE).exists():
        return _fused_content(out, camera)
    if camera is not None:
        raise InputError(f"{out}: not a `wbcap fuse` folder (no {FUSE_FILE}); {setting('camera')} picks a fused "
                         "folder's camera: leave it out")
    if (out / PARAMS_FILE).is_file():
        note = unfinished_outputs_note(out)
        if note is not None:
            log.warning("%s", note)
        return _video_content(out)
    people = sorted(p for p in out.rglob("smplx_param.json") if PERSON_DIR.fullmatch(p.parent.name))
    if people:
        # (a page is of photos or of one run: `wbcap view wbcap_demo` showed the photo demo and
        # left the video demo's run beside it unsaid, a new user's trial)
        runs = sorted(d.name for d in out.iterdir() if (d / PARAMS_FILE).is_file())
        if runs:
            more = f" and {len(runs) - 3} more" if len(runs) > 3 else ""
            log.warning("%s: this page shows its photos; the run(s) in it (%s%s) have a page each: `wbcap view %s`",
                        out, ", ".join(runs[:3]), more, out / runs[0])
        return _image_content(out, people)
    from wbcap.io.run_folder import unfinished_run_note

    note = unfinished_run_note(out)
    if note:
        raise InputError(f"{out}: the run has no {PARAMS_FILE}{note}")
    raise _not_a_run(out)


def _base_manifest(kind: str, title: str) -> dict[str, Any]:
    from wbcap.export.rig import JOINT_NAMES_55
    from wbcap.versions import wbcap_version

    return {"format": FORMAT, "kind": kind, "title": title, "generator": f"wbcap {wbcap_version()}",
            "joint_names": list(JOINT_NAMES_55), "frame": "camera", "source_camera": dict(ORIGIN_POSE),
            "world": None}


# --------------------------------------------------------------------------- video runs


def glb_time_range(path: Path, g: dict[str, Any] | None = None) -> tuple[float, float, int]:
    """``(first, last, rows)``: the times on the source's clock of a wbcap GLB's keys (its
    animation's time accessor plus its ``source_start_s``, where its keys were moved to start at
    0: :func:`glb_key_start`; a one-row file: its ``first_time_s``); ``g``: its JSON if already read."""
    g = glb_json(path) if g is None else g
    extras = (g.get("asset") or {}).get("extras") or {}
    rows = int(extras.get("num_rows", 1))
    anims = g.get("animations") or []
    if anims:
        acc = g["accessors"][anims[0]["samplers"][0]["input"]]
        start = glb_key_start(g)
        return float(acc["min"][0]) + start, float(acc["max"][0]) + start, int(acc["count"])
    t = float(extras.get("first_time_s", 0.0))
    return t, t, rows


def glb_key_start(g: dict[str, Any]) -> float:
    """Seconds on the source's clock of a wbcap GLB's key time 0: its ``asset.extras.source_start_s``
    (keys moved to start at 0: ``AnimationExport.start_at_zero``, or a fused clock that begins
    before 0), else 0 (keys on the source's clock)."""
    start = ((g.get("asset") or {}).get("extras") or {}).get("source_start_s")
    return float(start) if isinstance(start, (int, float)) and not isinstance(start, bool) else 0.0


def _node_matrix(node: dict[str, Any]) -> Any:
    """A glTF node's local transform, 4x4 (spec 5.25: ``matrix``, column-major, else T R S)."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    if "matrix" in node:
        return np.asarray(node["matrix"], np.float64).reshape(4, 4).T
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat(node.get("rotation") or [0.0, 0.0, 0.0, 1.0]).as_matrix() * np.asarray(
        node.get("scale") or [1.0, 1.0, 1.0], np.float64)
    m[:3, 3] = node.get("translation") or [0.0, 0.0, 0.0]
    return m


def glb_frame(g: dict[str, Any]) -> tuple[str, dict[str, list[float]]]:
    """``(frame, pose)`` of a wbcap GLB (its JSON, :func:`glb_json`): ``asset.extras.frame``
    (``"camera"`` for files that do not say) and the pose of its ``source_camera`` node in the
    file's world, ``{"translation": [x, y, z], "rotation": [x, y, z, w]}`` (:data:`ORIGIN_POSE`
    without such a node)."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    from wbcap.export.gltf import CAMERA_NODE_NAME

    extras = (g.get("asset") or {}).get("extras") or {}
    frame = "world" if extras.get("frame") == "world" else "camera"
    nodes = g.get("nodes") or []
    found = [i for i, n in enumerate(nodes) if n.get("name") == CAMERA_NODE_NAME and "camera" in n]
    if not found:
        return frame, dict(ORIGIN_POSE)
    parent = {int(c): j for j, n in enumerate(nodes) for c in n.get("children") or []}
    k = found[0]
    node = nodes[k]
    if k not in parent and "matrix" not in node and node.get("scale") in (None, [1, 1, 1]):  # as wbcap writes it
        return frame, {"translation": [float(v) for v in node.get("translation") or ORIGIN_POSE["translation"]],
                       "rotation": [float(v) for v in node.get("rotation") or ORIGIN_POSE["rotation"]]}
    m = _node_matrix(node)
    while k in parent:  # wbcap writes it at the scene's root; a file edited elsewhere may not
        k = parent[k]
        m = _node_matrix(nodes[k]) @ m
    u, _, vt = np.linalg.svd(m[:3, :3])  # the rotation of the node (without scale)
    quat = Rotation.from_matrix(u @ vt).as_quat()
    return frame, {"translation": [float(v) for v in m[:3, 3]], "rotation": [float(v) for v in quat]}


def camera_pose_info(pose: dict[str, list[float]]) -> dict[str, float]:
    """Height (metres above y = 0), pitch (degrees the optical axis points below the horizon) and
    roll (degrees the image's x axis points above the horizon) of a source camera pose in the
    world frame; the same numbers as meta.json's ``camera_height_m``, ``camera_pitch_deg``,
    ``camera_roll_deg`` (:class:`wbcap.world.estimate.WorldFrame`) for the camera the file holds."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    r = Rotation.from_quat(pose["rotation"]).as_matrix()  # glTF camera axes (x right, y up, z back) -> world
    return {"height_m": float(pose["translation"][1]),
            "pitch_deg": float(np.degrees(np.arcsin(np.clip(r[1, 2], -1.0, 1.0)))),
            "roll_deg": float(np.degrees(np.arctan2(r[1, 0], r[1, 1])))}


def part_entry(url: str, path: Path) -> dict[str, Any]:
    """A manifest ``parts`` entry for the GLB ``path`` shown at ``url``.

    Raises:
        InputError: not a wbcap GLB, or a damaged one (:func:`glb_json`; an animation or camera
            node that cannot be read), naming the file and the fix.
    """
    g = glb_json(path)
    try:
        t0, t1, n = glb_time_range(path, g)
        frame, pose = glb_frame(g)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: a damaged GLB file ({type(exc).__name__}: {exc}); {_glb_fix(path)}") from None
    return {"src": url, "t0": t0, "t1": t1, "rows": n, "frame": frame, "source_camera": pose, "start": glb_key_start(g)}


def set_view_frame(manifest: dict[str, Any]) -> None:
    """Set a video manifest's ``frame`` and ``source_camera`` from its tracks' GLB files (the
    module docstring): the world, with the first world-frame file's camera, when any file is in
    the world, else the camera frame."""
    parts = [p for t in manifest["tracks"] for p in t["parts"]]
    world = [p for p in parts if p["frame"] == "world"]
    if world:
        pose = world[0]["source_camera"]
        manifest["frame"] = "world"
        manifest["source_camera"] = {**pose, **camera_pose_info(pose)}
    else:
        manifest["frame"] = "camera"
        manifest["source_camera"] = dict(parts[0]["source_camera"] if parts else ORIGIN_POSE)


def video_frame_times(path: Path, fix: str = "write it again") -> list[float]:
    """Presentation times (s) of every frame of ``path``, from its packets (nothing is decoded).

    Raises:
        InputError: a file that is not a video PyAV can read, has no video stream or no frame, or
            holds fewer frames than its index lists (an empty, damaged or cut-off ``render.mp4``):
            one line naming it, ending with ``fix``.
    """
    import av

    try:
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            base = stream.time_base
            indexed = int(stream.frames or 0)  # (an MP4's sample table; 0 where the container has none)
            pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    except (av.FFmpegError, ValueError, OSError) as exc:  # (av's errors are OSError or ValueError too)
        raise InputError(f"{path}: not a video wbcap can read ({getattr(exc, 'strerror', None) or exc}); {fix}") from None
    if not pts or base is None:
        raise InputError(f"{path}: a video without frames; {fix}")
    if len(pts) < indexed:  # (cut short after its index: the missing frames would not play)
        raise InputError(f"{path}: cut short (its index lists {indexed} frames, the file holds {len(pts)}); {fix}")
    return [float(p * base) for p in sorted(pts)]


def _read_lines(path: Path) -> dict[int, list[tuple[int, float, str]]]:
    """``{track: [(frame, time, line), ...]}`` in frame order, lines as written."""
    per_track: dict[int, list[tuple[int, float, str]]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
                key = int(rec["track"]), int(rec["frame"]), float(rec["time"])
            except (*JSON_ERRORS, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{n}: not a wbcap params.jsonl line ({type(exc).__name__}: {exc}); "
                                 f"the file is damaged: resume its run with --resume to rewrite it") from None
            per_track.setdefault(key[0], []).append((key[1], key[2], line))
    for rows in per_track.values():
        rows.sort()
    return per_track


def _video_content(out: Path) -> SiteContent:
    from wbcap.camera import camera_from_dict, camera_to_dict
    from wbcap.export.params_jsonl import read_params_jsonl
    from wbcap.io.run_folder import PARAMS_FILE, RENDER_FILE, read_meta, read_run_file, resume_command

    meta = read_meta(out) or {}
    # every record checked as `wbcap export` checks it: the page copies the lines as they are, and a
    # NaN in one made a chunk the page cannot read (a break-it trial)
    read_params_jsonl(out / PARAMS_FILE)
    per_track = _read_lines(out / PARAMS_FILE)
    if not per_track:
        raise InputError(f"{out / PARAMS_FILE}: holds no person; there is nothing to view")
    first = json.loads(next(iter(per_track.values()))[0][2])
    # (read back through the one reader of a stored camera: the page gets plain numbers)
    camera = camera_to_dict(camera_from_dict(meta.get("camera") or first["camera"]))
    run = read_run_file(out) or {}
    source = str(meta.get("source") or run.get("source") or out.name)
    frames = {f: t for rows in per_track.values() for f, t, _ in rows}
    params_times = sorted(set(frames.values()))
    fps = float(meta.get("fps") or 0.0)
    if fps <= 0:
        steps = sorted(b - a for a, b in zip(params_times, params_times[1:]))
        fps = 1.0 / steps[len(steps) // 2] if steps else 30.0

    content = SiteContent(manifest={}, frame="world" if meta.get("frame") == "world" else "camera")
    manifest = _base_manifest("video", Path(source).name)
    manifest.update(camera=camera, fps=fps, video=None, world=meta.get("world"))
    video = out / RENDER_FILE
    if video.is_file():
        offset = float(run.get("start") or 0.0)
        again = resume_command(out)  # (the command that ran it, with --resume: as `wbcap export`'s hint)
        times = [t + offset for t in video_frame_times(
            video, f"write it again with {again}, or move it away to view the run without its video")]
        by_time = sorted((t, f) for f, t in frames.items())
        manifest["video"] = {"src": f"media/{RENDER_FILE}", "offset": offset, "frame_times": times,
                             "frame_index": _match_frames(times, by_time, 0.5 / fps)}
        content.files[f"media/{RENDER_FILE}"] = video
    else:  # (the page drops its video pane without a word: a viewer trial could not tell a lost file)
        from wbcap.io.run_folder import COMMAND

        argv = (run.get(COMMAND) or {}).get("argv") if isinstance(run.get(COMMAND), dict) else None
        asked = isinstance(argv, list) and "--no-render" in argv  # (the run's own choice: said at debug level)
        if not asked:  # (the run's own choice is not said on every view)
            content.warnings.append(f"{out}: no {RENDER_FILE} (moved away, or the run used --no-render): the page "
                                    "shows the bodies in 3D only; a --resume of the run without --no-render writes it")
    manifest["frame_times"] = manifest["video"]["frame_times"] if manifest["video"] else params_times

    glbs: dict[int, list[tuple[int, Path]]] = {}
    for p in out.glob("track_*.glb"):
        m = _TRACK_GLB.fullmatch(p.name)
        if m and p.is_file():
            glbs.setdefault(int(m.group(1)), []).append((int(m.group(2) or 0), p))
    colors = track_colors({tid: (rows[0][0], rows[-1][0]) for tid, rows in per_track.items()}, meta.get("colors", 1))
    tracks = []
    for tid, rows in sorted(per_track.items()):
        entry: dict[str, Any] = {"id": tid, "color": _hex(colors[tid]),
                                 "first": rows[0][1], "last": rows[-1][1], "rows": len(rows), "parts": [],
                                 "chunks": []}
        for _, path in sorted(glbs.get(tid, [])):
            url = f"media/{path.name}"
            content.files[url] = path
            entry["parts"].append(part_entry(_url(url), path))
        content.row_times[tid] = sorted(t for _, t, _ in rows)
        end_parts_at_their_rows(entry, content.row_times[tid])
        if not entry["parts"]:
            content.missing_glb[tid] = f"media/generated/track_{tid}"
        for c in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[c : c + CHUNK_ROWS]
            url = f"params/track_{tid}/{c // CHUNK_ROWS:05d}.json"
            content.generated[url] = ("[" + ",\n".join(line for _, _, line in chunk) + "]").encode("utf-8")
            entry["chunks"].append({"src": url, "t0": chunk[0][1], "t1": chunk[-1][1], "rows": len(chunk)})
        tracks.append(entry)
    manifest["tracks"] = tracks
    set_view_frame(manifest)
    content.manifest = manifest
    return content


# --------------------------------------------------------------------------- wbcap fuse folders


def _fused_content(out: Path, camera_run: str | None = None) -> SiteContent:
    """A ``wbcap fuse`` folder's page: a video page without a video (the fused clock steps the
    timeline), every fused person's GLB files in the world they were fused in (the calibration's,
    or its frame levelled), seen through its source camera (the camera that saw them longest:
    the first person's intrinsics are the page's ``camera``), each row's parameters from its
    ``track_<k>.npz`` (AMASS's keys, in that world; ``frame`` the source camera's frame index,
    -1 where it did not see the person; a chunk's ``file`` names its npz). With ``camera_run``
    (a run's folder name in ``fuse.json``), that run's camera and video instead
    (:func:`_fused_camera`).

    Raises:
        InputError: a damaged ``fuse.json`` or track file, or a person without both its ``.glb``
            and ``.npz`` (a fusion without them: fuse again with ``--format npz,glb``); a
            ``camera_run`` that is none of the runs, or whose run or video cannot be read.
    """
    from wbcap.export.amass import npz_camera, read_track_npz
    from wbcap.export.colors import TRACK_COLORS
    from wbcap.fuse_app import FUSE_FILE, run_names

    path = out / FUSE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        people = [_fused_person(p) for p in record["people"]]
        runs = record.get("runs") or []
        if not isinstance(runs, list):
            raise TypeError(f"runs {runs!r:.60}: not a list")
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError, *JSON_ERRORS) as exc:
        raise InputError(f"{path}: not a readable record of `wbcap fuse` ({type(exc).__name__}: {exc}); fuse the runs "
                         "again with --overwrite") from None
    if not people:
        raise InputError(f"{path}: the fusion holds no person; there is nothing to view")
    if len({k for k, _ in people}) < len(people):
        raise InputError(f"{path}: two people of one track number; fuse the runs again with --overwrite")
    content = SiteContent(manifest={}, frame="world", read={"fuse": path})
    manifest = _base_manifest("video", f"{out.name} (wbcap fuse of {len(runs)} cameras)")
    tracks, times, camera, fps = [], set(), None, None
    for order, (k, names) in enumerate(people):
        entry: dict[str, Any] = {"id": k, "color": _hex(TRACK_COLORS[order % len(TRACK_COLORS)]), "parts": [],
                                 "chunks": []}
        seen: list[float] = []
        for name in names:
            glb, npz = out / f"{name}.glb", out / f"{name}.npz"
            if not (glb.is_file() and npz.is_file()):
                raise InputError(f"{out}: person {k} has no {glb.name if not glb.is_file() else npz.name}: the page "
                                 "needs each person's .glb and .npz; fuse the runs again with --format npz,glb "
                                 "--overwrite")
            try:
                arrays = read_track_npz(npz)
            except ValueError as exc:
                raise InputError(f"{npz}: {exc}; fuse the runs again with --overwrite") from None
            camera = camera or npz_camera(arrays)
            if camera is None:
                raise InputError(f"{npz}: holds no source camera's intrinsics (a file of an older wbcap); fuse the runs "
                                 "again with --overwrite")
            fps = fps or float(arrays["mocap_framerate"])
            url = f"media/{glb.name}"
            content.files[url] = glb
            content.read[npz.name] = npz
            entry["parts"].append(part_entry(_url(url), glb))
            records = _npz_records(arrays)
            seen += [r["time"] for r in records if r["valid"]]
            times.update(round(r["time"], 9) for r in records)
            for c in range(0, len(records), CHUNK_ROWS):
                chunk = records[c : c + CHUNK_ROWS]
                src = f"params/{name}/{c // CHUNK_ROWS:05d}.json"
                content.generated[src] = json.dumps(chunk).encode("utf-8")
                entry["chunks"].append({"src": src, "t0": chunk[0]["time"], "t1": chunk[-1]["time"], "rows": len(chunk),
                                        "file": npz.name})
        seen = seen or [entry["parts"][0]["t0"]]
        entry.update(first=min(seen), last=max(seen), rows=len(seen))
        tracks.append(entry)
    steps = []  # (the people's rows on other cameras' clocks a float's rounding apart: one step)
    for t in sorted(times):
        if not steps or t - steps[-1] > 1e-4:
            steps.append(t)
    world = record.get("world")
    manifest.update(camera={"focal": [float(v) for v in camera.focal], "princpt": [float(v) for v in camera.princpt],
                            "image_size": [int(v) for v in camera.image_size]},
                    fps=fps, video=None, frame_times=steps, tracks=tracks,
                    world=world if isinstance(world, dict) else {"ground_from": "calibration"},
                    fused={"runs": run_names([str(r.get("folder", "?")) if isinstance(r, dict) else "?" for r in runs]),
                           "offsets": str(record.get("offsets"))})
    set_view_frame(manifest)
    if camera_run is not None:
        _fused_camera(content, manifest, path, runs, camera_run)
    content.manifest = manifest
    return content


def _fused_camera(content: SiteContent, manifest: dict[str, Any], path: Path, runs: list[Any], name: str) -> None:
    """A fused page through the camera of the run ``name`` (its folder's name in ``fuse.json``'s
    ``runs``, :func:`wbcap.fuse_app.run_names`): the page's ``camera`` that run's (its ``meta.json``'s: the camera its
    ``render.mp4`` shows), ``source_camera`` where the fusion put it (``fuse.json``'s
    ``camera_rotation`` and ``camera_position_m``: the GLBs' ``camera_<run>`` node), and its
    ``render.mp4`` as the page's video on the fused clock (its frames at their run's times plus
    the run's ``offset_s``), the timeline stepping its frames; ``fused.camera`` names it.

    Raises:
        InputError: one line: no such run (the names listed), a fusion without the cameras'
            poses (made before they were recorded: fuse again), a run folder or ``render.mp4``
            that is gone or cannot be read.
    """
    import numpy as np
    from scipy.spatial.transform import Rotation

    from wbcap.camera import camera_from_dict, camera_to_dict
    from wbcap.errors import setting
    from wbcap.export.clip import YUP_FROM_ZUP
    from wbcap.io.run_folder import PARAMS_FILE, RENDER_FILE, read_meta, read_run_file, reading_folder

    option = setting("camera")
    names = manifest["fused"]["runs"]
    if name not in names:
        raise InputError(f"{path}: no run {name!r} in it (its runs: {', '.join(names)}); give one of those to {option}")
    entry = runs[names.index(name)]
    if isinstance(entry, dict) and "folder" in entry and "camera_rotation" not in entry:
        raise InputError(f"{path}: run {name!r} has no camera recorded (it gave the fusion no track with its camera's "
                         f"intrinsics, or the fusion was made before wbcap recorded its cameras: fuse again); give "
                         f"another run to {option}")
    try:
        run = Path(str(entry["folder"]))
        rotation = np.asarray(entry["camera_rotation"], np.float64).reshape(3, 3)
        position = np.asarray(entry["camera_position_m"], np.float64).reshape(3)
        offset = float(entry.get("offset_s") or 0.0)
        if not (np.isfinite(rotation).all() and np.isfinite(position).all() and np.isfinite(offset)):
            raise ValueError("not finite")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: run {name!r}'s record is damaged ({type(exc).__name__}: {exc}); fuse the runs again "
                         "with --overwrite") from None
    video = run / RENDER_FILE
    with reading_folder(run, then="view it again"):
        meta = read_meta(run)
        if meta is None or not video.is_file():
            raise InputError(f"{run}: {'no ' + RENDER_FILE if meta is not None else 'not a finished run folder'} (the "
                             f"run of {name} in {path}): {option} shows that run's {RENDER_FILE}; leave {option} out, "
                             "or give the run back its video (`wbcap run --resume` without --no-render)")
        start = float((read_run_file(run) or {}).get("start") or 0.0)
        times = [t + start + offset for t in video_frame_times(video, f"run that camera again, or leave {option} out")]
        lines = _read_lines(run / PARAMS_FILE) if (run / PARAMS_FILE).is_file() else {}
        by_time = sorted({(t + offset, f) for rows in lines.values() for f, t, _ in rows})
        fps = float(meta.get("fps") or manifest.get("fps") or 30.0)
        try:
            camera = camera_to_dict(camera_from_dict(meta.get("camera")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{run / 'meta.json'}: no readable camera ({type(exc).__name__}); leave {option} out") from None
    # (the pose as a glTF camera node's in the files' y-up world: OpenCV's axes with y and z flipped)
    turned = YUP_FROM_ZUP @ rotation @ np.diag([1.0, -1.0, -1.0])
    pose = {"translation": [float(v) for v in YUP_FROM_ZUP @ position],
            "rotation": [float(v) for v in Rotation.from_matrix(turned).as_quat()]}
    url = f"media/{name}/{RENDER_FILE}"
    content.files[url] = video
    content.roots[url] = run
    manifest.update(camera=camera, source_camera={**pose, **camera_pose_info(pose)}, frame_times=times,
                    video={"src": _url(url), "offset": start + offset, "frame_times": times,
                           "frame_index": _match_frames(times, by_time, 0.5 / fps)})
    manifest["fused"]["camera"] = name
    manifest["title"] = f"{manifest['title']}, through {name}"


_FUSED_NAME = re.compile(r"track_\d+(?:_part\d+)?")


def _fused_person(entry: Any) -> tuple[int, list[str]]:
    """A ``fuse.json`` person's ``(track, file names)`` (``track_<k>``, ``track_<k>_part<n>``).

    Raises:
        KeyError, TypeError, ValueError: not such an entry.
    """
    k, files = entry["track"], entry["files"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"track {k!r:.40}: not a track number")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and _FUSED_NAME.fullmatch(f) for f in files):
        raise ValueError(f"files {files!r:.80}: not a list of track_<k> names")
    return k, files


def _npz_records(arrays: dict[str, Any]) -> list[dict[str, Any]]:
    """A fused track file's rows as the page's parameter records: ``time``, ``frame`` (the source
    camera's index, -1), ``valid`` and AMASS's per-row keys (radians, metres, its world)."""
    import numpy as np

    # (AMASS's split views, cut from the checked poses (T, 165): root, 21 body, jaw, two eyes, 2 x 15 hand joints)
    poses = np.asarray(arrays["poses"], np.float64)
    views = {"trans": np.asarray(arrays["trans"], np.float64), "root_orient": poses[:, :3], "pose_body": poses[:, 3:66],
             "pose_jaw": poses[:, 66:69], "pose_eye": poses[:, 69:75], "pose_hand": poses[:, 75:165],
             "expression": np.asarray(arrays["expression"], np.float64)}
    rows = []
    for i in range(len(arrays["times"])):
        rec: dict[str, Any] = {"time": float(arrays["times"][i]), "frame": int(arrays["frame_indices"][i]),
                               "valid": bool(arrays["valid"][i])}
        rec.update({key: [round(float(v), 6) for v in values[i]] for key, values in views.items()})
        if "contact" in arrays:
            rec["contact"] = [bool(v) for v in arrays["contact"][i]]
        rows.append(rec)
    return rows


def _url(path: str) -> str:
    """A site path (a key of :attr:`SiteContent.files`, as the files are named) as the manifest's
    URL: each segment percent-encoded, so that an image named ``photo #1.jpg`` is fetched whole
    (the browser cut ``media/photo #1/...`` at the ``#``: the page got a 404 page for the
    person's parameters and mesh; a user trial). The servers decode it back."""
    import urllib.parse

    return urllib.parse.quote(path, safe="/", errors="surrogateescape")  # (a name not in UTF-8: its own bytes)


def frame_tolerance(times: list[float], k: int, fallback: float) -> float:
    """How far (s) a time may lie from ``times[k]`` (sorted frame times) and still be that frame:
    half the gap to its nearer neighbour. A variable-frame-rate video has frames much closer than
    its average interval, so half of that (``0.5 / fps``) would take a neighbour for the frame;
    ``fallback`` for a frame with no other (app.js ``frameTolerance`` is the same rule)."""
    gaps = [g for g in (times[k] - times[k - 1] if k > 0 else 0.0,
                        times[k + 1] - times[k] if k + 1 < len(times) else 0.0) if g > 0]
    return 0.5 * min(gaps) if gaps else fallback


def _match_frames(times: list[float], by_time: list[tuple[float, int]], fallback: float) -> list[int]:
    """For each of ``times`` (sorted frame times), the frame index of the ``by_time`` entry
    (sorted ``(time, index)``) nearest to it, if within :func:`frame_tolerance` of it, else -1."""
    import bisect

    keys = [t for t, _ in by_time]
    out = []
    for k, t in enumerate(times):
        j = bisect.bisect_left(keys, t)
        near = min((i for i in (j - 1, j) if 0 <= i < len(keys)), key=lambda i: abs(keys[i] - t), default=None)
        ok = near is not None and abs(keys[near] - t) <= frame_tolerance(times, k, fallback)
        out.append(by_time[near][1] if ok else -1)
    return out


# --------------------------------------------------------------------------- image runs


def _shared_matrices(people: list[dict[str, Any]], shared: dict[str, Any]) -> list[list[float]]:
    """Column-major 4x4 per person: a point of the person's OBJ (OpenCV axes, the person's camera)
    into the shared camera's y-up world (x, -y, -z), rigidly: every vertex moves by
    :func:`wbcap.camera.shared_camera_offset` at the person's ``cam_trans`` (the body keeps its
    shape; its ``cam_trans`` keeps its pixel and apparent size on the overlay), then the axes turn
    to y up. ``people``: ``{"focal", "princpt", "cam_trans"}`` each; ``shared``: the overlay's
    ``{"focal", "princpt"}``."""
    import numpy as np

    from wbcap.camera import shared_camera_offset_np

    offsets = shared_camera_offset_np(np.array([p["cam_trans"] for p in people], np.float64),
                                      np.array([p["focal"][0] for p in people], np.float64),
                                      np.array([p["princpt"] for p in people], np.float64),
                                      float(shared["focal"][0]), [float(v) for v in shared["princpt"]])
    flip = np.array([1.0, -1.0, -1.0])  # y-up = D opencv, D = diag(1, -1, -1): x -> D (x + offset)
    matrices = []
    for offset in offsets:
        m = np.diag([*flip, 1.0])
        m[:3, 3] = flip * offset
        matrices.append([float(v) for v in m.T.reshape(-1)])  # column-major
    return matrices


def _image_content(out: Path, param_files: list[Path]) -> SiteContent:
    from wbcap.export.render import PALETTE

    content = SiteContent(manifest={})
    manifest = _base_manifest("image", out.resolve().name)
    by_image: dict[Path, list[tuple[int, Path]]] = {}
    for p in param_files:
        by_image.setdefault(p.parent.parent, []).append((int(PERSON_DIR.fullmatch(p.parent.name).group(1)), p))
    # (``out`` may be one person's folder, OUT/<name>/person_<k>, or one image's, OUT/<name>: its
    # image is then named from OUT, as in OUT's own page; a new user's trial saw "." for the latter)
    levels = 2 if any(p.parent == out for p in param_files) else 1 if any(p.parent.parent == out for p in param_files) else 0
    root = out.resolve()
    for _ in range(levels):
        root = root.parent
    images = []
    for folder, people in sorted(by_image.items()):
        name = folder.resolve().relative_to(root).as_posix()
        people.sort()
        records = []
        for k, p in people:
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
                cam, trans = rec["camera"], [float(v) for v in rec["cam_trans"]]
                if len(trans) != 3:
                    raise ValueError(f"cam_trans holds {len(trans)} numbers, not 3")
                records.append((k, p, {"focal": cam["focal"], "princpt": cam["princpt"],
                                       "image_size": cam["image_size"], "crop": rec["crop_bbox_xywh"],
                                       "cam_trans": trans}))
            except (*JSON_ERRORS, KeyError, TypeError) as exc:
                raise InputError(f"{p}: not a wbcap smplx_param.json ({type(exc).__name__}: {exc}); "
                                 f"run `wbcap image` on that photo again") from None
        # the camera of render_original_img.jpg: the largest crop box's (export.image_outputs.to_common_camera)
        shared = max(records, key=lambda r: r[2]["crop"][2] * r[2]["crop"][3])[2]
        entry: dict[str, Any] = {"name": name, "overlay": None,
                                 "camera": {k: shared[k] for k in ("focal", "princpt", "image_size")}, "people": []}
        matrices = _shared_matrices([cam for _, _, cam in records], shared)
        for i, (k, p, _) in enumerate(records):
            obj = p.parent / "output.obj"
            if not obj.is_file():
                raise InputError(f"{obj}: missing; run `wbcap image` on that photo again")
            base = f"media/{name}/{p.parent.name}"
            content.files[f"{base}/output.obj"] = obj
            content.files[f"{base}/smplx_param.json"] = p
            overlay = p.parent / "render_original_img.jpg"
            if entry["overlay"] is None and overlay.is_file():
                content.files[f"{base}/render_original_img.jpg"] = overlay
                entry["overlay"] = _url(f"{base}/render_original_img.jpg")
            entry["people"].append({"id": k, "color": _hex(PALETTE[i % len(PALETTE)]), "obj": _url(f"{base}/output.obj"),
                                    "params": _url(f"{base}/smplx_param.json"), "matrix": matrices[i]})
        images.append(entry)
    manifest["images"] = images
    content.manifest = manifest
    return content

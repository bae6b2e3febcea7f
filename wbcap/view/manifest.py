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
    video run:
      camera         {"focal": [fx, fy], "princpt": [cx, cy], "image_size": [W, H]}: the source camera
      fps            the run's clock (rows per second of the animation files)
      video          {"src": URL, "offset": s, "frame_times": [s, ...], "frame_index": [i | -1, ...]}
                     or null (a run made with --no-render): render.mp4's frame k is shown at video
                     time frame_times[k] - offset; frame_index: the source frame index of frame k
                     where params.jsonl has it
      frame_times    the times the timeline steps through (the video's frames, else params.jsonl's)
      tracks         [{"id", "color": "#rrggbb" (render.mp4's), "first", "last" (s), "rows" (lines in
                     params.jsonl), "parts": [{"src": GLB URL, "t0", "t1", "rows"}],
                     "chunks": [{"src": URL, "t0", "t1", "rows"}]}]: a chunk is a JSON array of
                     up to :data:`CHUNK_ROWS` params.jsonl records of the track, in frame order
    image run:
      images         [{"name", "overlay": JPEG URL | null, "camera": the shared camera (the largest
                     box's, as render_original_img.jpg), "people": [{"id", "color", "obj": URL,
                     "params": URL, "matrix": 16 numbers, column-major: the person's OBJ (OpenCV
                     axes, its own camera) -> the shared camera's y-up world}]}]
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wbcap.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["CHUNK_ROWS", "FORMAT", "SiteContent", "read_output"]

FORMAT = "wbcap.view/1"
#: Records per parameter chunk: about 5 kB each, so a chunk is about 0.5 MB of JSON.
CHUNK_ROWS = 100
_TRACK_GLB = re.compile(r"track_(\d+)(?:_part(\d+))?\.glb")
_PERSON_DIR = re.compile(r"person_(\d+)")


@dataclass
class SiteContent:
    """What a viewer site holds besides the page itself.

    Attributes:
        manifest: the JSON-able ``view.json``.
        files: ``{URL path: file}`` of the output folder (served or copied as they are).
        generated: ``{URL path: bytes}`` made for the page.
        missing_glb: track ids whose animation file is missing (the caller makes them, see
            :func:`wbcap.view.site.build_site`), with the URL paths the manifest gives them.
    """

    manifest: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    generated: dict[str, bytes] = field(default_factory=dict)
    missing_glb: dict[int, str] = field(default_factory=dict)


def track_colors() -> tuple[tuple[float, float, float], ...]:
    """render.mp4's colours (:data:`wbcap.export.colors.TRACK_COLORS`; track ``id`` has
    ``TRACK_COLORS[id % len(TRACK_COLORS)]``)."""
    from wbcap.export.colors import TRACK_COLORS

    return TRACK_COLORS


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def _not_a_run(out: Path) -> InputError:
    return InputError(f"{out}: not a finished `wbcap run` or `wbcap image` folder (no params.jsonl, no "
                      f"<image>/person_<k>/smplx_param.json); pass the -o folder of one of those commands")


def read_output(out: Path) -> SiteContent:
    """The viewer content of ``out``, a ``wbcap run`` folder (holds ``params.jsonl``) or a
    ``wbcap image`` folder (holds ``<name>/person_<k>/smplx_param.json``).

    Raises:
        InputError: ``out`` is neither (or is damaged), naming the folder or file and the fix.
    """
    from wbcap.io.run_folder import PARAMS_FILE

    if not out.is_dir():
        raise InputError(f"{out}: no such folder; pass the -o folder of a finished `wbcap run` or `wbcap image`")
    if (out / PARAMS_FILE).is_file():
        return _video_content(out)
    people = sorted(p for p in out.rglob("smplx_param.json") if _PERSON_DIR.fullmatch(p.parent.name))
    if people:
        return _image_content(out, people)
    if (out / ".wbcap").is_dir():
        raise InputError(f"{out}: the run has no {PARAMS_FILE} yet (interrupted?); finish it with "
                         f"`wbcap run SOURCE -o {out} --resume`")
    raise _not_a_run(out)


def _base_manifest(kind: str, title: str) -> dict[str, Any]:
    from wbcap import __version__
    from wbcap.export.rig import JOINT_NAMES_55

    return {"format": FORMAT, "kind": kind, "title": title, "generator": f"wbcap {__version__}",
            "joint_names": list(JOINT_NAMES_55)}


# --------------------------------------------------------------------------- video runs


def glb_json(path: Path) -> dict[str, Any]:
    """The JSON chunk of a ``.glb`` (glTF 2.0 spec, section 4.4: 12-byte header, then the JSON chunk).

    Raises:
        InputError: not a GLB file.
    """
    with open(path, "rb") as fh:
        head = fh.read(20)
        if len(head) < 20:
            raise InputError(f"{path}: not a GLB file (too short); write it again with `wbcap export`")
        magic, _version, _length, size, kind = struct.unpack("<4sIIII", head)
        if magic != b"glTF" or kind != 0x4E4F534A:  # "JSON"
            raise InputError(f"{path}: not a GLB file; write it again with `wbcap export`")
        return json.loads(fh.read(size))


def glb_time_range(path: Path) -> tuple[float, float, int]:
    """``(first, last, rows)``: the key times of a wbcap GLB (its animation's time accessor; a
    one-row file: its ``first_time_s``)."""
    g = glb_json(path)
    extras = (g.get("asset") or {}).get("extras") or {}
    rows = int(extras.get("num_rows", 1))
    anims = g.get("animations") or []
    if anims:
        acc = g["accessors"][anims[0]["samplers"][0]["input"]]
        return float(acc["min"][0]), float(acc["max"][0]), int(acc["count"])
    t = float(extras.get("first_time_s", 0.0))
    return t, t, rows


def video_frame_times(path: Path) -> list[float]:
    """Presentation times (s) of every frame of ``path``, from its packets (nothing is decoded)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
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
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{n}: not a wbcap params.jsonl line ({type(exc).__name__}: {exc}); "
                                 f"the file is damaged: resume its run with --resume to rewrite it") from None
            per_track.setdefault(key[0], []).append((key[1], key[2], line))
    for rows in per_track.values():
        rows.sort()
    return per_track


def _video_content(out: Path) -> SiteContent:
    from wbcap.io.run_folder import PARAMS_FILE, RENDER_FILE, RUN_DIR, RUN_FILE, read_meta

    meta = read_meta(out) or {}
    per_track = _read_lines(out / PARAMS_FILE)
    if not per_track:
        raise InputError(f"{out / PARAMS_FILE}: holds no person; there is nothing to view")
    first = json.loads(next(iter(per_track.values()))[0][2])
    camera = meta.get("camera") or {k: first["camera"][k] for k in ("focal", "princpt", "image_size")}
    run_file = out / RUN_DIR / RUN_FILE
    run = json.loads(run_file.read_text(encoding="utf-8")) if run_file.is_file() else {}
    source = str(meta.get("source") or run.get("source") or out.name)
    frames = {f: t for rows in per_track.values() for f, t, _ in rows}
    params_times = sorted(set(frames.values()))
    fps = float(meta.get("fps") or 0.0)
    if fps <= 0:
        steps = sorted(b - a for a, b in zip(params_times, params_times[1:]))
        fps = 1.0 / steps[len(steps) // 2] if steps else 30.0

    content = SiteContent(manifest={})
    manifest = _base_manifest("video", Path(source).name)
    manifest.update(camera=camera, fps=fps, video=None)
    video = out / RENDER_FILE
    if video.is_file():
        offset = float(run.get("start") or 0.0)
        times = [t + offset for t in video_frame_times(video)]
        by_time = sorted((t, f) for f, t in frames.items())
        manifest["video"] = {"src": f"media/{RENDER_FILE}", "offset": offset, "frame_times": times,
                             "frame_index": _match_frames(times, by_time, 0.5 / fps)}
        content.files[f"media/{RENDER_FILE}"] = video
    manifest["frame_times"] = manifest["video"]["frame_times"] if manifest["video"] else params_times

    glbs: dict[int, list[tuple[int, Path]]] = {}
    for p in out.glob("track_*.glb"):
        m = _TRACK_GLB.fullmatch(p.name)
        if m and p.is_file():
            glbs.setdefault(int(m.group(1)), []).append((int(m.group(2) or 0), p))
    colors = track_colors()
    tracks = []
    for tid, rows in sorted(per_track.items()):
        entry: dict[str, Any] = {"id": tid, "color": _hex(colors[tid % len(colors)]),
                                 "first": rows[0][1], "last": rows[-1][1], "rows": len(rows), "parts": [],
                                 "chunks": []}
        for _, path in sorted(glbs.get(tid, [])):
            t0, t1, n = glb_time_range(path)
            url = f"media/{path.name}"
            content.files[url] = path
            entry["parts"].append({"src": url, "t0": t0, "t1": t1, "rows": n})
        if not entry["parts"]:
            content.missing_glb[tid] = f"media/generated/track_{tid}"
        for c in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[c : c + CHUNK_ROWS]
            url = f"params/track_{tid}/{c // CHUNK_ROWS:05d}.json"
            content.generated[url] = ("[" + ",\n".join(line for _, _, line in chunk) + "]").encode("utf-8")
            entry["chunks"].append({"src": url, "t0": chunk[0][1], "t1": chunk[-1][1], "rows": len(chunk)})
        tracks.append(entry)
    manifest["tracks"] = tracks
    content.manifest = manifest
    return content


def _match_frames(times: list[float], by_time: list[tuple[float, int]], tol: float) -> list[int]:
    """For each of ``times`` (sorted), the frame index of ``by_time`` (sorted ``(time, index)``)
    within ``tol`` seconds, else -1."""
    out, j = [], 0
    for t in times:
        while j + 1 < len(by_time) and by_time[j + 1][0] <= t:
            j += 1
        best = -1
        for k in (j, j + 1):
            if k < len(by_time) and abs(by_time[k][0] - t) <= tol:
                best = by_time[k][1]
                break
        out.append(best)
    return out


# --------------------------------------------------------------------------- image runs


def _shared_matrix(person: dict, shared: dict) -> list[float]:
    """Column-major 4x4: a point of the person's OBJ (OpenCV axes, the person's camera) into the
    shared camera's y-up world (x, -y, -z), by :func:`wbcap.camera.to_shared_camera`'s linear map
    ``x' = x + z (c_k,x - c_x) / f_k``, ``y' = y + z (c_k,y - c_y) / f_k``, ``z' = z f / f_k``."""
    fk, (ckx, cky) = float(person["focal"][0]), person["princpt"]
    f, (cx, cy) = float(shared["focal"][0]), shared["princpt"]
    a, b, s = (float(ckx) - float(cx)) / fk, (float(cky) - float(cy)) / fk, f / fk
    # y-up = D opencv, D = diag(1, -1, -1); the map in y-up is D M D, applied to D x: D M
    rows = [[1.0, 0.0, a, 0.0], [0.0, -1.0, -b, 0.0], [0.0, 0.0, -s, 0.0], [0.0, 0.0, 0.0, 1.0]]
    return [rows[r][c] for c in range(4) for r in range(4)]


def _image_content(out: Path, param_files: list[Path]) -> SiteContent:
    from wbcap.export.render import PALETTE

    content = SiteContent(manifest={})
    manifest = _base_manifest("image", out.resolve().name)
    by_image: dict[Path, list[tuple[int, Path]]] = {}
    for p in param_files:
        by_image.setdefault(p.parent.parent, []).append((int(_PERSON_DIR.fullmatch(p.parent.name).group(1)), p))
    images = []
    for folder, people in sorted(by_image.items()):
        name = folder.relative_to(out).as_posix()
        people.sort()
        records = []
        for k, p in people:
            try:
                rec = json.loads(p.read_text(encoding="utf-8"))
                cam = rec["camera"]
                records.append((k, p, {"focal": cam["focal"], "princpt": cam["princpt"],
                                       "image_size": cam["image_size"], "crop": rec["crop_bbox_xywh"]}))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{p}: not a wbcap smplx_param.json ({type(exc).__name__}: {exc}); "
                                 f"run `wbcap image` on that photo again") from None
        # the camera of render_original_img.jpg: the largest crop box's (export.image_outputs.to_common_camera)
        shared = max(records, key=lambda r: r[2]["crop"][2] * r[2]["crop"][3])[2]
        entry: dict[str, Any] = {"name": name, "overlay": None,
                                 "camera": {k: shared[k] for k in ("focal", "princpt", "image_size")}, "people": []}
        for i, (k, p, cam) in enumerate(records):
            obj = p.parent / "output.obj"
            if not obj.is_file():
                raise InputError(f"{obj}: missing; run `wbcap image` on that photo again")
            base = f"media/{name}/{p.parent.name}"
            content.files[f"{base}/output.obj"] = obj
            content.files[f"{base}/smplx_param.json"] = p
            overlay = p.parent / "render_original_img.jpg"
            if entry["overlay"] is None and overlay.is_file():
                entry["overlay"] = f"{base}/render_original_img.jpg"
                content.files[entry["overlay"]] = overlay
            entry["people"].append({"id": k, "color": _hex(PALETTE[i % len(PALETTE)]), "obj": f"{base}/output.obj",
                                    "params": f"{base}/smplx_param.json", "matrix": _shared_matrix(cam, shared)})
        images.append(entry)
    manifest["images"] = images
    content.manifest = manifest
    return content

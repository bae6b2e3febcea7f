"""``wbcap run``'s ``params.jsonl``: one JSON line per person-frame, in frame order.

Each line: ``frame`` (source index), ``time`` (seconds), ``track`` (id), ``box`` (detected
``(x, y, w, h)``, pixels), ``score`` (the detector's score of the box, as the raw records hold it:
YOLOX's and torchvision's 0-1, HOG's SVM margin, a box file's own score or 1; absent from files
written before wbcap recorded it), the SMPL-X parameters in the video camera (``root_pose``,
``body_pose``, ``lhand_pose``, ``rhand_pose``, ``jaw_pose`` axis-angle radians, hands relative
to their mean; ``shape``, ``expr``; ``cam_trans`` metres, OpenCV axes), ``leye_pose`` and
``reye_pose`` (zeros) and ``camera`` (``focal`` ``[f, f]`` and ``princpt`` pixels,
``image_size`` ``[W, H]``). With ``wbcap run --world``, when the world frame was found, also
``contact``: ``{"left": bool, "right": bool}``, the foot planted on the ground in this frame
(:mod:`wbcap.world`). The parameters stay those of the video camera either way (the measurement:
``wbcap export --world`` rebuilds the same world-frame files from them); the world frame's
translation correction is in the world-frame files only.

:func:`read_params_jsonl` reads it back (``wbcap export`` rebuilds the animation files from it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.camera import ImageCamera, camera_from_dict, camera_to_dict
from wbcap.errors import JSON_ERRORS, setting
from wbcap.io.param_names import FILE_KEYS, NETWORK_FILE_KEYS
from wbcap.smooth.track import ROT_KEYS, SmoothedTrack, part_box_rows

log = logging.getLogger(__name__)


def write_params_jsonl(path: Path, frames: dict[int, float], tracks: dict[int, SmoothedTrack],
                       by_frame: dict[int, list[tuple[int, int]]], focal: float, princpt: tuple[float, float],
                       size: tuple[int, int], contacts: dict[int, np.ndarray] | None = None) -> int:
    """Write ``path`` atomically; returns the line count.

    ``frames``: ``{frame index: time}`` in frame order; ``by_frame``: the rows of ``tracks`` per
    frame (:func:`wbcap.smooth.track.rows_by_frame`), written in track id order; ``focal``,
    ``princpt``: the video camera, pixels; ``size``: ``(W, H)`` pixels; ``contacts``: ``{track
    id: (N, 2) bool}`` planted (left, right) foot per row (``wbcap run --world``), or None.
    """
    from wbcap.atomic import atomic_path
    from wbcap.io.raw_records import PART_BOXES

    camera = camera_to_dict(ImageCamera(focal=(focal, focal), princpt=tuple(princpt), image_size=tuple(size)))
    zeros = [0.0, 0.0, 0.0]
    n_lines = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for frame_index, ftime in frames.items():
            for tid, row in sorted(by_frame.get(frame_index, [])):
                tr = tracks[tid]
                rec = {"frame": frame_index, "time": ftime, "track": tid, "box": tr.box[row].tolist()}
                if tr.score is not None:
                    rec["score"] = float(tr.score[row])
                if tr.part_boxes is not None and np.isfinite(tr.part_boxes[row]).all():
                    rec.update(zip(PART_BOXES, tr.part_boxes[row].tolist()))
                # file keys in the files' order; the eyes are SMPL-X's rest eyes (Hand4Whole does not
                # estimate them), written so every parameter is here
                for name, key in FILE_KEYS.items():
                    rec[key] = zeros if name in ("leye_pose", "reye_pose") else tr.param(name)[row].tolist()
                rec["camera"] = camera
                if contacts is not None and tid in contacts:
                    left, right = (bool(v) for v in contacts[tid][row])
                    rec["contact"] = {"left": left, "right": right}
                f.write(json.dumps(rec) + "\n")
                n_lines += 1
    return n_lines


def read_params_jsonl(path: str | Path) -> tuple[dict[int, float], dict[int, SmoothedTrack], ImageCamera | None]:
    """Read back a ``params.jsonl`` written by :func:`write_params_jsonl` (``path``: the file, or
    the run folder that holds it).

    Returns:
        ``(frames, tracks, camera)``: ``{frame index: time}`` of the frames that hold a person,
        in file order; ``{track id: SmoothedTrack}`` (rows in frame order); the video camera of
        the first line (None for an empty file).

    Raises:
        InputError: a line that is not JSON, lacks a field, holds a field of another length or a
            number that is not finite (NaN, Infinity), repeats another line's track and frame, or
            whose time does not follow the times of the frames before it (or differs from another
            line's time of its frame); one line naming the file, the line and the field. Also a
            file that is missing or cannot be read.
    """
    from wbcap.errors import InputError
    from wbcap.io.param_names import NETWORK_FILE_SIZES
    from wbcap.io.raw_records import PART_BOXES, damaged_numbers

    frames: dict[int, float] = {}
    rows: dict[int, list[dict]] = {}
    line_of: dict[tuple[int, int], int] = {}  # (track, frame) -> line
    frame_line: dict[int, int] = {}  # frame -> the first line that gave its time
    camera = None
    keys = ("frame", "time", "track", "box", *NETWORK_FILE_KEYS)
    sizes = {"time": 0, "box": 4, **NETWORK_FILE_SIZES}
    seen: dict[str, int] = {}
    from wbcap.io.run_folder import rewrite_hint

    path = Path(path).expanduser()
    if path.is_dir():  # (a run folder: it raised IsADirectoryError, a user trial)
        path = path / "params.jsonl"
    resume = rewrite_hint(path.parent)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        from wbcap.io.run_folder import unfinished_run_note

        note = unfinished_run_note(path.parent)
        # (absolute: `wbcap export .` said "params.jsonl: no such file", naming no folder, a new user's trial)
        raise InputError(f"{path.absolute()}: no such file{note or '; is this a finished `wbcap run` folder?'}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc}); pass the params.jsonl "
                         "of a finished `wbcap run`") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            missing = [k for k in keys if k not in rec] if isinstance(rec, dict) else ["everything (not an object)"]
        except JSON_ERRORS as exc:
            if not line_of:  # (the first record: another file given for it, e.g. an image's smplx_param.json)
                raise InputError(f"{path}:{n}: not JSON ({exc}): not a wbcap params.jsonl (one JSON record a line, "
                                 f"written by `wbcap run`), or damaged from its start: {resume}") from None
            raise InputError(f"{path}:{n}: not JSON ({exc}); the file is damaged: {resume}") from None
        if missing:
            raise InputError(f"{path}:{n}: missing {', '.join(missing)}; not a wbcap params.jsonl")
        why = damaged_numbers(rec, sizes, seen) or ("score" in rec and damaged_numbers(rec, {"score": 0})) or (
            any(key in rec for key in PART_BOXES) and damaged_numbers(rec, dict.fromkeys(PART_BOXES, 4)))
        if why:
            raise InputError(f"{path}:{n}: a damaged record ({why}); {resume}")
        try:
            frame, track, ftime = int(rec["frame"]), int(rec["track"]), float(rec["time"])
            if not (0 <= frame < 2**63 and 0 <= track < 2**63):
                raise ValueError(f"frame {frame}, track {track}: not a frame index and a track id")
            if camera is None and "camera" in rec:
                camera = camera_from_dict(rec["camera"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"{path}:{n}: a damaged record ({type(exc).__name__}: {exc}); {resume}") from None
        if (track, frame) in line_of:
            raise InputError(f"{path}:{n}: repeats track {track}, frame {frame} of line {line_of[track, frame]}; "
                             f"the file is damaged: {resume}")
        if frames.setdefault(frame, ftime) != ftime:
            raise InputError(f"{path}:{n}: a damaged record (time {ftime:g} s, where line {frame_line[frame]} gives "
                             f"frame {frame} the time {frames[frame]:g} s); {resume}")
        frame_line.setdefault(frame, n)
        line_of[track, frame] = n
        rows.setdefault(track, []).append(rec)
    ordered = sorted(frames)
    for before, frame in zip(ordered, ordered[1:]):  # (the clock of the track files needs increasing times)
        if not frames[frame] > frames[before]:
            raise InputError(f"{path}:{frame_line[frame]}: a damaged record (frame {frame} at {frames[frame]:g} s is not "
                             f"after frame {before} at {frames[before]:g} s, line {frame_line[before]}); {resume}")
    tracks = {}
    changing: list[int] = []  # (tracks whose shape changes between lines)
    for tid, recs in sorted(rows.items()):
        recs.sort(key=lambda r: r["frame"])

        def col(key: str, dtype=np.float32, recs=recs, tid=tid) -> np.ndarray:
            try:
                return np.asarray([r[key] for r in recs], dtype)
            except (TypeError, ValueError):  # (a record with another number of values, or not numbers)
                sizes = [len(r[key]) if isinstance(r[key], list) else -1 for r in recs]
                common = max(set(sizes), key=sizes.count)
                bad = next((r for r, n in zip(recs, sizes) if n != common), recs[0])
                raise InputError(f"{path}: a damaged record (track {tid}, frame {bad['frame']}: {key} "
                                 f"{json.dumps(bad[key])[:60]}, where the others have {common} numbers); resume its "
                                 f"run ({setting('resume', api='resume=True')}) to rewrite it") from None

        shapes = col(FILE_KEYS["betas"])
        if (shapes != shapes[0]).any():
            changing.append(tid)
        tracks[tid] = SmoothedTrack(
            frame=col("frame", np.int64), time=col("time", np.float64), box=col("box"),
            **{name: col(FILE_KEYS[name]) for name in (*ROT_KEYS, "expression", "transl")},
            betas=shapes[0].copy(),
            score=col("score", np.float64) if all("score" in r for r in recs) else None,
            part_boxes=part_box_rows([[r[key] for key in PART_BOXES] if PART_BOXES[0] in r else None for r in recs]),
        )
    _warn_unread_values(path, rows, changing)
    return frames, tracks, camera


def _warn_unread_values(path: Path, rows: dict[int, list[dict]], changing: list[int]) -> None:
    """Warn where the file holds values wbcap's tracks cannot carry, which a hand-edited file may:
    eyes other than zero (wbcap keeps SMPL-X's rest eyes: Hand4Whole does not estimate them) and a
    track's ``shape`` changing between its lines (``changing``; one shape a track: its first
    line's). They were dropped without a word (a researcher's trial edited the eyes)."""

    def moved(value: Any) -> bool:  # (not a list of zeros; anything else counts: it is not read either way)
        return value is not None and (not isinstance(value, list) or any(v != 0 for v in value))

    eyes = sum(moved(rec.get("leye_pose")) or moved(rec.get("reye_pose")) for recs in rows.values() for rec in recs)
    if eyes:
        log.warning("%s: %d line(s) give leye_pose/reye_pose other than zero; wbcap keeps SMPL-X's rest eyes (Hand4Whole "
                    "does not estimate them), so those are not used", path, eyes)
    if changing:
        log.warning("%s: the shape of track(s) %s changes between lines; wbcap gives a track one shape, its first "
                    "line's", path, ", ".join(map(str, changing)))

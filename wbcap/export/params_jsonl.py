"""``wbcap run``'s ``params.jsonl``: one JSON line per person-frame, in frame order.

Each line: ``frame`` (source index), ``time`` (seconds), ``track`` (id), ``box`` (detected
``(x, y, w, h)``, pixels), the SMPL-X parameters in the video camera (``root_pose``,
``body_pose``, ``lhand_pose``, ``rhand_pose``, ``jaw_pose`` axis-angle radians, hands relative
to their mean; ``shape``, ``expr``; ``cam_trans`` metres, OpenCV axes), ``leye_pose`` and
``reye_pose`` (zeros) and ``camera`` (``focal`` ``[f, f]`` and ``princpt`` pixels,
``image_size`` ``[W, H]``).
"""

from __future__ import annotations

import json
from pathlib import Path

from wbcap.smooth.track import ROT_KEYS, SmoothedTrack


def write_params_jsonl(path: Path, frames: dict[int, float], tracks: dict[int, SmoothedTrack],
                       by_frame: dict[int, list[tuple[int, int]]], focal: float, princpt: tuple[float, float],
                       size: tuple[int, int]) -> int:
    """Write ``path`` atomically; returns the line count.

    ``frames``: ``{frame index: time}`` in frame order; ``by_frame``: the rows of ``tracks`` per
    frame (:func:`wbcap.smooth.track.rows_by_frame`), written in track id order; ``focal``,
    ``princpt``: the video camera, pixels; ``size``: ``(W, H)`` pixels.
    """
    from wbcap.atomic import atomic_path

    camera = {"focal": [focal, focal], "princpt": list(princpt), "image_size": list(size)}
    zeros = [0.0, 0.0, 0.0]
    n_lines = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for frame_index, ftime in frames.items():
            for tid, row in sorted(by_frame.get(frame_index, [])):
                tr = tracks[tid]
                rec = {"frame": frame_index, "time": ftime, "track": tid, "box": tr.box[row].tolist()}
                for k in (*ROT_KEYS, "shape", "expr", "cam_trans"):
                    rec[k] = tr.param(k)[row].tolist()
                # Hand4Whole does not estimate the eyes: SMPL-X's rest eyes, written so every parameter is here.
                rec["leye_pose"], rec["reye_pose"] = zeros, zeros
                rec["camera"] = camera
                f.write(json.dumps(rec) + "\n")
                n_lines += 1
    return n_lines

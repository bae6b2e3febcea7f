"""One person's joint angles per row as CSV (``--export angles``): head yaw, pitch and roll, knee
flexion, finger flexion... in degrees, for a spreadsheet, pandas or MATLAB, without SMPL-X or
rotation algebra.

``track_<id>_angles.csv`` (``output_angles.csv`` for a photo): one header line, then one line
per row of the track's AMASS file (:mod:`wbcap.export.amass`: the same regular clock, filled
short gaps, split at long gaps, as the joints' CSV, :mod:`wbcap.export.joints_csv`)::

    time,frame_index,valid,pelvis_yaw_left,pelvis_pitch_up,...,right_thumb3_pronation

* ``time``: seconds of the source (the npz's ``times``); ``frame_index``: the source frame of the
  row, -1 for a filled row; ``valid``: 1 where the person was seen, 0 where the row was filled.
* then :func:`wbcap.body.joint_angles.angle_names`' 162 angles in degrees, four decimals: the
  pelvis's and head's yaw, pitch and roll from upright facing the camera, then every joint's three
  angles relative to its parent, each named after the movement its positive values make
  (:mod:`wbcap.body.joint_angles` defines them). They are the npz's ``poses``, decomposed: no
  body model is needed to compute them, and the shape (``betas``) does not change them.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.export.clip import MotionClip

logger = logging.getLogger(__name__)

#: The header's first columns, before the angles' names (as the joints' CSV's; its start with the
#: first angle's name is the mark :func:`wbcap.io.run_folder.written_by_wbcap` reads: kept in step
#: by tests/test_joint_angles.py).
LEADING_COLUMNS = ("time", "frame_index", "valid")


def write_angles_csv(path: str | Path, body: Any, clip: MotionClip, joints: np.ndarray | None = None) -> Path:
    """Write ``clip``'s joint angles (module docstring) to ``path``, atomically.

    Args:
        path: the ``.csv`` to write (replaced if present).
        body, joints: unused (the angles need no body model); the other point writers' signature.
        clip: a z-up clip of one AMASS file (:func:`wbcap.export.clip.clip_from_amass` with ``up="z"``).

    Raises:
        ValueError: a clip that is not z up.
    """
    from wbcap.atomic import atomic_write_text, final_path
    from wbcap.body.joint_angles import angle_names, joint_angles

    if clip.up != "z":
        raise ValueError("write_angles_csv: expected a z-up clip (the AMASS file's frame)")
    angles = np.round(joint_angles(clip.poses), 4) + 0.0  # (+ 0.0: no "-0.0000")
    buf = io.StringIO()
    buf.write(",".join([*LEADING_COLUMNS, *angle_names()]) + "\n")
    for time, frame, valid, row in zip(np.asarray(clip.times, np.float64), np.asarray(clip.frame_indices),
                                       np.asarray(clip.valid), angles):
        values = ",".join(f"{v:.4f}" for v in row)
        buf.write(f"{time:.6f},{int(frame)},{int(bool(valid))},{values}\n")
    atomic_write_text(path, buf.getvalue())
    logger.info("wrote %s (%d row%s, %d angles)", final_path(path), len(clip), "" if len(clip) == 1 else "s",
                angles.shape[1])
    return Path(path)

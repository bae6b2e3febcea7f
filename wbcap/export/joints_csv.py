"""One person's 3D joint positions per row as CSV (``--export csv``): for analysis in a
spreadsheet, pandas, MATLAB or OpenSim-style tools, without SMPL-X.

``track_<id>.csv`` (``output.csv`` for a photo): one header line, then one line per row of the
track's AMASS file (:mod:`wbcap.export.amass`: the same regular clock, filled short gaps and
split at long gaps)::

    time,frame_index,valid,pelvis_x,pelvis_y,pelvis_z,left_hip_x,...,right_pinky_z

* ``time``: seconds of the source (the npz's ``times``); ``frame_index``: the source frame of the
  row, -1 for a filled row; ``valid``: 1 where the person was seen, 0 where the row was filled.
* :func:`joint_names`: the 55 joints of SMPL-X's kinematic tree and its 21 vertex joints (nose,
  eyes, ears, big and small toes, heels, finger tips), as ``smplx`` outputs and names them (its
  first 76 joints, ``smplx.joint_names.JOINT_NAMES[:76]``; the GLB's and BVH's joints are its
  first 55), 3 columns each.
* Positions in **metres**, in the track npz's frame: z up (AMASS's), the camera's frame or, with
  ``wbcap run --world``, the ground's (:mod:`wbcap.export.clip`). They are SMPL-X's own joints of
  the row's parameters (:func:`wbcap.export.clip.smplx_rows`): ``smplx.create(...,
  flat_hand_mean=True)`` fed the npz's ``poses``, ``trans``, ``betas`` and ``expression`` gives
  the same numbers.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.export.clip import MotionClip, npz_frame_joints

logger = logging.getLogger(__name__)

#: Joints in the CSV: ``smplx``'s first 76 output joints (55 model joints, 21 vertex joints).
JOINT_COUNT = 76


def joint_names() -> tuple[str, ...]:
    """The :data:`JOINT_COUNT` joint names of the CSV's columns, in order: ``smplx``'s
    (``smplx.joint_names.JOINT_NAMES``: ``pelvis``, ``left_hip``, …, ``right_pinky``), as the GLB's
    and BVH's joints are named."""
    from smplx.joint_names import JOINT_NAMES

    return tuple(JOINT_NAMES[:JOINT_COUNT])


def write_joints_csv(path: str | Path, body: Any, clip: MotionClip, joints: np.ndarray | None = None) -> Path:
    """Write ``clip``'s joints (module docstring) to ``path``, atomically.

    Args:
        path: the ``.csv`` to write (replaced if present).
        body: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` of the clip's parameters.
        clip, joints: as :func:`wbcap.export.clip.npz_frame_joints` takes them (a z-up clip of
            one AMASS file, the npz's frame; its joints when already computed).

    Raises:
        ValueError: a clip that is not z up.
    """
    from wbcap.atomic import atomic_write_text, final_path

    joints = npz_frame_joints(body, clip, joints, "write_joints_csv")[:, :JOINT_COUNT]
    header = ["time", "frame_index", "valid", *(f"{n}_{a}" for n in joint_names() for a in "xyz")]
    buf = io.StringIO()
    buf.write(",".join(header) + "\n")
    table = np.concatenate([np.asarray(clip.times, np.float64)[:, None], joints.reshape(len(clip), -1)], 1)
    for row, frame, valid in zip(table, np.asarray(clip.frame_indices), np.asarray(clip.valid)):
        values = ",".join(f"{v:.6f}" for v in row[1:])
        buf.write(f"{row[0]:.6f},{int(frame)},{int(bool(valid))},{values}\n")
    atomic_write_text(path, buf.getvalue())
    logger.info("wrote %s (%d row%s, %d joints)", final_path(path), len(clip), "" if len(clip) == 1 else "s", JOINT_COUNT)
    return Path(path)

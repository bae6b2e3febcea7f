r"""One person's 3D keypoints as an OpenSim marker file (``--export trc``): for biomechanics, where
OpenSim's scaling and inverse kinematics (or Pose2Sim's ``kinematics`` step, which runs them)
turn markers into joint angles of a musculoskeletal model.

``track_<id>.trc`` (``output.trc`` for a photo: a one-row file, a static trial for scaling):
OpenSim's TRC text format (``PathFileType 4``, tab-separated (``\t`` below), as OpenSim's ``TRCFileAdapter``
reads and Pose2Sim's ``triangulation.make_trc`` writes)::

    PathFileType\t4\t(X/Y/Z)\ttrack_3.trc
    DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames
    30\t30\t120\t32\tm\t30\t1\t120
    Frame#\tTime\tNose\t\t\tNeck\t\t\t...\tHip\t\t\t
    \t\tX1\tY1\tZ1\tX2\tY2\tZ2\t...\tZ32\t
    (an empty line)
    1\t2.033333\t0.123456\t...

* **Rows**: those of the track's AMASS file (:mod:`wbcap.export.amass`): the same regular clock,
  short gaps filled (their markers interpolated as the npz's parameters; the CSV's ``valid``
  column, :mod:`wbcap.export.joints_csv`, says which rows are), split at long gaps into
  ``_part<k>`` files. ``Frame#`` counts rows from 1; ``Time`` is the source's seconds (the npz's
  ``times``), ``DataRate`` the rows per second.
* **Markers**: the 32 of :mod:`wbcap.body.markers` (OpenPose's BODY_25, three points per hand
  and ``Hip``, named as Pose2Sim's marker sets name them: every marker of its
  ``Markers_Body25.xml`` and ``Markers_Coco133.xml``), in that order.
* **Frame**: metres, OpenSim's y up, as Pose2Sim turns a z-up world (:data:`OPENSIM_FROM_ZUP`):
  ``X`` the npz's y (forward, away from the camera; a calibration's own y in its world), ``Y`` its
  up, ``Z`` its x (the camera's right; the calibration's x).
  In the camera's frame (the default) "up" is the camera's own; with ``wbcap run --world`` it is
  the estimated ground's normal and ``Y = 0`` the ground, which OpenSim's models stand on.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.body.markers import MARKER_NAMES, marker_positions
from wbcap.camera import OPENSIM_FROM_ZUP as _OPENSIM_FROM_ZUP
from wbcap.camera import rotation_array
from wbcap.export.clip import MotionClip, npz_frame_joints

logger = logging.getLogger(__name__)

__all__ = ["OPENSIM_FROM_ZUP", "trc_text", "write_trc"]

#: :data:`wbcap.camera.OPENSIM_FROM_ZUP` as a read-only array.
OPENSIM_FROM_ZUP = rotation_array(_OPENSIM_FROM_ZUP)

#: The 4th line: ``Frame#``, ``Time`` and each marker's name over its three columns, ending in
#: three tabs as Pose2Sim's ``make_trc`` writes it (its marker augmentation adds a marker by
#: replacing ``"\t\t\t\n"`` there: on two tabs it grew the data but not the names, a trial).
_COLUMNS_LINE = "Frame#\tTime\t" + "\t\t\t".join(MARKER_NAMES) + "\t\t\t"


def _number(value: float) -> str:
    """A rate as the header writes it: ``30``, ``29.97002997``."""
    return format(float(value), ".10g")


def trc_text(name: str, times: np.ndarray, fps: float, markers: np.ndarray) -> str:
    """The TRC file's text.

    Args:
        name: the file's name for its first line (``track_3.trc``).
        times: ``(T,)`` seconds.
        fps: rows per second (``DataRate``, ``CameraRate``, ``OrigDataRate``).
        markers: ``(T, M, 3)`` positions in metres, OpenSim's frame, :data:`MARKER_NAMES`' order.

    Raises:
        ValueError: no row, ``markers`` not ``(T, len(MARKER_NAMES), 3)`` or not finite.
    """
    markers = np.asarray(markers, np.float64)
    t = len(times)
    if t == 0:
        raise ValueError("a clip of 0 rows; a TRC file needs one")
    if markers.shape != (t, len(MARKER_NAMES), 3):
        raise ValueError(f"markers of shape {markers.shape}; expected {(t, len(MARKER_NAMES), 3)}")
    if not np.isfinite(markers).all():
        raise ValueError("markers hold NaN or infinite values")
    m = len(MARKER_NAMES)
    buf = io.StringIO()
    buf.write(f"PathFileType\t4\t(X/Y/Z)\t{name}\n")
    buf.write("DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames\n")
    rate = _number(fps)
    buf.write(f"{rate}\t{rate}\t{t}\t{m}\tm\t{rate}\t1\t{t}\n")
    buf.write(_COLUMNS_LINE + "\n")
    buf.write("\t\t" + "\t".join(f"X{k}\tY{k}\tZ{k}" for k in range(1, m + 1)) + "\t\n\n")  # (as make_trc)
    for row, (time, points) in enumerate(zip(np.asarray(times, np.float64), markers.reshape(t, -1)), start=1):
        buf.write(f"{row}\t{time:.6f}\t" + "\t".join(f"{v:.6f}" for v in points) + "\n")
    return buf.getvalue()


def write_trc(path: str | Path, body: Any, clip: MotionClip, joints: np.ndarray | None = None) -> Path:
    """Write ``clip``'s markers (module docstring) to ``path``, atomically.

    Args:
        path: the ``.trc`` to write (replaced if present).
        body: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` of the clip's parameters.
        clip, joints: as :func:`wbcap.export.clip.npz_frame_joints` takes them (a z-up clip; its
            joints when already computed).

    Raises:
        ValueError: a clip that is not z up, or of no row.
    """
    from wbcap.atomic import atomic_write_text, final_path

    markers = marker_positions(npz_frame_joints(body, clip, joints, "write_trc")) @ OPENSIM_FROM_ZUP.T
    name = final_path(path).name
    atomic_write_text(path, trc_text(name, clip.times, clip.fps, markers))
    logger.info("wrote %s (%d row%s, %d markers)", final_path(path), len(clip), "" if len(clip) == 1 else "s",
                len(MARKER_NAMES))
    return Path(path)

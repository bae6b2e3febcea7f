"""One person's 3D keypoints as a C3D file (``--export c3d``): the motion-capture labs' exchange
format, which Vicon Nexus, Qualisys, Visual3D, Mokka and biomechanics libraries (ezc3d, btk,
kineticstoolkit, py-c3d) read.

``track_<id>.c3d`` (``output.c3d`` for a photo: one frame), written with ezc3d:

* **Points**: the 32 markers of :mod:`wbcap.body.markers` (OpenPose's BODY_25, three points per
  hand and ``Hip``, named as Pose2Sim's marker sets name them), ``POINT:LABELS`` in that order,
  ``POINT:DESCRIPTIONS`` the SMPL-X point each one is (``SMPL-X R_Knee``, ``SMPL-X mean of R_Hip,
  L_Hip``).
* **Frames**: the rows of the track's AMASS file (:mod:`wbcap.export.amass`): the same regular
  clock at ``POINT:RATE`` rows per second, short gaps filled, split at long gaps into
  ``_part<k>`` files. The header's first frame is the first row's frame on the source's clock
  (``round(time * RATE)``, counted from 0 as readers that take it for the trial's start do:
  kineticstoolkit's time is ``first_frame / RATE`` on), so C3D tools show the source's time, to
  within half a row where the rows are not on that grid (``--every 2`` from a frame off its
  grid, a variable-rate video's track: said in a warning, :data:`~wbcap.export.clip.OFF_GRID_WHY`);
  a piece that would end past C3D's 16-bit frame numbers (after 36 min at 30 fps; 9 min at 120)
  or begin before 0 s (a fusion's clock) starts at frame 0, its tools' times and its events' from
  0, also said in a warning. (Vicon's ``TRIAL:ACTUAL_START_FIELD``, two 16-bit words, could hold
  a later start, but py-c3d 0.6 reads its high word as 65535 frames and then reads one frame past
  the file's end, with a warning: not written.) ``WBCAP:START_TIME`` holds the first row's time in seconds either
  way (C3D's parameters are 32-bit floats: within 0.25 ms up to an hour; a rate of 29.97002997
  is kept as 29.970030). A C3D file holds at most :data:`C3D_MAX_FRAMES` frames (its
  header's frame numbers are 16-bit; ezc3d reads no more): a longer piece of a track gets no
  C3D file, and a warning says so (:mod:`wbcap.export.animation`).
  Every point is valid with a residual of 0, which C3D gives a point that was computed rather
  than seen by cameras; filled rows too (their values interpolated as the npz's parameters;
  ``track_<id>.csv``'s ``valid`` column says which rows are).
* **Axes and units**: the npz's frame (z up: x the camera's right, y forward, z up; with
  ``wbcap run --world`` the estimated ground's, z = 0 on it), **millimetres** (``POINT:UNITS``
  ``mm``, as labs write them). ``WBCAP:FRAME`` says ``camera`` or ``world``; in a world,
  ``WBCAP:GROUND_FROM`` says whose: ``calibration`` (a lab's frame, ``--world --calibration``)
  or ``feet`` (the ground fitted to the feet).
* **Gait events** (``wbcap run --world``, whose npz holds the feet's contacts): each foot's
  ``Foot Strike`` where it becomes planted and ``Foot Off`` where it leaves the ground
  (:func:`wbcap.world.contact.foot_events`), in C3D's ``EVENT`` group as Vicon Nexus writes them
  (context ``Left``/``Right``, the time on the file's frame clock: ``(first frame + row) / RATE``,
  the time C3D tools give the row; read back in the tests by py-c3d, and by ezc3d and
  kineticstoolkit in trials). Contacts are those of the planted-foot detection :mod:`wbcap.world`
  grounds the track with (speed and height of the soles, with hysteresis), not of a force plate.
* ``MANUFACTURER:COMPANY`` is ``wbcap``, ``MANUFACTURER:SOFTWARE`` its version.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.body.markers import MARKER_NAMES, marker_descriptions, marker_positions
from wbcap.export.clip import OFF_GRID_WHY, MotionClip, npz_frame_joints
from wbcap.world.contact import FOOT_STRIKE, foot_events

logger = logging.getLogger(__name__)

__all__ = ["C3D_MAX_FRAMES", "WBCAP_GROUP", "write_c3d"]

#: The most frames a C3D file holds (16-bit frame numbers; 36 min at 30 fps).
C3D_MAX_FRAMES = 65535

#: The parameter group holding wbcap's own values (``START_TIME``, ``FRAME``): also how
#: :mod:`wbcap.io.run_folder` tells wbcap's C3D files from a user's.
WBCAP_GROUP = "WBCAP"


def write_c3d(path: str | Path, body: Any, clip: MotionClip, joints: np.ndarray | None = None,
              contact: np.ndarray | None = None) -> Path:
    """Write ``clip``'s markers (module docstring) to ``path``, atomically.

    Args:
        path: the ``.c3d`` to write (replaced if present).
        body: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` of the clip's parameters.
        clip, joints: as :func:`wbcap.export.clip.npz_frame_joints` takes them (a z-up clip; its
            joints when already computed).
        contact: ``(T, 2)`` bool, the feet planted per row (the npz's ``contact``): written as
            gait events; None: no events.

    Raises:
        ValueError: a clip that is not z up, empty, longer than :data:`C3D_MAX_FRAMES` rows, or
            markers that are not finite.
    """
    import ezc3d

    from wbcap import __version__
    from wbcap.atomic import atomic_path, final_path

    if not 0 < len(clip) <= C3D_MAX_FRAMES:
        raise ValueError(f"a clip of {len(clip)} rows; a C3D file holds 1 to {C3D_MAX_FRAMES} frames")
    millimetres = marker_positions(npz_frame_joints(body, clip, joints, "write_c3d")) * 1000.0  # (T, M, 3)
    if not np.isfinite(millimetres).all():
        raise ValueError("markers hold NaN or infinite values")
    t, m = millimetres.shape[:2]
    c3d = ezc3d.c3d()
    point = c3d["parameters"]["POINT"]
    point["RATE"]["value"] = [float(clip.fps)]
    point["UNITS"]["value"] = ["mm"]
    point["LABELS"]["value"] = list(MARKER_NAMES)
    point["DESCRIPTIONS"]["value"] = list(marker_descriptions())
    data = np.ones((4, m, t))
    data[:3] = millimetres.transpose(2, 1, 0)
    c3d["data"]["points"] = data
    first = _first_frame(final_path(path).name, float(clip.times[0]), float(clip.fps), t)
    c3d["header"]["points"]["first_frame"] = first
    for row, side, event in foot_events(contact) if contact is not None else ():
        seconds = (first + row) / float(clip.fps)
        c3d.add_event([int(seconds // 60), seconds % 60], context=side, label=event,
                      description="wbcap --world: planted-foot detection", icon_id=1 if event == FOOT_STRIKE else 2)
    c3d["data"]["meta_points"]["residuals"] = np.zeros((1, m, t))
    c3d["data"]["meta_points"]["camera_masks"] = np.zeros((7, m, t), bool)
    c3d.add_parameter(WBCAP_GROUP, "START_TIME", [float(clip.times[0])])
    c3d.add_parameter(WBCAP_GROUP, "FRAME", [str(clip.frame)])
    if clip.frame == "world" and clip.ground_from:  # (a lab's calibrated world, or the ground the feet gave)
        c3d.add_parameter(WBCAP_GROUP, "GROUND_FROM", [str(clip.ground_from)])
    c3d.add_parameter("MANUFACTURER", "COMPANY", ["wbcap"])
    c3d.add_parameter("MANUFACTURER", "SOFTWARE", [f"wbcap {__version__}"])
    with atomic_path(path) as tmp:
        try:
            str(tmp).encode("utf-8")
        except UnicodeEncodeError:  # (a folder named in bytes that are not UTF-8, which ezc3d's binding cannot take)
            with tempfile.TemporaryDirectory(prefix="wbcap-c3d-") as folder:
                c3d.write(os.path.join(folder, "markers.c3d"))
                shutil.copyfile(os.path.join(folder, "markers.c3d"), tmp)
        else:
            c3d.write(str(tmp))
        _trim_empty_block(tmp)
    logger.info("wrote %s (%d frame%s, %d markers)", final_path(path), t, "" if t == 1 else "s", m)
    return Path(path)


def _first_frame(name: str, start: float, rate: float, frames: int) -> int:
    """The header's first frame (0-based) of a piece of ``frames`` rows whose first is at ``start``
    seconds, ``rate`` rows a second: ``round(start * rate)``, or 0 where the header cannot number
    it; a warning where it moves the file's times (module docstring)."""
    from wbcap.export.blender_fbx import grid_miss

    first = round(start * rate)
    if first < 0 or first + frames > C3D_MAX_FRAMES:
        where = ("is before 0 s" if first < 0 else
                 f"is frame {first} of {rate:g} fps and its last {first + frames - 1}, past the {C3D_MAX_FRAMES} "
                 "frames C3D's 16-bit header numbers")
        logger.warning("%s: its first row (%.4g s) %s: its frames are numbered from 0, so C3D tools show its times "
                       "and its events' from 0 s; WBCAP:START_TIME holds its start, and its TRC the source's times",
                       name, start, where)
        return 0
    if grid_miss(start, rate):  # (within a millisecond of a frame counts as on it, as for the FBX)
        shift = first / rate - start
        logger.warning("%s: C3D numbers whole frames of %g fps and the first row (%.4g s) falls between two, so the "
                       "file's times are %.4g s %s than the npz's and the TRC's, its WBCAP:START_TIME the first "
                       "row's %s", name, rate, start, abs(shift), "later" if shift > 0 else "earlier", OFF_GRID_WHY)
    return first


def _trim_empty_block(path: Path) -> None:
    """Cut the empty 512-byte block ezc3d (1.7) adds after point data that ends on a block's
    boundary, which wbcap's 32 float points (512 bytes a frame) always do: py-c3d warned
    "incomplete reading of data blocks" on every file (a biomechanics trial). The data's end is
    the header's (C3D's 512-byte header: word 1 the points, word 2 the analog channels, words 3-4
    the first and last frames, bytes 12-15 the scale, negative for float data, word 9 the data's
    first block); only trailing zeros past it go."""
    import struct

    with open(path, "r+b") as fh:
        header = fh.read(512)
        points, analog, first, last = struct.unpack_from("<4H", header, 2)
        scale = struct.unpack_from("<f", header, 12)[0]
        data_start = struct.unpack_from("<H", header, 16)[0]
        if analog or scale >= 0 or last < first:  # (not the layout wbcap writes: left as it is)
            return
        end = (data_start - 1) * 512 + (last - first + 1) * points * 16
        blocks = -(-end // 512) * 512
        size = fh.seek(0, os.SEEK_END)
        if size > blocks:
            fh.seek(blocks)
            if not fh.read(size - blocks).strip(b"\0"):
                fh.truncate(blocks)

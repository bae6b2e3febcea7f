"""A tracked person's motion as an AMASS-style SMPL-X ``.npz`` (``wbcap run``'s ``track_<id>.npz``).

The file *is* AMASS (Mahmood et al., ICCV 2019; SMPL-X release), so that AMASS readers, plain
``smplx`` and the SMPL-X Blender add-on read it without wbcap:

* **World frame, z up**, one of two (the key ``frame`` says which):

  - ``"camera"`` (default): the camera's frame turned so that gravity is (approximately) ``-z``:
    ``x`` = camera right, ``y`` = camera forward (into the scene), ``z`` = camera up
    (:data:`AMASS_FROM_OPENCV`). The camera sits at the origin; metres. The true ground is not
    estimated, so a tilted camera gives a tilted world.
  - ``"world"`` (``wbcap run --world``, :mod:`wbcap.world`): gravity is ``-z`` and the estimated
    ground is ``z = 0``; ``x`` = the camera's right and ``y`` its forward direction, both laid on
    the ground; the camera sits above the origin at ``camera_position`` (its height), turned by
    ``camera_rotation``; the translation is corrected so that planted feet stay still on the
    ground (:class:`wbcap.world.estimate.WorldFrame`). With a calibrated camera's pose
    (``ground_from`` ``"calibration"``): the calibration's world instead, its ``z = 0`` the ground,
    its axes and origin (a lab's frame), the camera at its calibrated ``camera_position``; a
    ``wbcap fuse`` of cameras whose calibration's world is not z up (``"calibration_levelled"``):
    that frame turned so that the floor the fused people's feet give is ``z = 0``, ``x`` its ``x``
    axis laid on the floor, the origin the floor's point under its origin
    (:mod:`wbcap.fuse.level`).
* **Hands absolute.** ``poses`` holds hand rotations *with the model's hand mean folded in*
  (``flat_hand_mean=True``, as AMASS and the add-on read them), where wbcap's network and its
  ``params.jsonl`` use poses relative to the mean (``flat_hand_mean=False``, Hand4Whole's
  convention). Since SMPL-X adds the mean in axis-angle space before the rotation is built,
  ``absolute = relative + hands_mean`` is exact.
* **A regular clock.** Row ``k`` is the time ``times[0] + k / mocap_framerate``, and holds the
  pose at that time (variable-frame-rate footage is resampled: :func:`regular_clock`). A frame in which
  the tracker missed the person is filled by interpolation (spherical for rotations, linear for
  translation and expression) and marked ``valid[k] = False``; a person missed for longer than
  ``max_gap`` seconds (the filled rows, :func:`regular_clock`) splits the track into several
  files instead.

Keys written (``T`` rows): ``poses (T, 165)`` float32 axis-angle (root, 21 body, jaw, left eye,
right eye, 15 left hand, 15 right hand), ``trans (T, 3)`` float32 metres, ``betas (10,)``
float32, ``expression (T, 10)``, ``gender`` (str), ``surface_model_type`` (``"smplx"``),
``mocap_framerate`` and ``mocap_frame_rate`` (float, frames per second; SMPL+H and SMPL-X AMASS
files spell it differently), ``mocap_time_length`` (seconds), ``num_betas``, AMASS's split views
``root_orient (T, 3)``, ``pose_body (T, 63)``, ``pose_hand (T, 90)``, ``pose_jaw (T, 3)``,
``pose_eye (T, 6)``, and wbcap's ``valid (T,)`` bool, ``times (T,)`` seconds on the source's
clock, ``frame_indices (T,)`` source frame index of each row (the nearer of the two a
variable-rate row is interpolated between; ``-1`` for a filled row),
``up_axis`` (``"z"``), ``flat_hand_mean`` (``True``), ``frame`` (``"camera"`` or ``"world"``),
``camera_rotation (3, 3)`` float64 (OpenCV camera axes -> this file's world: a point ``x_c`` of
the camera frame is at ``camera_rotation @ x_c + camera_position`` here) and ``camera_position
(3,)`` metres; the source camera's intrinsics ``camera_focal (2,)``, ``camera_princpt (2,)``
(pixels) and ``camera_image_size (2,)`` (``[W, H]``), so a point is projected without
``meta.json``; with ``"world"`` also ``contact (T, 2)`` bool, (left, right) foot planted
(:mod:`wbcap.world.contact`; a filled row is planted when both rows around it are), and
``ground_from`` (``"feet"``: the ground fitted to the feet; ``"calibration"``: the calibration's
world; ``"calibration_levelled"``: a fusion's levelled calibration frame).

Rebuilding the mesh: ``smplx.create(path, model_type="smplx", flat_hand_mean=True,
use_pca=False)`` called with ``global_orient=poses[:, :3]``, ``body_pose=poses[:, 3:66]``,
``jaw_pose=poses[:, 66:69]``, ``leye_pose``/``reye_pose``, ``left_hand_pose=poses[:, 75:120]``,
``right_hand_pose=poses[:, 120:165]``, ``betas``, ``expression`` and ``transl=trans`` gives
``camera_rotation @ v + camera_position`` for every vertex ``v`` of wbcap's camera-frame mesh
(``AMASS_FROM_OPENCV @ v`` in the camera frame; with ``"world"`` the mesh after the correction).
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wbcap.body.pose_layout import POSE_SLICES
from wbcap.camera import ZUP_FROM_OPENCV, rotate_root_np, rotation_array
from wbcap.smooth.track import GRID_JITTER

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from wbcap.camera import ImageCamera
    from wbcap.world.estimate import WorldFrame

#: Rotation taking OpenCV camera coordinates (x right, y down, z forward) to the z-up world
#: (x right, y forward, z up): ``x_w = x``, ``y_w = z``, ``z_w = -y`` (a -90 degree turn about x);
#: :data:`wbcap.camera.ZUP_FROM_OPENCV` as a read-only float64 array.
AMASS_FROM_OPENCV = rotation_array(ZUP_FROM_OPENCV)

@dataclass(frozen=True)
class ClockSegment:
    """One piece of a track resampled on a regular clock.

    For each output row ``k``: observations ``lo[k]`` and ``hi[k]`` (indices into the track's
    frames) and ``weight[k]`` in ``[0, 1]``; the row is ``(1 - w) * obs[lo] + w * obs[hi]``
    (slerp for rotations), and ``obs[lo]`` copied exactly where ``lo == hi``. ``valid[k]``: the
    row is measured, not filled (:func:`regular_clock`): an observation on the row (``lo ==
    hi``), or on variable-rate footage the track at the row's time between two frames in which
    the person was seen one after the other, or near one.

    Attributes:
        times: ``(N,)`` seconds, ``times[0] + k / rate``.
        lo, hi: ``(N,)`` int64 observation indices.
        weight: ``(N,)`` float64.
        valid: ``(N,)`` bool.
    """

    times: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray
    valid: np.ndarray


#: Seconds with no source frame at all beyond which two consecutive processed frames split a
#: track like a miss longer than ``max_gap`` (:func:`regular_clock`): a paused recording or a
#: motion-triggered camera, not a variable frame rate's slower stretch (phones drop to ~10-15
#: fps, a few filled rows). Six frames with an 8-hour pause between them were one track of
#: 300 003 interpolated rows at 10 fps: a 417 MB npz and a 288 MB GLB (found by a review).
SOURCE_PAUSE_S = 2.0


def regular_clock(times: np.ndarray, rate: float, max_gap: float,
                  frames: np.ndarray | None = None, frame_step: int | None = None) -> list[ClockSegment]:
    """Lay a track's observation times on a regular clock of ``rate`` frames per second.

    Rows follow ``times[0] + k / rate``, through the last observation's row. Where the
    observations lie on that grid (every one within :data:`~wbcap.smooth.track.GRID_JITTER` of a period of a row: constant-rate footage,
    timestamps rounded to milliseconds or not), a row with an observation within half a period
    is *valid* and that observation, copied exactly (each observation on one row at most). Where
    they do not (variable-frame-rate footage on its average rate), rows are resampled: a row is
    the track at the row's own time, interpolated between the observations before and after
    it (an observation on the row is copied exactly; the last row is the first one at or after
    the last observation, and holds its pose, not valid unless on it), and it is *valid* when
    those two are consecutive processed frames in which the person was seen (none missed between) at most two
    periods apart, or when one of them is within :data:`~wbcap.smooth.track.GRID_JITTER` of a
    period of the row. So a valid row is measured at its own time either way: snapping a
    variable-rate frame to its nearest row had put poses up to half a period off their time
    (a user trial: ±32 ms on a 15 fps clock). Other rows are filled (interpolated) and not valid;
    where the person was missed for more than ``max_gap`` seconds the track is split into
    separate segments.

    The time *missed* between two consecutive observations is the time between the clock rows
    they land on less one period: ``(round((t[i+1] - t[i]) * rate) - 1) / rate``, the rows that
    have to be filled, in seconds. So two observations one period apart (consecutive processed
    frames) missed nothing, and a track seen in every processed frame is never split, whatever
    ``max_gap`` (also 0); timestamp jitter below half a period changes nothing. With
    ``frames``, a pair of observations whose frame indices differ by the track's frame step
    missed nothing either, however far apart in time: variable-frame-rate footage is laid on its
    average rate, so a stretch slower than that leaves rows no frame is near. The step is the
    smallest frame-index difference of a pair that missed no row (``--every`` for a track seen
    twice in a row); a track never seen in two consecutive rows has none. A pair whose missed time
    is also over :data:`SOURCE_PAUSE_S` (the source itself stopped) splits the track all the same.

    Args:
        times: ``(T,)`` observation times in seconds, strictly increasing, ``T >= 1``.
        rate: frames per second of the output clock, ``> 0``.
        max_gap: longest missed time (seconds, see above) that is filled; ``>= 0``.
        frames: ``(T,)`` source frame indices of the observations, increasing, or None.
        frame_step: the step between processed frames (``--every``; with ``frames``): pairs
            that far apart missed nothing. Default: the track's own step as above (a track seen
            only in a stretch slower than ``rate`` has none: give it).

    Returns:
        Segments in time order (one when nothing is split).

    Raises:
        ValueError: empty or non-increasing ``times``, ``frames`` of another length, or ``rate <= 0``.
    """
    t = np.asarray(times, np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty 1-D array, got shape {t.shape}")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("times must be strictly increasing")
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if frames is not None and np.shape(frames) != t.shape:
        raise ValueError(f"frames must have the shape of times {t.shape}, got {np.shape(frames)}")
    period = 1.0 / rate
    cuts, step = _cuts_and_step(t, rate, max_gap, frames, frame_step)
    segments = []
    for idx in np.split(np.arange(t.size), cuts):
        ts = t[idx]
        cells = (ts - ts[0]) * rate
        on_grid = float(np.abs(cells - np.round(cells)).max()) <= GRID_JITTER
        # on the grid, the last observation's row; resampled, the first row at or after the last
        # observation (which holds its pose: with the last row before it, `wbcap view` hid the
        # person at the track's last frames, a review)
        n_rows = int(np.floor(cells[-1] + 0.5) if on_grid else np.ceil(cells[-1] - 1e-9)) + 1
        grid = ts[0] + np.arange(n_rows) * period
        if on_grid:
            lo, hi, weight, valid = _snapped_rows(ts, grid, period)
        else:
            seg_frames = None if frames is None else np.asarray(frames, np.int64)[idx]
            lo, hi, weight, valid = _resampled_rows(ts, grid, period, seg_frames, step)
        segments.append(ClockSegment(grid, idx[lo], idx[hi], weight, valid))
    return segments


def clock_cuts(times: np.ndarray, rate: float, max_gap: float, frames: np.ndarray | None = None,
               frame_step: int | None = None) -> np.ndarray:
    """Where :func:`regular_clock` splits a track into segments (written as separate files, and
    smoothed apart: :func:`wbcap.smooth.track.smoothed_track`): ``(S,)`` int64 indices into
    ``times`` of the observations that begin a segment after the first, increasing (empty when
    nothing is split). Arguments as :func:`regular_clock`'s (not checked here)."""
    return _cuts_and_step(np.asarray(times, np.float64), rate, max_gap, frames, frame_step)[0]


def _cuts_and_step(t: np.ndarray, rate: float, max_gap: float, frames: np.ndarray | None,
                   frame_step: int | None) -> tuple[np.ndarray, int | None]:
    """:func:`clock_cuts`'s indices, and the frame step :func:`regular_clock` takes pairs that
    far apart to have missed nothing by (None without ``frames``, or where it has none)."""
    period = 1.0 / rate
    missed_rows = np.maximum(np.floor(np.diff(t) * rate + 0.5) - 1, 0)
    cut = missed_rows * period > max_gap + 1e-9
    step = steps = None  # (the frame step: pairs that far apart missed nothing, for the cuts and `valid`)
    if frames is not None:
        steps = np.diff(np.asarray(frames, np.int64))
        seen_in_a_row = steps[missed_rows == 0]
        step = frame_step if frame_step is not None else (int(seen_in_a_row.min()) if seen_in_a_row.size else None)
    if step is not None and cut.any():
        cut &= (steps > step) | (missed_rows * period > SOURCE_PAUSE_S + 1e-9)
    return (np.flatnonzero(cut) + 1).astype(np.int64), step


def _snapped_rows(ts: np.ndarray, grid: np.ndarray, period: float) -> tuple[np.ndarray, ...]:
    """Rows of observations on the grid (:func:`regular_clock`): ``lo, hi, weight, valid``."""
    hi = np.clip(np.searchsorted(ts, grid, side="left"), 0, ts.size - 1)
    lo = np.clip(hi - 1, 0, ts.size - 1)
    # nearest observation to each row
    nearest = np.where(np.abs(ts[hi] - grid) <= np.abs(ts[lo] - grid), hi, lo)
    valid = np.abs(ts[nearest] - grid) <= 0.5 * period + 1e-9
    # one observation on at most one row: the closest one keeps it
    order = np.argsort(np.abs(ts[nearest] - grid), kind="stable")
    taken = np.zeros(ts.size, bool)
    for k in order:
        if valid[k]:
            if taken[nearest[k]]:
                valid[k] = False
            else:
                taken[nearest[k]] = True
    span = ts[hi] - ts[lo]
    weight = np.where(span > 0, (grid - ts[lo]) / np.where(span > 0, span, 1.0), 0.0)
    weight = np.clip(weight, 0.0, 1.0)
    lo = np.where(valid, nearest, lo)
    hi = np.where(valid, nearest, hi)
    weight = np.where(valid, 0.0, weight)
    return lo, hi, weight, valid


def _resampled_rows(ts: np.ndarray, grid: np.ndarray, period: float, frames: np.ndarray | None,
                    step: int | None) -> tuple[np.ndarray, ...]:
    """Rows of observations off the grid (variable frame rate, :func:`regular_clock`): each row
    interpolated at its own time; ``lo, hi, weight, valid``."""
    after = np.clip(np.searchsorted(ts, grid, side="left"), 0, ts.size - 1)
    before = np.clip(after - 1, 0, ts.size - 1)
    nearest = np.where(np.abs(ts[after] - grid) <= np.abs(ts[before] - grid), after, before)
    # (either neighbour: the rows k * period drift past a frame time by float rounding, 0.24 + 5e-17
    # s, and the frame they fall on was then taken for the one before a gap: a user trial)
    on_row = np.abs(ts[nearest] - grid) <= 1e-9 * period  # (the row count's tolerance, in periods)
    lo = np.where(on_row, nearest, np.where(ts[after] >= grid, before, after))
    hi = np.where(on_row, nearest, after)
    # the last row, less than a period after the last observation, holds its pose (filled)
    beyond = (grid > ts[-1]) & ~on_row
    lo, hi = np.where(beyond, ts.size - 1, lo), np.where(beyond, ts.size - 1, hi)
    span = ts[hi] - ts[lo]
    weight = np.clip(np.where(span > 0, (grid - ts[lo]) / np.where(span > 0, span, 1.0), 0.0), 0.0, 1.0)
    seen_between = np.ones(grid.size, bool) if frames is None or step is None else (frames[hi] - frames[lo] <= step)
    # measured: on a frame, between two frames at most two periods apart with none missed, or
    # within a quarter period of a frame (before a gap, a row 13 ms after a frame was filled: the trial)
    near = (np.abs(ts[nearest] - grid) <= GRID_JITTER * period) & ~beyond
    valid = (on_row & ~beyond) | ((hi == lo + 1) & (span <= 2 * period + 1e-9) & seen_between) | near
    return lo, hi, weight, valid


def slerp_rows(rotvecs: np.ndarray, seg: ClockSegment) -> np.ndarray:
    """Rotations on a segment's rows: ``(T, J, 3)`` axis-angle -> ``(N, J, 3)`` axis-angle.

    Rows with ``lo == hi`` are copied exactly; the others are the spherical interpolation
    ``R_lo * exp(w * log(R_lo^-1 R_hi))`` per joint (scipy's rotations).
    """
    from scipy.spatial.transform import Rotation

    rv = np.asarray(rotvecs, np.float64)
    out = rv[seg.lo].copy()
    fill = np.flatnonzero(seg.lo != seg.hi)
    if fill.size:
        j = rv.shape[1]
        ra = Rotation.from_rotvec(rv[seg.lo[fill]].reshape(-1, 3))
        rb = Rotation.from_rotvec(rv[seg.hi[fill]].reshape(-1, 3))
        w = np.repeat(seg.weight[fill], j)[:, None]
        rel = (ra.inv() * rb).as_rotvec()
        out[fill] = (ra * Rotation.from_rotvec(w * rel)).as_rotvec().reshape(fill.size, j, 3)
    return out.astype(rotvecs.dtype, copy=False)


def lerp_rows(x: np.ndarray, seg: ClockSegment) -> np.ndarray:
    """Linear interpolation of ``(T, D)`` values onto a segment's rows -> ``(N, D)``."""
    x = np.asarray(x)
    w = seg.weight[:, None]
    out = (1.0 - w) * x[seg.lo].astype(np.float64) + w * x[seg.hi].astype(np.float64)
    same = seg.lo == seg.hi
    out[same] = x[seg.lo[same]]
    return out.astype(x.dtype, copy=False)


def camera_to_world(
    global_orient: np.ndarray, transl: np.ndarray, rest_root: np.ndarray, rotation: np.ndarray = AMASS_FROM_OPENCV,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-express SMPL-X root rotation and translation in a moved frame, ``x' = M x + p``:
    ``global_orient' = M R``, ``transl' = M (J0 + transl) - J0 + p`` about the rest pelvis ``J0``
    (why: :func:`wbcap.camera.rotate_root`, which this calls in float64).

    Args:
        global_orient: ``(T, 3)`` axis-angle, radians, camera frame.
        transl: ``(T, 3)`` metres, camera frame.
        rest_root: ``(3,)`` or ``(T, 3)`` rest pelvis of the shaped body, metres.
        rotation: ``(3, 3)`` rotation ``M`` (default: OpenCV camera -> z-up world).
        offset: ``(3,)`` ``p``, metres (None: no translation; the camera stays at the origin).

    Returns:
        ``(global_orient', transl')`` with the input dtypes.
    """
    go, tr = rotate_root_np(global_orient, transl, rest_root, rotation)
    if offset is None:
        return go, tr
    return go, (np.asarray(tr, np.float64) + np.asarray(offset, np.float64)).astype(np.asarray(transl).dtype)


def amass_arrays(
    *,
    global_orient: np.ndarray,
    body_pose: np.ndarray,
    jaw_pose: np.ndarray,
    left_hand_pose: np.ndarray,
    right_hand_pose: np.ndarray,
    transl: np.ndarray,
    betas: np.ndarray,
    expression: np.ndarray,
    hands_mean: tuple[np.ndarray, np.ndarray],
    rest_root: np.ndarray,
    fps: float,
    times: np.ndarray,
    frame_indices: np.ndarray,
    valid: np.ndarray,
    gender: str,
    leye_pose: np.ndarray | None = None,
    reye_pose: np.ndarray | None = None,
    world: WorldFrame | None = None,
    contact: np.ndarray | None = None,
    camera: ImageCamera | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of one AMASS file from camera-frame SMPL-X parameters on a regular clock.

    Args:
        global_orient, jaw_pose: ``(T, 3)``; body_pose ``(T, 63)``; left/right_hand_pose
            ``(T, 45)`` *relative to the hand mean* (``flat_hand_mean=False``); all axis-angle,
            radians, OpenCV camera frame for the root.
        transl: ``(T, 3)`` metres, camera frame (SMPL-X ``transl``).
        betas: ``(B,)`` one shape; expression ``(T, E)``.
        hands_mean: the model's ``(hands_meanl (45,), hands_meanr (45,))``.
        rest_root: ``(3,)`` rest pelvis of the shaped body (``SMPLXLayer.rest_root``), metres.
        fps: rows per second; times ``(T,)`` s; frame_indices ``(T,)`` int (-1 = filled);
        valid: ``(T,)`` bool; gender: ``neutral | male | female``.
        leye_pose, reye_pose: ``(T, 3)``, zeros when None.
        world: the ground's world (:class:`wbcap.world.estimate.WorldFrame`; the parameters are
            the corrected camera-frame ones), or None for the camera's own z-up frame.
        contact: ``(T, 2)`` bool planted (left, right) foot (written with ``world`` only).
        camera: the source camera's intrinsics, written as ``camera_focal (2,)`` and
            ``camera_princpt (2,)`` float64 pixels and ``camera_image_size (2,)`` int64 ``[W, H]``
            (a researcher's projection needs them; None: not written).

    Returns:
        ``{key: array}`` as listed in the module docstring.
    """
    t = int(np.asarray(global_orient).shape[0])
    zeros = np.zeros((t, 3), np.float32)
    rotation = AMASS_FROM_OPENCV if world is None else np.asarray(world.world_from_camera, np.float64)
    position = np.zeros(3) if world is None else np.asarray(world.camera_position, np.float64)
    go_w, tr_w = camera_to_world(global_orient, transl, rest_root, rotation, position)
    lh = np.asarray(left_hand_pose, np.float64) + np.asarray(hands_mean[0], np.float64).reshape(1, 45)
    rh = np.asarray(right_hand_pose, np.float64) + np.asarray(hands_mean[1], np.float64).reshape(1, 45)
    leye = zeros if leye_pose is None else leye_pose
    reye = zeros if reye_pose is None else reye_pose
    poses = np.concatenate([go_w, body_pose, jaw_pose, leye, reye, lh, rh], axis=1).astype(np.float32)
    betas = np.asarray(betas, np.float32).reshape(-1)
    arrays = {
        "poses": poses,
        "trans": np.asarray(tr_w, np.float32),
        "betas": betas,
        "num_betas": np.array(betas.size),
        "expression": np.asarray(expression, np.float32),
        "gender": np.array(gender),
        "surface_model_type": np.array("smplx"),
        "mocap_framerate": np.array(float(fps)),
        "mocap_frame_rate": np.array(float(fps)),
        "mocap_time_length": np.array(float(t / fps)),
        "root_orient": poses[:, POSE_SLICES["global_orient"]],
        "pose_body": poses[:, POSE_SLICES["body_pose"]],
        "pose_jaw": poses[:, POSE_SLICES["jaw_pose"]],
        "pose_eye": poses[:, POSE_SLICES["leye_pose"].start:POSE_SLICES["reye_pose"].stop],
        "pose_hand": poses[:, POSE_SLICES["left_hand_pose"].start:POSE_SLICES["right_hand_pose"].stop],
        "valid": np.asarray(valid, bool),
        "times": np.asarray(times, np.float64),
        "frame_indices": np.asarray(frame_indices, np.int64),
        "up_axis": np.array("z"),
        "flat_hand_mean": np.array(True),
        "frame": np.array("camera" if world is None else "world"),
        "camera_rotation": np.array(rotation, np.float64),
        "camera_position": np.array(position, np.float64),
    }
    if camera is not None:
        arrays["camera_focal"] = np.array(camera.focal, np.float64)
        arrays["camera_princpt"] = np.array(camera.princpt, np.float64)
        arrays["camera_image_size"] = np.array(camera.image_size, np.int64)
    if world is not None:
        arrays["ground_from"] = np.array(world.ground_from)
    if world is not None and contact is not None:
        arrays["contact"] = np.asarray(contact, bool).reshape(t, 2)
    return arrays


#: The arrays :func:`read_track_npz` needs of a track file.
TRACK_NPZ_KEYS = ("poses", "trans", "betas", "expression", "times", "valid", "frame_indices", "mocap_framerate",
                  "camera_rotation", "camera_position")


def read_track_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A wbcap track file's arrays (:func:`amass_arrays`, written by :func:`write_amass_npz`),
    checked: every key of :data:`TRACK_NPZ_KEYS`, their shapes (``T`` rows, ``T >= 1``), finite
    values, the regular clock (``times[0] + k / mocap_framerate``, to 1 µs), ``contact (T, 2)``
    where present. Read without pickles.

    Raises:
        ValueError: one sentence saying what is wrong (the caller names the file); a file that
            cannot be read at all (cut short, emptied, not a zip) is one too.
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"not a readable track file ({exc})") from None
    missing = [k for k in TRACK_NPZ_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"not a wbcap track file (no {', '.join(missing)})")
    try:
        t = len(arrays["times"])
        fps = float(arrays["mocap_framerate"])
        ok = (t > 0 and arrays["poses"].shape == (t, 165) and arrays["trans"].shape == (t, 3)
              and arrays["valid"].shape == (t,) and arrays["frame_indices"].shape == (t,)
              and arrays["betas"].ndim == 1 and arrays["expression"].ndim == 2 and arrays["expression"].shape[0] == t
              and arrays["camera_rotation"].shape == (3, 3) and arrays["camera_position"].shape == (3,)
              and np.isfinite(fps) and fps > 0 and ("contact" not in arrays or arrays["contact"].shape == (t, 2))
              and all(np.isfinite(np.asarray(arrays[k], np.float64)).all() for k in
                      ("poses", "trans", "betas", "expression", "times", "camera_rotation", "camera_position")))
        times = np.asarray(arrays["times"], np.float64)
        regular = ok and bool(np.all(np.abs(times - times[0] - np.arange(t) / fps) <= 1e-6))
    except (TypeError, ValueError, IndexError, OverflowError):
        ok = regular = False
    if not ok:
        raise ValueError("a damaged track file (its arrays' shapes or values)")
    if not regular:
        raise ValueError("a damaged track file (its times are not on its regular clock)")
    return arrays


def npz_camera(arrays: dict[str, np.ndarray]) -> ImageCamera | None:
    """The source camera's intrinsics a track file records (``camera_focal``, ``camera_princpt``,
    ``camera_image_size``), or None where it records none or damaged ones."""
    from wbcap.camera import camera_from_dict

    if not all(k in arrays for k in ("camera_focal", "camera_princpt", "camera_image_size")):
        return None
    try:
        return camera_from_dict({"focal": np.asarray(arrays["camera_focal"]).tolist(),
                                 "princpt": np.asarray(arrays["camera_princpt"]).tolist(),
                                 "image_size": np.asarray(arrays["camera_image_size"]).tolist()})
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def write_amass_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (from :func:`amass_arrays`) as an uncompressed ``.npz``, atomically.

    No object arrays: the file loads with ``np.load(path)`` (``allow_pickle=False``).
    """
    from wbcap.atomic import atomic_write_bytes, final_path

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    rows = len(arrays["trans"])
    logger.info("wrote %s (%d row%s)", final_path(path), rows, "" if rows == 1 else "s")
    return Path(path)

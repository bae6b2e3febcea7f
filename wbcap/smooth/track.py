"""One tracked person of ``wbcap run`` moved into the video's camera and smoothed (pass 2, step 2).

Each person-frame's ``transl`` (Hand4Whole's ``cam_trans``) comes out of the network in its own box's camera;
:func:`smoothed_track` moves it into the one camera of the whole video
(:func:`wbcap.camera.shared_camera_translation`) and smooths the track over time
(:func:`wbcap.smooth.sequence.smooth_track`), giving a :class:`SmoothedTrack` of arrays that the
writers of :mod:`wbcap.export` read. :func:`clock_rate` picks the rate of the AMASS files' clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from wbcap.io.param_names import FILE_KEYS, NETWORK_FILE_KEYS
from wbcap.track.collect import Track

if TYPE_CHECKING:
    from wbcap.smooth.sequence import SmoothConfig

#: The rotation parameters of a person (axis-angle, SMPL-X's names) and their number of joints.
ROT_KEYS = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose")
ROT_SIZES = (1, 21, 15, 15, 1)


@dataclass
class SmoothedTrack:
    """A track in the video camera, smoothed: N person-frames in frame order (float32 unless said).

    Rotations are axis-angle, radians, hand poses relative to the hand mean (Hand4Whole's
    ``flat_hand_mean=False``); translations metres in the OpenCV camera frame of the video
    camera (x right, y down, z forward).
    """

    frame: np.ndarray  # (N,) int64 source frame indices
    time: np.ndarray  # (N,) float64 seconds
    box: np.ndarray  # (N, 4) detected box (x, y, w, h), image pixels
    global_orient: np.ndarray  # (N, 3)
    body_pose: np.ndarray  # (N, 63)
    left_hand_pose: np.ndarray  # (N, 45)
    right_hand_pose: np.ndarray  # (N, 45)
    jaw_pose: np.ndarray  # (N, 3)
    expression: np.ndarray  # (N, E) expression coefficients
    transl: np.ndarray  # (N, 3) SMPL-X translation, metres
    betas: np.ndarray  # (B,) the track's betas (one shape per track)
    score: np.ndarray | None = None  # (N,) float64 the detector's score of each box; None: not recorded (older files)
    # (N, 3, 4) float64 the network's left-hand, right-hand and face boxes (x, y, w, h), image pixels, as predicted
    # in each frame (not smoothed; float64, as recorded: x + w is the box's x2); NaN in a row that has none
    # recorded (frames of a run made before 2026-12-07); None: no row has them
    part_boxes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def param(self, name: str) -> np.ndarray:
        """``(N, k)`` rows of a parameter by its SMPL-X name (one of :data:`ROT_KEYS`,
        ``expression``, ``transl``, ``betas`` (repeated per row), ``leye_pose``/``reye_pose``
        (zeros: not estimated))."""
        if name == "betas":
            return np.repeat(self.betas[None], len(self), 0)
        if name in ("leye_pose", "reye_pose"):
            return np.zeros((len(self), 3), np.float32)
        return getattr(self, name)


#: How far, in frames of the nominal rate, a processed frame's time may lie from the nominal
#: grid through the first one and still count as on it (:func:`clock_rate`): Matroska and WebM
#: store times in whole milliseconds, up to 0.5 ms (0.015 frame at 30 fps, 0.12 at 240 fps) off.
GRID_JITTER = 0.25


def clock_rate(times: list[float], nominal: float, base: float | None = None, step: int = 1) -> float:
    """Rows per second of the AMASS clock: the ``base`` rate (the stream's base rate,
    :attr:`wbcap.io.video_probe.VideoInfo.base_fps_fraction`) / ``step`` (``--every``) when the
    processed frames keep to its grid, else the nominal rate (source rate / ``--every``) when
    they follow it, else their average rate (variable-frame-rate footage, whose container may
    declare a nominal rate the frames do not have).

    The source rate is the container's average, which counts a constant-rate file's dropped
    frames and holes: 1 of 45 frames dropped from a 30 fps MP4 gave 29.33 fps, and a 1.5 s hole
    in 4.5 s of 10 fps 6.74 fps, every row of the files interpolated between frames and marked
    valid, the drops unseen (a biomechanics trial); 1 of 301 gave 29.90, close enough to 30 for
    the median rule below (a break-it trial), so the base rate is tried first. Its base rate is
    the grid's (30, 10). The frames keep to it when every time lies on its grid
    (:data:`GRID_JITTER`) and at least nine in ten of their intervals are ``step`` periods of it
    (drops and holes are rare, however long; with ``--every 2`` a drop shifts the frames after it
    by one period, so the source grid is the one checked; three frames or fewer: one interval of
    ``step`` periods, the other of one or two steps): a timestamp unit that FFmpeg reports
    as the base rate of variable-rate footage (1000 for Matroska, 90000) does not (its intervals
    are many periods), nor footage at 30 fps, then 10 (its intervals are one and three periods).

    They follow the nominal rate when their median interval is within 1 % of it, or when every
    time lies within :data:`GRID_JITTER` frame of its grid through the first and at most a tenth
    of that grid's frames are missing (a drop to a third of the rate is not a few dropped frames:
    it is taken for variable-rate footage, as the median does): a constant 30 fps Matroska file's
    millisecond times (intervals of 33 and 34 ms, median 1-2 % off) gave 29.999 fps, a rate every
    export then carried (a user trial). Three frames or fewer on the grid also follow it: one or
    two intervals cannot tell a gap from a lower rate (two frames 3.2 s apart across a hole in a 5
    fps selection gave 0.3125 fps and no split: a break-it trial).

    ``times``: seconds, increasing."""
    if len(times) < 2 or times[-1] <= times[0]:
        return nominal
    t = np.asarray(times, np.float64)
    if base is not None and base > 0 and _keep_to(t, base, step):
        return base / step
    if _follow(t, nominal):
        return nominal
    return (len(times) - 1) / (times[-1] - times[0])


def _follow(t: np.ndarray, rate: float) -> bool:
    """Whether the frame times ``t`` (seconds, increasing, two or more) follow the nominal
    ``rate`` (:func:`clock_rate`)."""
    median_rate = 1.0 / float(np.median(np.diff(t)))
    if abs(median_rate - rate) <= 0.01 * rate:
        return True
    cells = (t - t[0]) * rate
    return float(np.abs(cells - np.round(cells)).max()) <= GRID_JITTER and (
        len(t) <= 3 or len(t) >= 0.9 * (round(cells[-1]) + 1))


def _keep_to(t: np.ndarray, rate: float, step: int = 1) -> bool:
    """Whether the frame times ``t`` (seconds, increasing, two or more) keep to the base
    ``rate``: on its grid, nine in ten intervals ``step`` periods (:func:`clock_rate`)."""
    cells = (t - t[0]) * rate
    if float(np.abs(cells - np.round(cells)).max()) > GRID_JITTER:
        return False
    periods = np.diff(np.round(cells))
    if len(t) <= 3:  # (two intervals cannot be nine in ten: one of them a drop, as a short selection has)
        return bool(periods.min() == step and np.isin(periods, (step, 2 * step)).all())
    return float(np.mean(periods == step)) >= 0.9


def smoothed_track(
    track: Track, config: SmoothConfig, body: Any, device: Any, focal: float, princpt: tuple[float, float],
    pieces: Sequence[int] = (),
) -> SmoothedTrack:
    """One track's parameters moved into the video camera and smoothed, each of its ``pieces``
    on its own (:func:`wbcap.smooth.sequence.smooth_track`; the indices of the rows that begin
    the segments its animation files split it into, :func:`wbcap.export.amass.clock_cuts`).

    Each person-frame's ``transl`` (Hand4Whole's ``cam_trans``) is in its own box's camera (``track.focal`` (N,),
    ``track.princpt`` (N, 2), pixels); :func:`wbcap.camera.shared_camera_translation` moves it so
    the pelvis keeps its pixel and apparent size under the video camera (``focal``, ``princpt``,
    pixels). ``body``: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` (its rest pelvis), on
    ``device``.
    """
    import torch

    from wbcap.camera import shared_camera_translation_np
    from wbcap.smooth.sequence import smooth_track

    params = {name: np.asarray([p[key] for p in track.params], np.float32) for name, key in FILE_KEYS.items()
              if key in NETWORK_FILE_KEYS}
    with torch.no_grad():
        rest = body.rest_root(torch.as_tensor(params["betas"], device=device)).cpu().numpy()
    trans = shared_camera_translation_np(
        params["transl"], rest, np.asarray(track.focal), np.asarray(track.princpt), focal, princpt
    )
    poses = np.concatenate([params[k].reshape(len(trans), n, 3) for k, n in zip(ROT_KEYS, ROT_SIZES)], 1)
    t = np.asarray(track.time, np.float64)
    poses_s, trans_s, betas_s, extras = smooth_track(poses, trans, params["betas"], t, config,
                                                     extras={"expression": params["expression"]}, pieces=pieces)
    split = np.cumsum(ROT_SIZES)[:-1]
    rotations = {k: part.reshape(len(t), -1).astype(np.float32) for k, part in zip(ROT_KEYS, np.split(poses_s, split, axis=1))}
    return SmoothedTrack(
        frame=np.asarray(track.frame, np.int64),
        time=t,
        box=np.asarray(track.box, np.float32),
        **rotations,
        expression=np.asarray(extras["expression"], np.float32),
        transl=np.asarray(trans_s, np.float32),
        betas=np.asarray(betas_s, np.float32),
        score=np.asarray(track.score, np.float64),  # (as the raw records hold it: 0.35 stays 0.35, a review)
        part_boxes=part_box_rows(track.part_boxes),
    )


def part_box_rows(rows: Sequence[Sequence[Sequence[float]] | None]) -> np.ndarray | None:
    """A track's rows of hand and face boxes (each ``[lhand, rhand, face]`` ``(x, y, w, h)``, or
    None where not recorded) as :attr:`SmoothedTrack.part_boxes`: ``(N, 3, 4)`` float64, NaN rows
    where None; None where no row has them."""
    if all(row is None for row in rows):
        return None
    return np.asarray([np.full((3, 4), np.nan) if row is None else row for row in rows], np.float64)


def rows_by_frame(tracks: dict[int, SmoothedTrack]) -> dict[int, list[tuple[int, int]]]:
    """``{frame index: [(track id, row in that track), ...]}`` for every person-frame of
    ``tracks`` (in the order of ``tracks``, then rows)."""
    by_frame: dict[int, list[tuple[int, int]]] = {}
    for tid, tr in tracks.items():
        for row, f in enumerate(tr.frame):
            by_frame.setdefault(int(f), []).append((tid, row))
    return by_frame

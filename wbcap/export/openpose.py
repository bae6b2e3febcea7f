"""2D keypoints in OpenPose's JSON (``--write_json``'s files): what 2D tools take — SMPLify-X,
EasyMocap, gesture and HCI annotation tools — made from the
SMPL-X bodies wbcap estimated, projected into the picture.

One file per picture (``wbcap run --openpose``: ``openpose/<video stem>_<frame:012d>_keypoints.json``
for every processed frame, ``<frame>`` the source's frame index as in ``params.jsonl``, people or
none; an image sequence's ``<image stem>_keypoints.json``, as OpenPose's ``--image_dir`` names
them; ``wbcap image --openpose``: ``person_<k>/output_keypoints.json``, that person alone)::

    {"version": 1.3, "people": [{"person_id": [id], "pose_keypoints_2d": [x0, y0, c0, x1, ...],
      "face_keypoints_2d": [...], "hand_left_keypoints_2d": [...], "hand_right_keypoints_2d": [...],
      "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
      "hand_right_keypoints_3d": []}]}

* ``pose_keypoints_2d``: BODY_25 (:data:`BODY_25`): nose, neck, right shoulder, elbow, wrist,
  left ones, mid hip, right hip, knee, ankle, left ones, right eye, left eye, right ear, left
  ear, left big toe, small toe, heel, the right ones. SMPL-X's joints of those names: the neck
  and mid hip are SMPL-X's ``neck`` and ``pelvis`` joints (as SMPLify-X maps them), the face
  and feet points its vertex joints (``smplx``'s ``vertex_ids``).
* ``hand_left_keypoints_2d``, ``hand_right_keypoints_2d``: 21 each (:data:`HAND_LEFT_21`, :data:`HAND_RIGHT_21`): the
  wrist, then thumb, index, middle, ring and pinky, each from its base to its tip (SMPL-X's
  three finger joints and the finger tip vertex). Left and right are the person's own.
* ``face_keypoints_2d``: 70 (:data:`FACE_70`): the 68 points of the iBUG 300-W layout
  OpenPose uses (17 along the jaw from the person's right, eyebrows, nose, eyes, outer and inner
  lips: SMPL-X's face contour and its 51 landmarks) and the two pupils (right, left: SMPL-X's
  eye vertex joints).
* ``person_id``: the track id (``params.jsonl``'s ``track``), ``[k]`` for a photo's person k.
* Pixels of the picture as wbcap reads it (upright, as ``params.jsonl``'s boxes), x right, y
  down, in **OpenPose's convention: the top-left pixel's centre at (0, 0)** (its
  ``--keypoint_scale`` 3 maps 0 .. W - 1 to 0 .. 1, ``src/openpose/core/keypointScaler.cpp``),
  as OpenCV's and a calibration's camera matrix take them: 0.5 less than wbcap's other files,
  which put that pixel's corner at 0 (:data:`PIXEL_CENTRE`); with ``wbcap run --calibration``,
  the source's own (distorted) pixels (``write_video_keypoints``' ``lens``).
* ``c``: wbcap estimates a whole body, hidden parts too, without a confidence per keypoint: ``c``
  is 1 for a keypoint inside the picture, 0 for one outside it (its coordinates kept) and for
  one behind the camera (coordinates 0, as OpenPose writes a keypoint it did not find). Weigh
  people by ``params.jsonl``'s ``score`` (the detector's).
* The 3D lists are empty, as OpenPose writes them without ``--3d``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from wbcap.body.joints import JOINT_IDX, SMPLX_OUTPUT_JOINT_NAMES

log = logging.getLogger(__name__)

#: Where OpenPose's pixel coordinates put the top-left pixel's centre (0) less where wbcap's put
#: it (0.5): the files' coordinates are wbcap's minus this (a user trial: triangulating with the
#: calibration's matrix, keypoints were 0.5 px off OpenCV's ``projectPoints``).
PIXEL_CENTRE = 0.5

__all__ = [
    "ALL_IDS",
    "ALL_IN_JOINT_SET",
    "BODY_25",
    "FACE_70",
    "HAND_LEFT_21",
    "HAND_RIGHT_21",
    "KEYPOINTS",
    "OPENPOSE_VERSION",
    "PIXEL_CENTRE",
    "frame_file_name",
    "keypoint_file_names",
    "keypoints_record",
    "keypoints_stem",
    "people_document",
    "person_keypoints",
    "write_keypoints_json",
    "write_video_keypoints",
]

#: ``version`` of the files: OpenPose 1.3's layout (``person_id`` and the 3D lists).
OPENPOSE_VERSION = 1.3


def _ids(names: Iterable[str]) -> tuple[int, ...]:
    """Indices of ``names`` among SMPL-X's 144 output joints (:data:`SMPLX_OUTPUT_JOINT_NAMES`)."""
    return tuple(SMPLX_OUTPUT_JOINT_NAMES.index(n) for n in names)


#: OpenPose's BODY_25 order, as indices into SMPL-X's 144 output joints.
BODY_25: tuple[int, ...] = _ids((
    "Nose", "Neck", "R_Shoulder", "R_Elbow", "R_Wrist", "L_Shoulder", "L_Elbow", "L_Wrist", "Pelvis",
    "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "R_Eye", "L_Eye", "R_Ear", "L_Ear",
    "L_Big_toe", "L_Small_toe", "L_Heel", "R_Big_toe", "R_Small_toe", "R_Heel",
))


def _hand(s: str) -> tuple[int, ...]:
    """OpenPose's hand order (wrist; thumb, index, middle, ring, pinky from base to tip) of side
    ``s`` (``"L"``, ``"R"``: the person's own), indices into the 144 output joints."""
    return _ids((f"{s}_Wrist", *(f"{s}_{finger}_{k}" for finger in ("Thumb", "Index", "Middle", "Ring", "Pinky")
                                 for k in range(1, 5))))


#: ``hand_left_keypoints_2d``'s and ``hand_right_keypoints_2d``'s 21 points, indices into the 144
#: output joints (:data:`wbcap.body.joints.HAND_21` gives the same points in the 137-joint set).
HAND_LEFT_21: tuple[int, ...] = _hand("L")
HAND_RIGHT_21: tuple[int, ...] = _hand("R")
#: OpenPose's 70 face points: the iBUG 68 (jaw contour from the person's right, then SMPL-X's 51
#: landmarks, which follow iBUG's points 17-67) and the right and left pupils.
FACE_70: tuple[int, ...] = _ids((*(f"Contour_{i}" for i in range(1, 18)), *(f"Landmark_{i}" for i in range(1, 52)),
                                 "R_Eye", "L_Eye"))
#: Each list of a person's record and its keypoints (indices into the 144 output joints).
KEYPOINTS: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "pose_keypoints_2d": BODY_25,
    "face_keypoints_2d": FACE_70,
    "hand_left_keypoints_2d": HAND_LEFT_21,
    "hand_right_keypoints_2d": HAND_RIGHT_21,
})
#: Every keypoint of a record, in :data:`KEYPOINTS`' order (137 indices into the 144 joints).
ALL_IDS: tuple[int, ...] = tuple(i for ids in KEYPOINTS.values() for i in ids)
#: :data:`ALL_IDS` as indices into the 137-joint set (:data:`wbcap.body.joints.JOINT_IDX`):
#: :class:`wbcap.pipeline.Person`'s ``joints_2d``.
ALL_IN_JOINT_SET: tuple[int, ...] = tuple(JOINT_IDX.index(i) for i in ALL_IDS)


def frame_file_name(stem: str, frame: int) -> str:
    """``<stem>_<frame:012d>_keypoints.json``: OpenPose's name of a video frame's file."""
    return f"{stem}_{int(frame):012d}_keypoints.json"


def keypoints_stem(source: str) -> str:
    """The ``<stem>`` of a run's frame files: the video's file name without its extension, as
    OpenPose names them (``clips/walk.mp4`` → ``walk``); for a folder of pictures its name, for
    a glob (``frames/*.png``) its folder's (``frames``)."""
    path = Path(str(source).rstrip("/"))
    while any(c in path.name for c in "*?["):  # (`se*/f*.png`, `seq/**/*.png`: the first folder without one)
        path = path.parent
    if path.name in ("", ".", ".."):  # (`..`, `*.png` in the working folder: the folder's own name)
        path = Path(os.path.abspath(path))
    stem = path.name if path.is_dir() or not path.suffix else path.stem
    return stem.lstrip(".") or "frames"  # (not a hidden file: `.._000000000000_keypoints.json`, a review)


def keypoints_record(points: np.ndarray, image_size: tuple[int, int], person_id: int,
                     in_front: np.ndarray | None = None) -> dict[str, Any]:
    """One person's entry of ``people``.

    Args:
        points: ``(137, 2)`` pixels, :data:`ALL_IDS`' keypoints in order (x right, y down), in
            wbcap's convention (the top-left pixel's corner at 0); written in OpenPose's (that
            pixel's centre at 0: 0.5 less, :data:`PIXEL_CENTRE`).
        image_size: ``(W, H)`` pixels of the picture.
        person_id: the track id (a photo's person index).
        in_front: ``(137,)`` bool, False for a keypoint behind the camera (None: all in front).

    Returns:
        The JSON-able record (module docstring: ``c`` 1 inside the picture, else 0).
    """
    p = np.asarray(points, np.float64).reshape(len(ALL_IDS), 2)
    # (a copy: `&=` wrote into the caller's array, a review)
    front = np.ones(len(p), bool) if in_front is None else np.array(in_front, bool)
    front &= np.isfinite(p).all(1)
    p = np.where(front[:, None], p, 0.0)
    w, h = image_size
    inside = front & (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
    p = np.where(front[:, None], p - PIXEL_CENTRE, 0.0)  # (OpenPose's convention; not found: 0, 0)
    table = np.concatenate([p, inside[:, None].astype(np.float64)], 1)
    record: dict[str, Any] = {"person_id": [int(person_id)]}
    start = 0
    for key, ids in KEYPOINTS.items():
        part = table[start:start + len(ids)]
        record[key] = [round(float(v), 3) for v in part.reshape(-1)]
        start += len(ids)
    for key in ("pose_keypoints_3d", "face_keypoints_3d", "hand_left_keypoints_3d", "hand_right_keypoints_3d"):
        record[key] = []
    return record


def people_document(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The file's object: ``{"version": 1.3, "people": records}``."""
    return {"version": OPENPOSE_VERSION, "people": list(records)}


def person_keypoints(person: Any, image_size: tuple[int, int], lens: Any = None) -> dict[str, Any]:
    """The record of a photo's person (a :class:`wbcap.pipeline.Person`: its ``joints_2d``, the
    137-joint set in the photo's pixels, and its ``joints``' depth in its own camera), ``person_id``
    its index; ``image_size`` ``(W, H)`` pixels. ``lens``: the
    :class:`~wbcap.io.undistort.Undistorter` the photo was read with (the points are then put
    back through the lens into the photo's own pixels, one where the lens model turns back as not
    found), or None."""
    ids = np.asarray(ALL_IN_JOINT_SET, np.int64)
    points = np.asarray(person.joints_2d, np.float64)[ids]
    front = np.asarray(person.joints)[ids, 2] > 1e-9
    if lens is not None:
        points, front = _through_lens(lens.calibration, lens.camera, points, front)
    return keypoints_record(points, image_size, int(person.index), front)


def _through_lens(calibration: Any, camera: Any, points: np.ndarray, front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(points, front)`` of the undistorted picture (``camera``, ``(..., 2)`` pixels) in the
    source's pixels through ``calibration``'s lens; a point where the lens model turns back
    (:meth:`~wbcap.camera.LensCalibration.beyond_fold`: a wide fisheye's far periphery, where two
    rays would share a pixel) no longer ``front`` (written as not found); one merely outside the
    picture keeps its place (``c`` 0), as without a calibration."""
    with np.errstate(all="ignore"):
        normalised = (points - np.asarray(camera.princpt)) / np.asarray(camera.focal)
        radius = np.hypot(normalised[..., 0], normalised[..., 1])
    front = front & np.isfinite(radius)
    if calibration.turns_back:
        front &= ~calibration.beyond_fold(normalised.reshape(-1, 2)).reshape(front.shape)
    return calibration.distort_pixels(camera, np.where(front[..., None], points, np.nan)), front


def write_keypoints_json(path: str | Path, records: Sequence[Mapping[str, Any]], written: Any = None) -> Path:
    """Write :func:`people_document` of ``records`` to ``path``, atomically. Returns the path.

    Args:
        written: called ``(name, temporary path)`` once the whole file is in its temporary, before
            it is moved into place (which keeps its inode, size and time): what records it as
            wbcap's (:func:`wbcap.io.run_folder.keypoint_written`) is never behind the file itself
            (a stop between the two had left a file of wbcap's unrecorded: a review); or None.
    """
    from wbcap.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "xb") as fh:
            fh.write((json.dumps(people_document(records), separators=(",", ":")) + "\n").encode())
        if written is not None:
            written(Path(path).name, tmp)
    return Path(path)


def keypoint_file_names(stem: str, frames: Iterable[int], image_names: Sequence[str] | None = None) -> dict[int, str]:
    """``{frame: file name}`` for every frame of ``frames`` (source frame indices):
    ``<stem>_<frame:012d>_keypoints.json``, or for an image sequence, ``image_names`` (each
    image's file stem, by frame index), ``<image stem>_keypoints.json``, as OpenPose's
    ``--image_dir`` names them and SMPLify-X and EasyMocap pair files with images (a consumer's
    trial), unless two stems are alike (then as a video's)."""
    frames = sorted({int(f) for f in frames})
    by_image = image_names is not None and len(set(image_names)) == len(image_names) and all(
        0 <= f < len(image_names) for f in frames)
    return {f: f"{image_names[f]}_keypoints.json" if by_image else frame_file_name(stem, f) for f in frames}


def write_video_keypoints(folder: Path, names: Mapping[int, str], tracks: Mapping[int, Any], body: Any,
                          device: Any, camera: Any, progress: Any = None, written: Any = None,
                          lens: Any = None) -> None:
    """``folder/<name>`` for every frame of ``names`` (:func:`keypoint_file_names`: the processed
    frames, people or none) with the people ``tracks`` hold there.

    Args:
        tracks: ``{track id: SmoothedTrack}`` (:mod:`wbcap.smooth.track`), posed with ``body``
            (the :class:`~wbcap.body.smplx_layer.SMPLXLayer`) on ``device``
            (:func:`wbcap.smooth.posing.pose_track`), in the video's
            :class:`~wbcap.camera.ImageCamera` ``camera`` (its projection and picture size).
        progress: called ``("keypoints", done, total)`` frames.
        written: called ``(name, temporary path)`` for each file before it is moved into place
            (:func:`write_keypoints_json`), or None.
        lens: the source's :class:`~wbcap.camera.LensCalibration` (at the picture's size) where
            ``camera`` is its undistorted camera (``wbcap run --calibration``): the keypoints are
            then written in the **source's** pixels, as OpenPose would find them in the video and
            as triangulation with that calibration takes them
            (:meth:`~wbcap.camera.LensCalibration.distort_pixels`); one where the lens model turns
            back, as one behind the camera (0, 0, 0).
    """
    from wbcap.smooth.posing import pose_track

    per_frame: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    ids = np.asarray(ALL_IDS, np.int64)
    for tid in sorted(tracks):
        track = tracks[tid]
        # (no vertices leave the device: a whole track's meshes were ~125 kB a row)
        joints = pose_track(body, track, device, vertex_ids=np.zeros(0, np.int64), joint_ids=ids).joints
        front = joints[..., 2] > 1e-9  # (R, 137): behind the camera a projection means nothing
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = camera.project(joints)  # (R, 137, 2)
        if lens is not None:
            xy, front = _through_lens(lens, camera, xy, front)
        xy = xy.astype(np.float32)  # float32: held for every person-frame
        for row, frame in enumerate(np.asarray(track.frame)):
            per_frame.setdefault(int(frame), []).append((int(tid), xy[row], front[row]))
    for done, (frame, name) in enumerate(sorted(names.items()), 1):
        records = [keypoints_record(xy, camera.image_size, tid, front) for tid, xy, front in per_frame.get(frame, [])]
        write_keypoints_json(folder / name, records, written)
        if progress is not None:
            progress("keypoints", done, len(names))
    log.info("wrote %d OpenPose keypoint files in %s", len(names), folder)

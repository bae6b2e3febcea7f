"""Write one person's motion in the animation formats users ask for: GLB, BVH, FBX, AMASS npz.

Every format is made from the same pieces: the AMASS arrays of
:func:`wbcap.export.track_npz.track_segments` (a track on a regular clock, short gaps filled,
split at long gaps), so ``track_3.glb``, ``track_3.bvh``, ``track_3.fbx`` and ``track_3.npz``
show the same motion on the same clock. The formats and their conventions:

* ``npz``: AMASS, z up (:mod:`wbcap.export.amass`).

Each file is in the camera's frame or, with ``wbcap run --world``, in the world of the estimated
ground (:mod:`wbcap.world`): the npz's ``frame`` key and the GLB's ``asset.extras.frame`` say
which; BVH has no place for it (see :mod:`wbcap.export.bvh`).
* ``glb``: glTF 2.0 binary, y up, metres, a skinned character with the source camera
  (:mod:`wbcap.export.gltf`); ``exact`` adds per-row morph targets so the mesh equals SMPL-X's.
* ``bvh``: y up, centimetres (:mod:`wbcap.export.bvh`).
* ``fbx``: made by Blender from the GLB, for Unity/Unreal (:mod:`wbcap.export.fbx`; needs
  ``pip install "wbcap[blender]"``).
* ``csv``: the 3D positions of 76 joints per row, z up, metres, in the npz's frame
  (:mod:`wbcap.export.joints_csv`).
* ``trc``: OpenSim's marker file of 32 keypoints (BODY_25, three per hand and the hips' middle,
  named as Pose2Sim's marker sets), y up, metres (:mod:`wbcap.export.opensim_trc`).
* ``c3d``: the same markers as a C3D file, z up, millimetres (:mod:`wbcap.export.c3d_file`).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.errors import InputError, WbcapError

log = logging.getLogger(__name__)

#: The formats (fbx is made from a glb); :func:`write_animations` writes npz, csv, angles, trc and c3d first.
FORMATS: tuple[str, ...] = ("npz", "glb", "bvh", "fbx", "csv", "angles", "trc", "c3d")
#: The formats of 3D points in the npz's frame (:func:`write_animations` evaluates SMPL-X's joints once for them).
_POINT_FORMATS = frozenset({"csv", "trc", "c3d"})
#: Formats written from the AMASS file's z-up rows: the points' and the joint angles'.
_TABLE_FORMATS = _POINT_FORMATS | {"angles"}


def check_export_setting(export: object) -> None:
    """Raise TypeError for a job's ``export`` that is not an :class:`AnimationExport`, naming how
    to make one from the command line's spelling (``export="glb,bvh"`` failed later with
    ``AttributeError: 'str' object has no attribute 'formats'``: a docs audit)."""
    if not isinstance(export, AnimationExport):
        raise TypeError(f"export {export!r}: an AnimationExport, e.g. AnimationExport.parse('glb,bvh') or "
                        "AnimationExport(formats=('glb', 'bvh'))")


@dataclass(frozen=True)
class AnimationExport:
    """Which animation files to write per track.

    Attributes:
        formats: a subset of :data:`FORMATS`.
        exact: GLB/FBX carry the full SMPL-X mesh per row (pose correctives and
            expression-dependent joints) as morph targets; larger files.
        root_bone: GLB/FBX have a joint ``root`` above the pelvis, on the ground under it, for
            game engines' root motion (:func:`wbcap.export.gltf.write_glb`); the BVH keeps the
            pelvis as its root.
        start_at_zero: GLB/FBX keys start at 0 s (the clip's first row), not at the row's time
            on the source's clock (a person first seen 35 s into the video had 35 s of nothing
            before the motion in an engine's timeline: a game developer's trial); the GLB's
            ``asset.extras.source_start_s`` keeps that time. npz and CSV keep the source's times.
            A clip that begins before 0 s (a fusion's, where a camera started before the first
            one) starts at 0 in GLB/FBX whatever this says (glTF has no negative key times).
    """

    formats: tuple[str, ...] = ("npz", "glb")
    exact: bool = False
    root_bone: bool = False
    start_at_zero: bool = False

    def __post_init__(self) -> None:
        """Raises InputError for ``formats`` that is not a tuple or list of :data:`FORMATS` names
        (``("GLB",)`` and a bare ``"bvh"`` wrote no such file, without a word; a break-it trial;
        :meth:`parse` takes the command line's spellings)."""
        from wbcap.errors import InputError, setting

        formats = self.formats
        if not isinstance(formats, (tuple, list)):
            raise InputError(f"{setting('formats', api='export formats')} {formats!r}: give a tuple of format names, "
                             f"e.g. ('bvh',), not a {type(formats).__name__}")
        unknown = [f for f in formats if not isinstance(f, str) or f not in FORMATS]
        if unknown:
            raise InputError(f"{setting('formats', api='export formats')} {tuple(formats) if isinstance(formats, list) else formats!r}: "
                             f"unknown format {', '.join(map(repr, unknown))}; give a tuple of {', '.join(FORMATS)}")
        object.__setattr__(self, "formats", tuple(formats))

    @classmethod
    def parse(cls, text: str, exact: bool = False, option: str = "formats", none_alone: bool = True,
              root_bone: bool = False, start_at_zero: bool = False) -> AnimationExport:
        """From a comma-separated list (``"glb,bvh"``; case and spaces ignored), or ``"none"``
        alone for nothing (``"none,none"`` too). ``none_alone``: whether the refusal of ``none``
        among formats may offer ``none`` alone (not for ``wbcap export``, which needs a format).

        Raises:
            InputError: ``none`` with formats (``"none,glb"``: none means no animation files), or an
                unknown format; one line starting with ``option`` and ``text``
                (``option``: the CLI's flag, e.g. ``--export``).
        """
        names = [t.strip().lower() for t in text.split(",") if t.strip()]
        if "none" in names:
            if set(names) != {"none"}:
                alone = "none alone or " if none_alone else ""
                raise InputError(f"{option} {text}: none means no animation files and cannot be combined with "
                                 f"formats; give {alone}only the formats wanted")
            return cls(formats=(), exact=exact, root_bone=root_bone, start_at_zero=start_at_zero)
        unknown = [n for n in names if n not in FORMATS]
        if unknown:
            raise InputError(f"{option} {text}: unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
        return cls(formats=tuple(f for f in FORMATS if f in names), exact=exact, root_bone=root_bone,
                   start_at_zero=start_at_zero)

    def say_root_bone_off_the_ground(self) -> None:
        """One warning where ``root_bone`` is set and ``--world`` fell back to the camera frame:
        the root bone then stands at the camera's height (y = 0 of the camera frame), not on the
        floor (an animator's trial: the fallback's warning did not say so)."""
        if self.root_bone and any(f in self.formats for f in ("glb", "fbx")):
            from wbcap.errors import setting

            log.warning("%s: without a ground the root bone stands at the camera's height (y = 0 of the camera "
                        "frame), not on the floor", setting("root_bone"))

    def check_available(self) -> None:
        """Raise before any work when a requested format cannot be written here (FBX without
        Blender's ``bpy``), so a run never stops half-way through its outputs.

        Raises:
            WbcapError: one line saying how to install what is missing, or why the installed
                ``bpy`` does not import (:func:`wbcap.export.fbx.bpy_import_error`, a second or two).
        """
        if "fbx" in self.formats:
            from wbcap.export.fbx import INSTALL_HINT, blender_available, bpy_fix, bpy_import_error

            if not blender_available():
                raise WbcapError(f"FBX export needs Blender's Python module; {INSTALL_HINT}")
            why = bpy_import_error()
            if why is not None:
                raise WbcapError(f"FBX export needs Blender's Python module, which is installed but does not import "
                                 f"({why}); {bpy_fix(why)}")


def write_animations(out: Path, name: str, arrays: dict[str, np.ndarray], body: Any, export: AnimationExport,
                     camera: Any = None, label: str | None = None, other_cameras: tuple[Any, ...] = ()) -> list[Path]:
    """Write ``out/<name><ending>`` for each format of ``export`` (``track_3.glb``, ``track_3_angles.csv``:
    :data:`wbcap.io.run_folder.TRACK_ENDINGS`); returns the files written.

    Args:
        out: the folder (exists).
        name: file stem, e.g. ``track_3`` or ``track_3_part2``.
        arrays: one AMASS piece (:func:`wbcap.export.amass.amass_arrays`).
        body: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` the parameters belong to.
        export: the formats.
        camera: the source's :class:`~wbcap.camera.ImageCamera`, written into the GLB, or None.
        label: the clip's name inside the files (the GLB's animation, skin and mesh; the FBX take),
            which Blender names its objects after; None: ``name`` (``wbcap image`` gives each
            person's ``output.glb`` its own, ``<image>_person_<k>``).
        other_cameras: more cameras of a clip in a world frame, written into the GLB (not the FBX,
            which holds no camera): :class:`wbcap.export.gltf.PlacedCamera`, a fusion's other cameras.

    Raises:
        WbcapError: FBX without Blender's ``bpy`` (one line saying how to install it).
    """
    from wbcap.export.amass import write_amass_npz
    from wbcap.export.clip import clip_from_amass
    from wbcap.export.rig import build_rig

    written: list[Path] = []
    label = name if label is None else label
    formats = set(export.formats) - _kept_users_files(out, name, export.formats)
    if "npz" in formats:
        written.append(write_amass_npz(out / f"{name}.npz", arrays))
    wanted = formats - {"npz"}
    if not wanted:
        return written
    rig = build_rig(body, arrays["betas"])
    if wanted & _TABLE_FORMATS:  # (the npz's frame: SMPL-X's joints computed once for all)
        from wbcap.export.angles_csv import write_angles_csv
        from wbcap.export.c3d_file import C3D_MAX_FRAMES, write_c3d
        from wbcap.export.clip import smplx_rows
        from wbcap.export.joints_csv import write_joints_csv
        from wbcap.export.opensim_trc import write_trc
        from wbcap.io.run_folder import track_file_name

        zup = clip_from_amass(arrays, rig.rest_joints[0], label, up="z")
        joints = smplx_rows(body, zup, joints=True) if wanted & _POINT_FORMATS else None
        for fmt, writer in (("csv", write_joints_csv), ("angles", write_angles_csv), ("trc", write_trc),
                            ("c3d", write_c3d)):
            if fmt not in wanted:
                continue
            target = out / track_file_name(name, fmt)
            if fmt == "c3d" and len(zup) > C3D_MAX_FRAMES:
                log.warning("%s: %d rows, more than the %d frames a C3D file holds: no %s.c3d (its TRC and CSV "
                            "hold every row)", name, len(zup), C3D_MAX_FRAMES, name)
            elif fmt == "c3d":  # (with --world the feet's contacts, as gait events)
                written.append(writer(target, body, zup, joints=joints, contact=arrays.get("contact")))
            else:
                written.append(writer(target, body, zup, joints=joints))
        wanted -= _TABLE_FORMATS
        if not wanted:
            return written
    clip = clip_from_amass(arrays, rig.rest_joints[0], label, up="y")
    source_start = None
    # (also a clip that begins before 0 s: glTF has no negative key times, and a fusion's clock
    # begins there where a camera started before the first one)
    if export.start_at_zero or clip.times[0] < 0:
        import dataclasses

        source_start = float(clip.times[0])
        clip = dataclasses.replace(clip, times=np.asarray(clip.times, np.float64) - source_start)
    if wanted & {"glb", "fbx"}:
        from wbcap.export.clip import smplx_rows
        from wbcap.export.gltf import write_glb

        exact = smplx_rows(body, clip) if export.exact else None
        if "glb" in wanted:
            written.append(write_glb(out / f"{name}.glb", rig, clip, camera=camera, exact_vertices=exact,
                                     root_bone=export.root_bone, source_start=source_start,
                                     other_cameras=other_cameras))
        if "fbx" in wanted:
            from wbcap.export.fbx import write_fbx

            glb = out / f"{name}.glb"
            span = {"first_time": float(clip.times[0]), "last_time": float(clip.times[-1])}
            if "glb" in wanted:
                written.append(write_fbx(glb, out / f"{name}.fbx", fps=clip.fps, **span))
            else:
                # a temporary name of wbcap.atomic's kind (`.track_3.tmp-*`), which the run folder's check
                # counts as wbcap's own if a killed process leaves it
                with tempfile.TemporaryDirectory(prefix=f".{name}.tmp-", dir=out) as tmp:
                    glb = write_glb(Path(tmp) / f"{name}.glb", rig, clip, camera=camera, exact_vertices=exact,
                                    intermediate=True, root_bone=export.root_bone, source_start=source_start)
                    written.append(write_fbx(glb, out / f"{name}.fbx", fps=clip.fps, **span))
    if "bvh" in wanted:
        from wbcap.export.bvh import write_bvh

        written.append(write_bvh(out / f"{name}.bvh", rig, clip))
    return written


def _kept_users_files(out: Path, name: str, formats: tuple[str, ...]) -> set[str]:
    """The formats of ``formats`` whose file ``out/<name><ending>`` is there and not wbcap's
    (:func:`wbcap.io.run_folder.written_by_wbcap`: a user's own file, or a folder), each said in a
    warning: kept, and not written (a resume's pass 2 in a run folder holding them; `wbcap export`
    refuses such a file before any work)."""
    from wbcap.io.run_folder import track_file_name, written_by_wbcap

    kept = set()
    for fmt in formats:
        target = out / track_file_name(name, fmt)
        if (target.exists() or target.is_symlink()) and not (target.is_file() and written_by_wbcap(target)):
            log.warning("%s: %s wbcap did not write (a user's own?): kept, and this track's %s not written; move it "
                        "away and write the %s with wbcap export", target, "a folder" if target.is_dir() else "a file",
                        fmt.upper(), fmt.upper())
            kept.add(fmt)
    return kept


def write_track_files(out: Path, tracks: dict, body: Any, device: Any, rate: float, max_gap: float, gender: str,
                      export: AnimationExport, camera: Any = None, world: Any = None,
                      contacts: dict[int, np.ndarray] | None = None, frame_step: int | None = None) -> set[Path]:
    """Each track's pieces on the regular clock (:func:`wbcap.export.track_npz.track_segments`)
    written by :func:`write_animations` in the formats of ``export``; returns the files written.

    Args:
        tracks: ``{track id: SmoothedTrack}`` (:mod:`wbcap.smooth.track`).
        body, device: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` and its device.
        rate: rows per second of the clock; max_gap: seconds (longer gaps split a track).
        gender: written into the AMASS files.
        camera: the source's :class:`~wbcap.camera.ImageCamera` (into the GLB, and the npz's intrinsics), or None.
        world: the :class:`~wbcap.world.estimate.WorldFrame` of ``wbcap run --world`` (``tracks``
            are then the corrected ones of :func:`wbcap.world.estimate.ground_tracks`), or None
            for the camera's frame.
        contacts: ``{track id: (N, 2) bool}`` planted (left, right) foot (with ``world``).
        frame_step: source frames between two processed ones (``--every``, meta.json's
            ``frame_step``), for the split rule of :func:`wbcap.export.amass.regular_clock`; None:
            the smallest frame-index step of any of ``tracks``' consecutive detections (a guess:
            a run whose every person was seen only every other frame guesses 2, and `wbcap export
            --track` of such a person alone split it otherwise than `wbcap run`; a review).
    """
    from wbcap.export.track_npz import track_segments

    written: set[Path] = set()
    if frame_step is None:
        steps = [int(np.diff(np.asarray(tr.frame)).min()) for tr in tracks.values() if len(tr.frame) > 1]
        frame_step = min(steps) if steps else None
    for tid, tr in tracks.items():
        contact = None if world is None or contacts is None else contacts.get(tid)
        for name, arrays in track_segments(tid, tr, body, device, rate, max_gap, gender, world, contact,
                                           frame_step=frame_step, camera=camera):
            written.update(write_animations(out, name, arrays, body, export, camera))
    return written

"""``wbcap fuse``: several calibrated cameras' runs into one motion per person.

Reads each run folder's track files (``track_<id>.npz``: AMASS files in the calibration's world,
written by ``wbcap run --world --calibration`` where the calibration's floor was taken:
``ground_from`` ``"calibration"``), finds which tracks are one person and fuses them
(:mod:`wbcap.fuse.views`), and writes each person's files into OUT as ``wbcap run`` writes a
track's (``track_<k>.npz``, ``.glb``, ``.trc``, ...: :func:`wbcap.export.animation.write_animations`)
with ``fuse.json``: which tracks of which runs each person holds, how far apart the cameras put
them, the runs' cameras and the settings.

A fused person's files carry the camera that saw them longest as their ``source_camera`` (the
npz's ``camera_rotation``, ``camera_position`` and intrinsics, the GLB's camera node), the GLB
every other run's camera too (``camera_<run>``), ``fuse.json`` each run's; their frame
is the calibration's world (``frame`` ``"world"``, ``ground_from`` ``"calibration"``). Runs whose
calibration's world ``wbcap run --world`` did not take (not z up: tracks on their feet's ground or
in their camera's frame, the calibration's pose in ``meta.json``) are fused in the calibration's
frame, its units and each camera's depth scale found from the people, and it is levelled by the
fused people's feet (:mod:`wbcap.fuse.level`; ``ground_from`` ``"calibration_levelled"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.errors import InputError, setting
from wbcap.export.animation import AnimationExport
from wbcap.fuse.views import FuseConfig, FusedPiece, ViewTrack

__all__ = ["AUDIO_OFFSETS", "AUTO_OFFSETS", "FUSE_FILE", "FuseJob", "FuseResult", "fuse_runs"]

log = logging.getLogger(__name__)

#: The record of a fusion in its output folder.
FUSE_FILE = "fuse.json"

#: The largest ``--offsets`` value, seconds (a day: anything more is no synchronisation).
MAX_OFFSET_S = 86400.0

#: ``FuseJob.offsets`` (``--offsets auto``): the clocks found from the people's motion.
AUTO_OFFSETS = "auto"

#: ``FuseJob.offsets`` (``--offsets audio``): the clocks found from the sound the cameras recorded.
AUDIO_OFFSETS = "audio"

#: Seconds of each video's sound ``--offsets audio`` reads (from its start; with the search, the
#: stretch two cameras share).
AUDIO_SECONDS = 120.0

#: Seconds either way over which ``--offsets auto`` (and ``audio``) looks for a camera's clock against another's.
AUTO_SEARCH_S = 30.0

#: Seconds two cameras must have seen a person together at a shift for ``--offsets auto`` to weigh it.
AUTO_MIN_OVERLAP_S = 1.0


@dataclass(frozen=True)
class FuseJob:
    """What ``wbcap fuse`` does (built once by the CLI).

    Attributes:
        runs: two or more ``wbcap run --world --calibration`` folders, one a camera, of the same
            moments (synchronised videos); or one folder holding them (its subfolders that are runs).
        out: the folder the fused files go into (created when missing).
        export: the formats written per person (at least one).
        config: association and fusion settings.
        offsets: seconds added to each run's clock (one per run), None (all 0: synchronised), or
            :data:`AUTO_OFFSETS`: found from the people's motion (:func:`_found_offsets`), or
            :data:`AUDIO_OFFSETS`: from the sound of the runs' videos (:func:`_sound_offsets`).
        body_models: the SMPL-X file or folder (None: the first run's, as ``wbcap export`` finds it).
        allow_pickle: read a pickled ``.pkl`` SMPL-X file.
        overwrite: replace an earlier fusion's files in ``out``.
    """

    runs: tuple[str, ...]
    out: str
    export: AnimationExport = field(default_factory=AnimationExport)
    config: FuseConfig = field(default_factory=FuseConfig)
    offsets: tuple[float, ...] | str | None = None
    body_models: str | None = None
    allow_pickle: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class FuseResult:
    """What :func:`fuse_runs` wrote: the folder, the people, the tracks read, the files, the cameras."""

    out: Path
    people: int
    tracks: int
    files: tuple[Path, ...]
    cameras: int = 0


@dataclass(frozen=True)
class _Piece:
    """One run's track file as read: the run's index, the file, its arrays, and whether they lie
    in the calibration's world (``ground_from`` ``"calibration"``) or on the ground the run's
    feet gave (its calibration's world not taken: :mod:`wbcap.fuse.level`)."""

    run: int
    path: Path
    arrays: dict[str, np.ndarray]
    taken: bool = True


def _read_run(run: Path, index: int) -> tuple[dict, list[_Piece]]:
    """``(meta.json, its track files)`` of one run folder.

    Track files in the calibration's world are taken as they are; those on the ground the run's
    feet gave or in its camera's frame (its ``--world`` fell back), of a run whose ``meta.json``
    holds the calibration's pose of its camera (its world not taken: not z up, its ``z = 0`` not
    the floor), are marked not ``taken`` (:mod:`wbcap.fuse.level` brings them into the
    calibration's frame).

    Raises:
        InputError: not a run folder, no track file, a track file not in the calibration's world
            of a run without the calibration's pose, or a damaged one: one line naming the file
            and the fix.
    """
    from wbcap.io.run_folder import read_meta, track_file

    if not run.is_dir():
        raise InputError(f"{run}: no such run folder; give the folders of `wbcap run --world --calibration` runs")
    meta = read_meta(run)
    if meta is None:
        raise InputError(f"{run}: not a finished `wbcap run` folder (no meta.json); give the folder of a "
                         "`wbcap run --world --calibration` run")
    # (by name, not by wbcap's marks: a damaged file, which lost them, is said, not left out: a review)
    files = sorted(p for p in run.glob("track_*.npz") if track_file(p.name) is not None and p.is_file())
    if not files:
        raise InputError(f"{run}: holds no track_<id>.npz file (no person tracked, or the files were removed); "
                         f"write them with `wbcap export {run} --format npz`")
    from wbcap.export.amass import read_track_npz
    from wbcap.world.estimate import trust_helps

    pieces = []
    for path in files:
        try:
            arrays = read_track_npz(path)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}; write it again with `wbcap export {run} --world --format npz`") from None
        frame, ground = str(arrays.get("frame", "camera")), str(arrays.get("ground_from", "feet"))
        posed = _run_pose(meta) is not None
        if posed and (frame == "camera" or ground == "feet"):  # (levelled in the calibration's frame)
            pieces.append(_Piece(run=index, path=path, arrays=arrays, taken=False))
            continue
        if frame != "world" or ground != "calibration":
            world = meta.get("world") or {}
            why = world.get("reason") if frame != "world" else world.get("calibration_note")
            where = ("in the camera's frame" + (f" (its --world fell back: {why})" if why else "") if frame != "world"
                     else "on the ground found from the feet, and its meta.json holds no calibration's pose of its "
                     "camera")
            fix = (f"if its calibration is right, `wbcap export {run} --world --trust-calibration --format npz` writes "
                   "the run's tracks in its world" if posed and (why is None or trust_helps(str(why))) else
                   "fix its calibration (the camera's pose: z up, z = 0 the floor) and run it again" if posed else
                   "run its video with --world --calibration FILE (the camera's pose)")
            raise InputError(f"{path}: {where}; fuse takes tracks on a floor, of a camera whose calibration gives its "
                             f"pose: {fix}")
        pieces.append(_Piece(run=index, path=path, arrays=arrays))
    return meta, pieces


def _run_pose(meta: dict) -> Any:
    """The calibration's pose of a run's camera (:class:`wbcap.camera.CameraPose`, from
    ``meta.json``'s ``calibration``), or None where it holds none."""
    from wbcap.camera import CameraPose

    try:
        return CameraPose.from_record(meta.get("calibration"))
    except ValueError:  # (read_meta checks it: only a file changed since)
        return None


def _run_folders(given: list[Path]) -> list[Path]:
    """The run folders of ``given``: a single folder that is no run but holds runs
    (``runs/cam01``, ``runs/cam02``: its subfolders with a ``meta.json``, by name) stands for
    them; anything else as given."""
    from wbcap.io.run_folder import META_FILE

    if len(given) == 1 and not given[0].exists():
        raise InputError(f"{given[0]}: no such run folder; give the folders of `wbcap run --world --calibration` runs "
                         "(or one folder holding them)")
    if len(given) == 1 and given[0].is_dir() and not (given[0] / META_FILE).exists():
        inside = sorted(p for p in given[0].iterdir() if p.is_dir() and (p / META_FILE).is_file())
        unfinished = sorted(p for p in given[0].iterdir() if p.is_dir() and not (p / META_FILE).is_file()
                            and ((p / "params.jsonl").exists() or any(p.glob("track_*.npz"))))
        if unfinished:  # (left out, it would move the others' --offsets: a review)
            raise InputError(f"{unfinished[0]}: a run without meta.json (one that did not finish?) in {given[0]}; "
                             "finish it with its --resume, or move it out of the folder")
        if not inside:
            raise InputError(f"{given[0]}: neither a run folder nor a folder of them (no meta.json in it or its "
                             "subfolders); give the folders of `wbcap run --world --calibration` runs")
        log.info("%s: the runs in it, in this order (for --offsets): %s", given[0], ", ".join(p.name for p in inside))
        return inside
    return given


def run_names(folders: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Each run's name in a fusion's files (track labels ``cam01/track_3``, the GLB's
    ``camera_cam01``, ``wbcap view --camera``): its folder's name, or where two runs' folders
    share it, the fewest last parts of their absolute paths that tell them apart (``a/cam`` and
    ``b/cam``; ``x/cam`` and ``y/x/cam``), never the file system's root (a whole path would name
    the user's folders in files to share); folders no parts tell apart are numbered (``cam#2``)."""
    parts = [Path(os.path.abspath(f)).parts[1:] or (str(f),) for f in folders]
    longest = max((len(p) for p in parts), default=0)
    names = []
    for i, own in enumerate(parts):
        for k in range(1, longest + 1):
            if all(other[-k:] != own[-k:] for j, other in enumerate(parts) if j != i):
                names.append("/".join(own[-k:]))
                break
        else:  # (one folder twice, refused before names are needed)
            names.append(own[-1])
    return [f"{name}#{names[:i].count(name) + 1}" if name in names[:i] else name for i, name in enumerate(names)]


def _view_track(piece: _Piece, label: str, offset: float, body: Any) -> ViewTrack:
    """A run's track file as a :class:`~wbcap.fuse.views.ViewTrack` (its pelvis from ``body``)."""
    a = piece.arrays
    betas = np.asarray(a["betas"], np.float64).reshape(-1)
    trans = np.asarray(a["trans"], np.float64)
    return ViewTrack(
        view=piece.run, label=label,
        times=np.asarray(a["times"], np.float64) + offset, valid=np.asarray(a["valid"], bool),
        poses=np.asarray(a["poses"], np.float64).reshape(len(trans), 55, 3), trans=trans, betas=betas,
        expression=np.asarray(a["expression"], np.float64), frame_indices=np.asarray(a["frame_indices"], np.int64),
        pelvis=trans + _rest_root(body, betas), camera_position=np.asarray(a["camera_position"], np.float64),
        fps=float(a["mocap_framerate"]), contact=np.asarray(a["contact"], bool) if "contact" in a else None)


def _rest_root(body: Any, betas: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return body.rest_root(torch.as_tensor(np.asarray(betas, np.float32)[None])).numpy()[0].astype(np.float64)


def _piece_arrays(piece: FusedPiece, reference: _Piece, rotation: np.ndarray, position: np.ndarray, ground: str,
                  body: Any, gender: str) -> dict[str, np.ndarray]:
    """A fused piece as one AMASS file's arrays (:func:`wbcap.export.amass.amass_arrays`), its
    source camera ``reference``'s intrinsics, at ``rotation`` (OpenCV camera axes -> the world)
    and ``position`` (metres) in the world of ``ground`` (the files' ``ground_from``)."""
    from wbcap.export.amass import amass_arrays, camera_to_world, npz_camera
    from wbcap.world.estimate import WorldFrame
    from wbcap.world.ground import GroundPlane

    rest = _rest_root(body, piece.betas)
    t = len(piece.times)
    # (amass_arrays takes camera-frame parameters and the world's pose: the reference camera's)
    orient, transl = camera_to_world(piece.poses[:, 0], piece.trans, rest, rotation.T, -rotation.T @ position)
    hands_mean = body.hands_mean()
    frame = WorldFrame(ground=GroundPlane(normal=rotation[2], offset=float(position[2])), world_from_camera=rotation,
                       camera_position=position, ground_from=ground)
    return amass_arrays(
        global_orient=orient, body_pose=piece.poses[:, 1:22].reshape(t, 63), jaw_pose=piece.poses[:, 22],
        leye_pose=piece.poses[:, 23], reye_pose=piece.poses[:, 24],
        left_hand_pose=piece.poses[:, 25:40].reshape(t, 45) - np.asarray(hands_mean[0], np.float64).reshape(1, 45),
        right_hand_pose=piece.poses[:, 40:55].reshape(t, 45) - np.asarray(hands_mean[1], np.float64).reshape(1, 45),
        transl=transl, betas=piece.betas, expression=piece.expression, hands_mean=hands_mean, rest_root=rest,
        fps=piece.fps, times=piece.times, frame_indices=piece.frame_indices, valid=piece.valid, gender=gender,
        world=frame, contact=piece.contact, camera=npz_camera(reference.arrays))


def _prepare_out(out: Path, runs: list[Path], overwrite: bool) -> tuple[bool, list[Path]]:
    """Check OUT (not a run folder; an earlier fusion's files only with ``overwrite``; no file of
    the names fuse writes that wbcap did not write) and create it: ``(created, earlier files)``,
    the earlier fusion's files to remove once the new ones are made.

    Raises:
        InputError: one line naming the folder and the fix.
    """
    from wbcap.io.run_folder import track_file, track_files

    resolved = out.resolve()
    if any(resolved == r.resolve() for r in runs) or (out / "params.jsonl").exists():
        raise InputError(f"{out}: a run's folder; give fuse another folder with -o")
    if any(resolved == r.resolve().parent for r in runs):
        raise InputError(f"{out}: holds the runs; give fuse another folder with -o (e.g. {out / 'fused'})")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give fuse a folder with -o")
    earlier = ([*track_files(out), *([out / FUSE_FILE] if (out / FUSE_FILE).exists() else [])]
               if out.is_dir() else [])
    if earlier and not overwrite:
        raise InputError(f"{out}: holds an earlier fusion's files ({earlier[0].name}, ...); pass "
                         f"{setting('overwrite', api='overwrite=True')} to replace them, or choose another folder")
    others = sorted(p.name for p in out.glob("track_*") if track_file(p.name) is not None and p not in earlier) if (
        out.is_dir()) else []
    if others:
        raise InputError(f"{out}: holds {others[0]}, which wbcap did not write, of a name fuse writes; choose another "
                         "folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the folder ({exc.strerror or exc}); choose another folder") from None
    return created, earlier


def fuse_runs(job: FuseJob) -> FuseResult:
    """Fuse the runs of ``job`` (the module docstring).

    Raises:
        InputError: fewer than two runs, a run given twice, one that is not a calibrated world's
            (:func:`_read_run`), runs of different SMPL-X models (``--gender``), two runs of one
            camera, offsets that are not one per run, a bad output folder.
    """
    from wbcap.atomic import atomic_write_text, staging_sibling
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.fuse.views import associate, seen_together
    from wbcap.io.run_folder import run_body_model

    runs = _run_folders([Path(r).expanduser() for r in job.runs])
    if len(runs) < 2:
        raise InputError(f"fuse takes two or more run folders (one a camera); got {len(runs)}")
    if len({r.resolve() for r in runs}) < len(runs):
        raise InputError("a run folder is given twice; give each camera's run once")
    found_by = job.offsets if isinstance(job.offsets, str) else None
    if found_by not in (None, AUTO_OFFSETS, AUDIO_OFFSETS):
        raise InputError(f"{setting('offsets')}: {job.offsets!r}: seconds, one a run, {AUTO_OFFSETS!r} or "
                         f"{AUDIO_OFFSETS!r}")
    auto = found_by == AUTO_OFFSETS
    offsets = tuple(job.offsets) if job.offsets is not None and found_by is None else (0.0,) * len(runs)
    if len(offsets) != len(runs):
        raise InputError(f"{setting('offsets')}: {len(offsets)} offset(s) for {len(runs)} runs; give one a run, in "
                         "their order (0 for the first)")
    if not all(isinstance(v, (int, float)) and np.isfinite(v) and abs(v) <= MAX_OFFSET_S for v in offsets):
        raise InputError(f"{setting('offsets')}: {list(offsets)}: finite seconds, within a day ({MAX_OFFSET_S:g})")
    read = [_read_run(run, i) for i, run in enumerate(runs)]
    genders = {str(meta.get("gender", "neutral")) for meta, _ in read}
    if len(genders) > 1:
        raise InputError(f"the runs use different SMPL-X models ({', '.join(sorted(genders))}); run every camera with "
                         "the same --gender")
    gender = genders.pop()
    levelled = not all(p.taken for _, run_pieces in read for p in run_pieces)
    poses = [_run_pose(meta) for meta, _ in read]
    if job.config.units_per_metre is not None and not (poses and all(p is not None and not p.metric for p in poses)):
        raise InputError(f"{setting('units_per_metre')} is for a calibration without a scale (COLMAP's reconstruction), "
                         "and these runs' calibrations have units (metres, millimetres...: wbcap tells which); leave it "
                         "out")
    if levelled and None in poses:  # (a run in the calibration's world whose meta.json lost the pose)
        raise InputError(f"{runs[poses.index(None)] / 'meta.json'}: holds no calibration's pose of its camera, which the "
                         "other runs need to be placed beside it; run its video again with --world --calibration FILE")
    positions = [np.asarray(pieces[0].arrays["camera_position"], np.float64) for _, pieces in read]
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            # (levelled: each run's own ground; the calibration's centres, in its units, tell one camera)
            same = (np.allclose(poses[i].centre, poses[j].centre, rtol=0, atol=1e-6 * max(1.0, abs(poses[i].centre).max()))
                    if levelled else np.linalg.norm(positions[i] - positions[j]) < 0.01)
            if same:
                raise InputError(f"{runs[i]} and {runs[j]}: the same camera (its calibrated centre "
                                 f"{'the same' if levelled else 'within 1 cm'}); give each camera's run once")
    files = {str((meta.get("calibration") or {}).get("file", "")) for meta, _ in read}
    if len(files) > 1:
        # (told apart, and a COLMAP folder sparse/0 by its last two parts, not "0")
        told = [name if not Path(name).name.isdigit() else "/".join(Path(f).parts[-2:])
                for f, name in zip(sorted(x for x in files if x), run_names([x for x in sorted(files) if x]))]
        told += ["?"] * ("" in files)
        log.warning("the runs' calibrations come from different files (%s): their worlds must be one (the same "
                    "lab frame)", ", ".join(told))
    pieces = [p for _, run_pieces in read for p in run_pieces]
    for piece in pieces[1:]:  # (one network's sizes: runs of other weights have other ones)
        for key, size in (("betas", pieces[0].arrays["betas"].size), ("expression", pieces[0].arrays["expression"].shape[1])):
            mine = piece.arrays[key].size if key == "betas" else piece.arrays[key].shape[1]
            if mine != size:
                raise InputError(f"{piece.path}: {mine} {key} coefficients where {pieces[0].path} has {size}: runs of "
                                 "networks of other sizes; run every camera with the same checkpoint")
    job.export.check_available()  # (FBX without Blender: said before any work)
    videos = ([_run_video(run, meta) for run, (meta, _) in zip(runs, read)] if found_by == AUDIO_OFFSETS
              else [])  # (said before the slow work)
    out = Path(job.out).expanduser()
    created, earlier = _prepare_out(out, runs, job.overwrite)  # (checked before the slow work)
    record: dict[str, Any] = {
        "runs": [{"folder": os.path.abspath(run), "offset_s": offsets[i],
                  "calibration_file": (meta.get("calibration") or {}).get("file"),
                  "camera_position_m": [float(v) for v in positions[i]]} for i, (run, (meta, _)) in
                 enumerate(zip(runs, read))],
        "settings": asdict(job.config), "gender": gender,
        "offsets": found_by or ("given" if job.offsets is not None else "none"),
        "people": []}
    try:
        body = SMPLXLayer.from_file(run_body_model(runs[0], gender, job.body_models, job.allow_pickle),
                                    allow_pickle=job.allow_pickle)
        folder = run_names(runs)  # (runs a/cam and b/cam: those; not the paths as typed, a review)
        if found_by == AUDIO_OFFSETS:
            offsets, record["sound_pairs"] = _sound_offsets(runs, videos)
            for entry, offset in zip(record["runs"], offsets):
                entry["offset_s"] = offset
        tracks = [_view_track(p, f"{folder[p.run]}/{p.path.stem}", offsets[p.run], body) for p in pieces]
        frames = None
        placed: list[ViewTrack] = []
        in_files = tracks
        if levelled:  # (each run's tracks into the calibration's frame, metres)
            frames = _calibration_frames(read, poses, tracks, pieces, runs, job.config, auto)
            placed = [t.moved(*frames.from_file[p.run]) for t, p in zip(tracks, pieces)]
            tracks = [t.scaled(frames.scales[t.view]) for t in placed]
            record["world"] = frames.record
        if auto:
            offsets, record["clock_pairs"] = _found_offsets(tracks, runs, job.config)
            tracks = [dataclasses.replace(t, times=t.times + offsets[t.view]) for t in tracks]
            for entry, offset in zip(record["runs"], offsets):
                entry["offset_s"] = offset
            if placed:  # (the depth scales again on the clocks found: the first were of a frame's rough clocks)
                placed = [dataclasses.replace(t, times=t.times + offsets[t.view]) for t in placed]
                scales = _depth_scales(placed, _meeting(placed, job.config, auto=False)[1], len(runs))
                if scales is None:
                    scales = frames.scales
                    log.warning("the cameras' depth scales on the clocks found came out outside %g-%g (a person taken "
                                "for another?): the first ones kept", *DEPTH_SCALE_RANGE)
                elif frames.scale_found:  # (its scale again on them too)
                    frames = frames.rescaled(scales)
                    scales = frames.scales
                    record["world"] = frames.record
                    placed = [dataclasses.replace(t.moved(*frames.from_file[p.run]), times=t.times + offsets[t.view])
                              for t, p in zip(in_files, pieces, strict=True)]
                tracks = [t.scaled(scales[t.view]) for t in placed]
                record["world"]["depth_scales"] = {folder[v]: x for v, x in scales.items()}
        people, distances = associate(tracks, job.config)
        together = {(i, j) for i, j in distances if seen_together(tracks[i], tracks[j], job.config.min_overlap_s)}
        # (a person only handed over from one camera to another was not seen by two at once: a review)
        if not any((i, j) in together for members in people for i in members for j in members):
            nearest = _meeting(tracks, job.config, auto=False)[0]
            log.warning("no person was found by two cameras (their nearest tracks %s): are the runs of one "
                        "calibration's cameras, and the videos synchronised (%s, or %s %s)?",
                        f"{nearest:.2f} m apart" if np.isfinite(nearest) else "never seen at once",
                        setting("offsets"), setting("offsets"), AUTO_OFFSETS)
        elif not auto:
            _say_clocks(tracks, runs, offsets, job.config)
        # (made beside OUT, then moved in: its files named as OUT's in messages; earlier ones set aside likewise)
        fused = _fuse_people(people, tracks, body, job.config)
        cameras = {i: (np.asarray(p.arrays["camera_rotation"], np.float64),
                       np.asarray(p.arrays["camera_position"], np.float64)) for i, p in enumerate(pieces)}
        if frames is not None:
            fused, cameras = _levelled(fused, frames, tracks, pieces, body, record)
        with staging_sibling(out) as stage, staging_sibling(out) as old:
            made = _write_people(stage, fused, tracks, pieces, cameras, distances, body, gender, job, record, folder)
            atomic_write_text(stage / FUSE_FILE, json.dumps(record, indent=1) + "\n")
            written = _swap(out, stage, [*made, FUSE_FILE], earlier, old)
    except BaseException:  # (Ctrl-C included) a folder this fusion made and nothing went into goes again
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return FuseResult(out=out, people=len(people), tracks=len(tracks), files=tuple(written), cameras=len(runs))


@dataclass(frozen=True)
class _Frames:
    """The calibration's frame of a fusion of runs whose calibration's world was not taken
    (:mod:`wbcap.fuse.level`).

    Attributes:
        from_file: each run's ``(A, b)``: a point of its track files at ``A @ x + b`` in the
            calibration's axes, metres (:func:`wbcap.fuse.level.calibration_from_file`);
            scales: then each run's depth scale about its camera (:func:`_depth_scales`).
        poses: each run's :class:`wbcap.camera.CameraPose`; per_metre: the calibration's units a metre.
        up: ``(3,)`` unit, the up the runs' own grounds give in the calibration's frame (their mean).
        record: for ``fuse.json``'s ``world``.
        scale_found: a calibration without a scale whose scale the people gave
            (:func:`_reconstruction_frames`; :meth:`rescaled` then sets it again with the depth scales).
    """

    from_file: dict[int, tuple[np.ndarray, np.ndarray]]
    scales: dict[int, float]
    poses: list[Any]
    per_metre: float
    up: np.ndarray
    record: dict[str, Any]
    scale_found: bool = False

    def camera(self, run: int) -> tuple[np.ndarray, np.ndarray]:
        """Run ``run``'s camera in the calibration's frame: OpenCV camera axes -> its axes, its centre (metres)."""
        r = np.asarray(self.poses[run].rotation, np.float64)
        return r.T, self.poses[run].centre / self.per_metre

    def rescaled(self, scales: dict[int, float]) -> _Frames:
        """A scale-free calibration's frame (``record`` ``units`` :data:`RECONSTRUCTION_UNITS`)
        given the depth scales ``scales`` solved in it (:func:`_depth_scales`): its units per
        metre multiplied by their geometric mean, which then divides them (the network's depths
        right on average: :func:`wbcap.fuse.level.reconstruction_scale`); the maps' camera
        centres moved to the new metres."""
        mean = float(np.exp(np.mean(np.log(list(scales.values())))))
        per_metre = self.per_metre * mean
        from_file = {run: (a, b + self.poses[run].centre * (1.0 / per_metre - 1.0 / self.per_metre))
                     for run, (a, b) in self.from_file.items()}
        names = list(self.record["depth_scales"])  # (run_names: one a run, in their order)
        record = {**self.record, "per_metre": per_metre, "depth_scales": {names[v]: s / mean for v, s in scales.items()}}
        return dataclasses.replace(self, from_file=from_file, scales={v: s / mean for v, s in scales.items()},
                                   per_metre=per_metre, record=record)


def _meeting(tracks: list[ViewTrack], config: FuseConfig, auto: bool
             ) -> tuple[float, list[tuple[int, int, float]]]:
    """How near the cameras put the people they saw: per pair of cameras, their nearest pair of
    tracks' median pelvis distance (over shifts of the clocks within :data:`AUTO_SEARCH_S` with
    ``auto``); the median over the pairs of cameras (inf where no two cameras saw anyone
    together), and those nearest pairs ``(track, track, shift of the second's clock)``."""
    from wbcap.fuse.views import clock_shifts, median_distance

    if auto:  # (before the depth scales: people up to a metre apart may be one)
        loose = dataclasses.replace(config, max_distance=max(1.0, config.max_distance))
        shifts = clock_shifts(tracks, loose, max_shift_s=AUTO_SEARCH_S,
                              min_overlap_s=max(AUTO_MIN_OVERLAP_S, config.min_overlap_s), by_poses=False)
        found = [s.apart_m for s in shifts]
        pairs = [(s.first, s.second, s.shift_s) for s in shifts]
    else:
        nearest: dict[tuple[int, int], tuple[float, int, int]] = {}
        for i, a in enumerate(tracks):
            for j in range(i + 1, len(tracks)):
                d = median_distance(a, tracks[j], config.min_overlap_s) if a.view != tracks[j].view else None
                key = (min(a.view, tracks[j].view), max(a.view, tracks[j].view))
                if d is not None and d < nearest.get(key, (np.inf,))[0]:
                    nearest[key] = (d, i, j)
        found = [d for d, _, _ in nearest.values()]
        pairs = [(i, j, 0.0) for _, i, j in nearest.values()]
    return (float(np.median(found)) if found else float("inf")), pairs


#: The range of a camera's depth scale :func:`_depth_scales` takes (outside it: a person taken for another).
DEPTH_SCALE_RANGE = (0.7, 1.4)


def _depth_scales(tracks: list[ViewTrack], pairs: list[tuple[int, int, float]], views: int
                  ) -> dict[int, float] | None:
    """Each camera's depth scale: the factor along its rays (about its centre) that brings its
    people onto the other cameras' (a triangulation: the calibration's baselines fix the scale
    that a monocular network gets some per cent wrong; on its own ground the run kept it).
    Least squares over the rows of each pair of tracks in ``pairs`` (``a``'s pelvis scaled by
    ``s_a`` from its camera meets ``b``'s scaled by ``s_b``); 1 for a camera in no pair. None
    where the solution leaves :data:`DEPTH_SCALE_RANGE`."""
    from wbcap.fuse.views import POSE_ROWS, matched_rows

    rows, values = [], []
    for i, j, shift in pairs:
        a, b = tracks[i], tracks[j]
        mine, theirs = matched_rows(a, b, shift, stride=max(1, len(a.times) // POSE_ROWS))
        da = a.pelvis[mine] - a.camera_position
        db = b.pelvis[theirs] - b.camera_position
        for axis in range(3):
            row = np.zeros((len(da), views))
            row[:, a.view] = da[:, axis]
            row[:, b.view] -= db[:, axis]
            rows.append(row)
            values.append(np.full(len(da), b.camera_position[axis] - a.camera_position[axis]))
    scales = {v: 1.0 for v in range(views)}
    if not rows:
        return scales
    m = np.concatenate(rows)
    used = np.flatnonzero(np.abs(m).sum(0) > 0)
    solved = np.linalg.lstsq(m[:, used], np.concatenate(values), rcond=None)[0]
    low, high = DEPTH_SCALE_RANGE
    if not all(low <= v <= high for v in solved):
        return None
    scales.update({int(v): float(x) for v, x in zip(used, solved)})
    return scales


def _calibration_frames(read: list[tuple[dict, list[_Piece]]], poses: list[Any], tracks: list[ViewTrack],
                        pieces: list[_Piece], runs: list[Path], config: FuseConfig, auto: bool) -> _Frames:
    """The calibration's frame for runs some of whose worlds were not taken: its units those a
    run whose world was taken found, else the ones of :data:`~wbcap.world.estimate.CALIBRATION_UNITS`
    in which the people the cameras saw meet nearest (:func:`_meeting`; the network's depths are
    metres); each camera's depth scale (:func:`_depth_scales`) from those people.

    Raises:
        InputError: the people, so scaled, meet within ``config.max_distance`` in none of the
            units (a calibration of other cameras, or clocks far apart).
    """
    from wbcap.fuse.level import LEVELLED, calibration_from_file
    from wbcap.world.estimate import CALIBRATION_UNITS

    first = {p.run: p for p in reversed(pieces)}  # (a run's files share its camera)

    def maps(per_metre: float) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        return {i: calibration_from_file(first[i].arrays["camera_rotation"], first[i].arrays["camera_position"],
                                         np.asarray(poses[i].rotation), np.asarray(poses[i].translation), per_metre)
                for i in range(len(runs))}

    unscaled = [run_names(runs)[i] for i, pose in enumerate(poses) if not pose.metric]
    if unscaled and len(unscaled) < len(runs):
        raise InputError(f"the runs' calibrations are of worlds with a scale and without one ({', '.join(unscaled)}: a "
                         "reconstruction's, as COLMAP's): are they of one calibration? run every camera with the same "
                         "--calibration")
    if unscaled:
        return _reconstruction_frames(poses, tracks, pieces, runs, config, auto, maps)

    known = sorted({str(((meta.get("world") or {}).get("calibration_check") or {}).get("units"))
                    for meta, run_pieces in read if all(p.taken for p in run_pieces)} & set(CALIBRATION_UNITS))
    scores: dict[str, float] = {}
    nearest: dict[str, list[tuple[int, int, float]]] = {}
    for name, per_metre in CALIBRATION_UNITS.items():
        if not known or name == known[0]:
            m = maps(per_metre)
            scores[name], nearest[name] = _meeting([t.moved(*m[t.view]) for t in tracks], config, auto)
    if len(known) > 1:
        raise InputError(f"the runs in the calibration's world found it in different units ({', '.join(known)}): are "
                         "they of one calibration? run them again with --world --calibration FILE")
    units = known[0] if known else min(scores, key=lambda k: scores[k])
    by = "the runs in its world" if known else "the people the cameras saw meet there"
    from_file = maps(CALIBRATION_UNITS[units])
    moved = [t.moved(*from_file[t.view]) for t in tracks]
    solved = _depth_scales(moved, nearest[units], len(runs))
    scales = solved or {v: 1.0 for v in range(len(runs))}
    apart = _meeting([t.scaled(scales[t.view]) for t in moved], config, auto)[0]
    if not apart <= config.max_distance:
        said = ", ".join(f"{v:.3g} m in {k}" for k, v in scores.items())
        raise InputError(f"the cameras' people do not meet in the calibration's frame in any units (the nearest "
                         f"apart: {said}; {apart:.3g} m in {units} with each camera's depth scaled; "
                         f"{setting('max_distance')} {config.max_distance:g}): are the runs of one calibration's "
                         f"cameras{'' if auto else ' and their videos synchronised (--offsets)'}?")
    if solved is None:
        low, high = DEPTH_SCALE_RANGE
        log.warning("the cameras' depth scales came out outside %g-%g (a person taken for another?): kept at 1", low, high)
    # (the runs' own grounds' up, a run in its camera's frame its camera's: only the floor fit's prior, 60 degrees)
    up = np.mean([a[:, 2] for a, _ in from_file.values()], axis=0)
    names = run_names(runs)  # (unique: runs a/cam and b/cam)
    taken_not = sorted({names[p.run] for p in pieces if not p.taken})  # (on their feet or in their cameras' frames)
    record = {"ground_from": LEVELLED, "units": units, "units_from": by, "units_meeting_m": scores,
              "depth_scales": {names[v]: s for v, s in scales.items()}, "runs_not_in_its_world": taken_not}
    log.info("%s: the calibration's world not taken (%s); fused in its frame (its units %s: %s; the people the cameras "
             "saw %.2f m apart with their depths scaled by %s), levelled by the fused people's feet",
             ", ".join(taken_not),
             "; ".join(sorted({str((read[i][0].get("world") or {}).get("calibration_note")
                                   or (read[i][0].get("world") or {}).get("reason") or "?")
                               for i in range(len(runs)) if names[i] in taken_not})),
             units, by, apart, ", ".join(f"{s:.3f}" for s in scales.values()))
    return _Frames(from_file=from_file, scales=scales, poses=poses, per_metre=CALIBRATION_UNITS[units],
                   up=up / np.linalg.norm(up), record=record)


#: ``fuse.json``'s ``world.units`` for a calibration without a scale (COLMAP's reconstruction),
#: its units per metre in ``world.per_metre``.
RECONSTRUCTION_UNITS = "the reconstruction's own"


def _reconstruction_frames(poses: list[Any], tracks: list[ViewTrack], pieces: list[_Piece], runs: list[Path],
                           config: FuseConfig, auto: bool, maps: Any) -> _Frames:
    """:func:`_calibration_frames` of a calibration without a scale (COLMAP's reconstruction):
    its units per metre first from the rays of the people two cameras saw at once
    (:func:`wbcap.fuse.level.reconstruction_scale`), then with each camera's depth scale
    (:func:`_depth_scales`) set so that the network's depths are right on average
    (:meth:`_Frames.rescaled`). ``maps(per_metre)``: each run's map into the calibration's frame.

    With ``config.units_per_metre`` (a length the user measured), that scale instead, each
    camera's depth scale then its own (as in a calibration in metres).

    Raises:
        InputError: no person two cameras saw at once tells the scale, or the people, so
            scaled, do not meet within ``config.max_distance``.
    """
    from wbcap.fuse.level import LEVELLED, reconstruction_scale

    unit = maps(1.0)
    loose = max(1.0, config.max_distance) if auto else config.max_distance
    given = config.units_per_metre
    per_metre, told = ((given, []) if given is not None else
                       reconstruction_scale([t.moved(*unit[t.view]) for t in tracks], config.min_overlap_s, loose))
    if per_metre is None:
        raise InputError("the calibration's world has no scale (a reconstruction's, as COLMAP's), and no person two "
                         f"cameras saw at once tells it (their rays meet within {loose:g} m at no depths of one "
                         f"person){'' if auto else ': are the videos synchronised (--offsets)?'}; give its scale "
                         f"({setting('units_per_metre')}: a length measured), a calibration in metres, or footage "
                         "where two cameras see someone at once")
    if given is None and not any(f.still for f in told):
        log.warning("the calibration's world has no scale, and only people in motion tell it (no one two cameras saw "
                    "stood still): it holds only as far as the videos are synchronised%s", (
                        "; with --offsets auto, someone standing still while two cameras see them tells it whatever "
                        "the clocks" if auto else " (--offsets)"))
    from_file = maps(per_metre)
    moved = [t.moved(*from_file[t.view]) for t in tracks]
    apart, pairs = _meeting(moved, config, auto)
    solved = _depth_scales(moved, pairs, len(runs))
    names = run_names(runs)  # (unique: runs a/cam and b/cam)
    taken_not = sorted({names[p.run] for p in pieces})
    record = {"ground_from": LEVELLED, "units": RECONSTRUCTION_UNITS, "per_metre": per_metre,
              "units_from": (f"given ({setting('units_per_metre')})" if given is not None else
                             "the people two cameras saw, triangulated (the network's depths right on average)"),
              "scale_pairs": [{"first": tracks[f.first].label, "second": tracks[f.second].label,
                               "per_metre": f.per_metre, "depth_ratio": f.depth_ratio, "apart_m": f.apart_m,
                               "rows": f.rows, "still": f.still} for f in told],
              "depth_scales": {name: 1.0 for name in names}, "runs_not_in_its_world": taken_not}
    up = np.mean([a[:, 2] for a, _ in from_file.values()], axis=0)
    frames = _Frames(from_file=from_file, scales={v: 1.0 for v in range(len(runs))}, poses=poses,
                     per_metre=per_metre, up=up / np.linalg.norm(up), record=record, scale_found=given is None)
    if solved is None:
        low, high = DEPTH_SCALE_RANGE
        log.warning("the cameras' depth scales came out outside %g-%g (a person taken for another?): kept at 1", low, high)
    elif frames.scale_found:
        frames = frames.rescaled(solved)
    else:  # (a scale given: each camera's depth scale its own, as in a calibration in metres)
        frames = dataclasses.replace(frames, scales=solved, record={**record, "depth_scales": {
            names[v]: x for v, x in solved.items()}})
    apart = _meeting([t.moved(*frames.from_file[t.view]).scaled(frames.scales[t.view]) for t in tracks], config,
                     auto)[0]
    if not apart <= config.max_distance:
        raise InputError(f"the cameras' people do not meet in the calibration's frame at the scale "
                         f"{'given' if given is not None else 'their rays give'} "
                         f"({frames.per_metre:.4g} of its units a metre; {apart:.3g} m apart with each camera's depth "
                         f"scaled; {setting('max_distance')} {config.max_distance:g}): are the runs of one "
                         f"reconstruction's cameras{'' if auto else ' and their videos synchronised (--offsets)'}? "
                         f"(a larger {setting('max_distance')} takes people further apart as one)")
    log.info("%s: a calibration without a scale (a reconstruction's); fused in its frame at %.4g of its units a metre "
             "(%s; the people %.2f m apart with their depths scaled by %s), levelled by the fused people's feet",
             ", ".join(taken_not), frames.per_metre,
             setting("units_per_metre") if given is not None else f"the rays of {len(told)} pair(s) of tracks", apart,
             ", ".join(f"{s:.3f}" for s in frames.scales.values()))
    return frames


def _levelled(people: list[tuple[list[int], int, list[FusedPiece]]], frames: _Frames, tracks: list[ViewTrack],
              pieces: list[_Piece], body: Any, record: dict
              ) -> tuple[list[tuple[list[int], int, list[FusedPiece]]], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """The fused people moved from the calibration's frame into the world of the floor their
    planted feet give (:func:`wbcap.fuse.level.fused_floor`, then
    :func:`wbcap.world.ground.world_from_ground` of it in that frame), and each track's camera there.

    Raises:
        InputError: their feet give no floor.
    """
    from wbcap.fuse.level import fused_floor
    from wbcap.world.ground import world_from_ground

    fit, count, why = fused_floor([p for _, _, fused in people for p in fused], body, frames.up)
    if fit is None:
        fix = ("a reconstruction's world (COLMAP's) has no up but the people's: give footage where the cameras see "
               "people's feet planted on the floor (each run's --world then finds its ground), or the cameras' "
               "calibration in a z-up world in metres" if frames.scale_found or frames.record.get("units") ==
               RECONSTRUCTION_UNITS else
               "a calibration whose world is z up with z = 0 the floor needs none (its runs then in its world)")
        raise InputError(f"the fused people's feet give no floor in the calibration's frame ({why}): {fix}")
    turn, shift = world_from_ground(fit.plane)  # (x = turn @ x_cal + shift: z up, the floor z = 0)
    moved = [(members, chosen, [p.moved(turn, shift, _rest_root(body, p.betas)) for p in fused])
             for members, chosen, fused in people]
    cameras = {}
    for i, piece in enumerate(pieces):
        rotation, centre = frames.camera(piece.run)
        cameras[i] = (turn @ rotation, turn @ centre + shift)
        record["runs"][piece.run]["camera_position_m"] = [float(v) for v in cameras[i][1]]  # (in the files' world)
    tilt = float(np.degrees(np.arccos(np.clip(fit.plane.normal[2], -1.0, 1.0))))
    record["world"]["floor"] = {"normal_in_calibration": [float(v) for v in fit.plane.normal],
                                "origin_height_m": float(fit.plane.offset), "sole_points": count,
                                "inlier_ratio": fit.inlier_ratio, "rms_m": fit.rms,
                                "angle_from_calibration_z_deg": tilt}
    log.info("floor: %d planted sole points of the fused people, %.0f %% on one plane (rms %.1f cm); its up %.1f deg "
             "from the calibration's z, its origin %.2f m above it", count, 100 * fit.inlier_ratio, 100 * fit.rms, tilt,
             fit.plane.offset)
    return moved, cameras


def _found_offsets(tracks: list[ViewTrack], runs: list[Path], config: FuseConfig
                   ) -> tuple[tuple[float, ...], list[dict[str, Any]]]:
    """``--offsets auto``: each run's offset (seconds added to its clock, 0 for the first) found
    from the people's motion, and the camera pairs that told it (for ``fuse.json``).

    Each pair of cameras' closest tracks are lined up within :data:`AUTO_SEARCH_S` by their
    pelvises, then to part of a frame by their body poses
    (:func:`~wbcap.fuse.views.clock_shifts`); one clock a camera from all pairs by least squares
    (:func:`~wbcap.fuse.views.clock_offsets`), pairs that disagree with the others by two
    frames or more said in one warning.

    Raises:
        InputError: a camera whose clock nothing tells (no one moved while it and a camera linked
            to the first saw them).
    """
    from wbcap.fuse.views import clock_shifts

    found = clock_shifts(tracks, config, max_shift_s=AUTO_SEARCH_S,
                         min_overlap_s=max(AUTO_MIN_OVERLAP_S, config.min_overlap_s))
    shifts = [s for s in found if s.by_poses]  # (pelvises alone: two people whose paths cross, two labs' worlds)
    lost = _unlinked(shifts, runs)
    if lost:
        unconfirmed = [f"{tracks[s.first].label} ~ {tracks[s.second].label} met {s.apart_m:.2f} m apart at "
                       f"{-s.shift_s + 0.0:+.3f} s, their poses not" for s in found if not s.by_poses]
        raise InputError(f"{setting('offsets')} {AUTO_OFFSETS}: nothing tells {', '.join(lost)}'s clock (no person it "
                         f"and another camera saw, within {AUTO_SEARCH_S:g} s of each other's clocks, moved so that one "
                         "shift of the clocks brings their pelvises and poses together"
                         + (f"; {'; '.join(unconfirmed)}" if unconfirmed else "") + f"); give {setting('offsets')} as "
                         "seconds, one a run")
    offsets = _solved_offsets(shifts, runs, AUTO_OFFSETS, 2.0 / max(t.fps for t in tracks),
                              lambda s: f"{tracks[s.first].label} ~ {tracks[s.second].label} {s.apart_m:.2f} m apart",
                              "a person taken for another?")
    return offsets, [{"first": tracks[s.first].label, "second": tracks[s.second].label, "shift_s": s.shift_s,
                      "apart_m": s.apart_m, "by_poses": s.by_poses} for s in shifts]


def _solved_offsets(shifts: list[Any], runs: list[Path], how: str, tolerance_s: float, told_by: Any, suspect: str
                    ) -> tuple[float, ...]:
    """Each run's offset (seconds added to its clock, 0 for the first) from pairwise ``shifts``
    (``first_view``, ``second_view``, ``shift_s``: :func:`~wbcap.fuse.views.clock_offsets`'s least
    squares, one clock a camera), the pairs off the solution by ``tolerance_s`` or more said in
    one warning (``suspect``: its likely cause), the offsets at info with each pair
    (``told_by(shift)``: what told it). ``how``: ``auto`` or ``audio``, for the messages."""
    from wbcap.fuse.views import clock_offsets

    clocks = clock_offsets(shifts, list(range(len(runs))))
    off = [f"{runs[s.first_view].name} and {runs[s.second_view].name} by "
           f"{s.shift_s - (clocks[s.second_view] - clocks[s.first_view]):+.4f} s ({told_by(s)})" for s in shifts
           if abs(s.shift_s - (clocks[s.second_view] - clocks[s.first_view])) >= tolerance_s]
    if off:  # (three or more cameras whose pairs do not add up)
        log.warning("%s %s: the camera pairs' clocks do not add up (%s off the clocks that fit all pairs best): %s "
                    "check the fused files, or give %s as seconds", setting("offsets"), how, "; ".join(off), suspect,
                    setting("offsets"))
    offsets = tuple(-clocks[v] + 0.0 for v in range(len(runs)))
    log.info("%s %s: %s (%s)", setting("offsets"), how, ",".join(f"{o:.4f}" for o in offsets),
             "; ".join(f"{told_by(s)}: {runs[s.second_view].name}'s clock {-s.shift_s + 0.0:+.4f} s against "
                       f"{runs[s.first_view].name}'s" for s in shifts))
    return offsets


def _unlinked(shifts: list[Any], runs: list[Path]) -> list[str]:
    """The runs (names) no chain of ``shifts`` (``first_view``, ``second_view``) links to the first."""
    linked, grew = {0}, True
    while grew:
        grew = False
        for s in shifts:
            if (s.first_view in linked) != (s.second_view in linked):
                linked |= {s.first_view, s.second_view}
                grew = True
    return [runs[v].name for v in range(len(runs)) if v not in linked]


def _run_video(run: Path, meta: dict) -> Path:
    """The video a run was made from (``.wbcap/run.json``'s absolute ``source``, else
    ``meta.json``'s where absolute), checked to be there and of the size it had.

    Raises:
        InputError: its path unknown, the file gone, or another file there now.
    """
    from wbcap.io.run_folder import read_run_file

    run_file = read_run_file(run) or {}
    source = next((v for v in (run_file.get("source"), meta.get("source")) if isinstance(v, str) and os.path.isabs(v)),
                  None)
    if source is None:
        raise InputError(f"{run}: its video's absolute path is not known (neither .wbcap/run.json nor meta.json holds "
                         f"one); give {setting('offsets')} as seconds, or {AUTO_OFFSETS}")
    path = Path(source)
    if path.is_dir():
        raise InputError(f"{run}: made from the images in {path}, which have no sound; give {setting('offsets')} as "
                         f"seconds, or {AUTO_OFFSETS}")
    if not path.is_file():
        raise InputError(f"{run}: its video {path} is not there (moved or removed); put it back, or give "
                         f"{setting('offsets')} as seconds, or {AUTO_OFFSETS}")
    size = run_file.get("source_size")
    if isinstance(size, int) and not isinstance(size, bool) and path.stat().st_size != size:
        raise InputError(f"{path}: not the video {run} was made from (its size changed); give {setting('offsets')} as "
                         f"seconds, or {AUTO_OFFSETS}")
    return path


def _sound_offsets(runs: list[Path], videos: list[Path]) -> tuple[tuple[float, ...], list[dict[str, Any]]]:
    """``--offsets audio``: each run's offset (seconds added to its clock, 0 for the first) from
    the sound of its video (``videos``, one a run: :func:`_run_video`): every pair of cameras'
    sound, the first :data:`AUDIO_SECONDS` (and the search) of each at 8 kHz, lined up within
    :data:`AUTO_SEARCH_S` by :func:`wbcap.fuse.sound.sound_shift` (a pair not
    :attr:`~wbcap.fuse.sound.SoundShift.taken`, weak or repeating, left out), one clock a camera
    by :func:`_solved_offsets`, pairs that do not add up within a millisecond said in one warning.
    Returns the offsets and the pairs (for ``fuse.json``).

    Raises:
        InputError: a video without sound or with silent sound, or whose sound shares none with
            the others' (one line naming it, with ``--offsets auto`` as the other way).
    """
    from wbcap.fuse.sound import MIN_STRENGTH, MIN_UNIQUE, sound_shift
    from wbcap.io.audio import read_audio

    sounds = [read_audio(video, max_seconds=AUDIO_SECONDS + AUTO_SEARCH_S) for video in videos]
    silent = [runs[i].name for i, x in enumerate(sounds) if not (np.abs(x.samples) > 1e-4).any()]
    if silent:
        raise InputError(f"{setting('offsets')} {AUDIO_OFFSETS}: {', '.join(silent)}'s sound is silent (no sample above "
                         f"1e-4); use {setting('offsets')} {AUTO_OFFSETS} (the people's motion) or give it as seconds")
    found = [sound_shift(sounds[i], sounds[j], AUTO_SEARCH_S, i, j)
             for i in range(len(runs)) for j in range(i + 1, len(runs))]
    shifts = [s for s in found if s is not None and s.taken]
    lost = _unlinked(shifts, runs)
    if lost:
        weak = "; ".join(f"{runs[s.first_view].name}-{runs[s.second_view].name} " +
                         (f"strength {s.strength:.1f} (under {MIN_STRENGTH:g})" if s.strength < MIN_STRENGTH else
                          f"matching at other shifts too (unique {s.unique:.2f}, under {MIN_UNIQUE:g}: a sound that "
                          "repeats, a beat, a metronome)")
                         for s in found if s is not None and not s.taken)
        raise InputError(f"{setting('offsets')} {AUDIO_OFFSETS}: no sound tells {', '.join(lost)}'s clock (none it and "
                         f"another camera recorded within {AUTO_SEARCH_S:g} s of each other's clocks"
                         + (f"; {weak}" if weak else "") +
                         f"); use {setting('offsets')} {AUTO_OFFSETS} (the people's motion) or give it as seconds")
    offsets = _solved_offsets(shifts, runs, AUDIO_OFFSETS, 0.001, lambda s: f"sound, strength {s.strength:.1f}",
                              "an echo, or another sound taken for one?")
    return offsets, [{"first": runs[s.first_view].name, "second": runs[s.second_view].name, "shift_s": s.shift_s,
                      "strength": s.strength, "unique": s.unique} for s in shifts]


def _say_clocks(tracks: list[ViewTrack], runs: list[Path], offsets: tuple[float, ...], config: FuseConfig) -> None:
    """One warning where the cameras' clocks look shifted (:func:`~wbcap.fuse.views.clock_shifts`,
    one offset a camera by :func:`~wbcap.fuse.views.clock_offsets`) by 1.5 rows or more, with the
    ``--offsets`` that lines them up: a clock a few frames off fuses worse than either camera (a
    trial: 79 mm against 8-22 mm)."""
    from wbcap.fuse.views import clock_offsets, clock_shifts

    shifts = [s for s in clock_shifts(tracks, config) if s.by_poses]  # (the pelvises alone: _found_offsets)
    clocks = clock_offsets(shifts, list(range(len(runs))))
    step = 1.0 / max(t.fps for t in tracks)
    if all(abs(c) < 1.5 * step for c in clocks.values()):
        return
    suggested = ",".join(f"{offsets[v] - clocks[v] + 0.0:.3f}" for v in range(len(runs)))
    pairs = "; ".join(f"{tracks[s.first].label} ~ {tracks[s.second].label} {s.apart_m:.2f} m apart with "
                      f"{runs[s.second_view].name}'s clock {s.shift_s:+.3f} s later" +
                      (f", {s.unshifted_m:.2f} m without" if s.unshifted_m is not None else "") for s in shifts)
    log.warning("the cameras' clocks look shifted (%s): the videos may not be synchronised; try %s %s (now %s), "
                "or %s %s", pairs, setting("offsets"), suggested, ",".join(f"{o:.3f}" for o in offsets),
                setting("offsets"), AUTO_OFFSETS)


def _swap(out: Path, stage: Path, names: list[str], earlier: list[Path], old: Path) -> list[Path]:
    """Put the files ``names`` made in ``stage`` in ``out`` in place of an earlier fusion's files
    (``earlier``): those moved aside into ``old`` first, the new ones moved in (renames in one
    file system); on any failure or interruption the new ones taken out and the earlier ones put
    back, so ``out`` is as it was. Returns the new files' paths."""
    aside: list[Path] = []
    moved: list[Path] = []
    try:
        for path in earlier:
            os.replace(path, old / path.name)
            aside.append(path)
        for name in names:
            os.replace(stage / name, out / name)
            moved.append(out / name)
    except BaseException:
        for path in moved:
            with contextlib.suppress(OSError):
                path.unlink()
        for path in aside:
            with contextlib.suppress(OSError):
                os.replace(old / path.name, path)
        raise
    return moved


def _fuse_people(people: list[list[int]], tracks: list[ViewTrack], body: Any, config: FuseConfig
                 ) -> list[tuple[list[int], int, list[FusedPiece]]]:
    """Each person's ``(members, chosen, pieces)``: their tracks, the one of the camera that saw
    them most (the files' source camera) and the fused pieces (:func:`~wbcap.fuse.views.fuse_person`)."""
    from wbcap.fuse.views import fuse_person

    out = []
    for members in people:
        chosen = max(members, key=lambda i: (int(tracks[i].valid.sum()), -i))
        fused = fuse_person([tracks[i] for i in members], lambda b: _rest_root(body, b), config,
                            reference_view=tracks[chosen].view)
        out.append((members, chosen, fused))
    return out


def _write_people(stage: Path, people: list[tuple[list[int], int, list[FusedPiece]]], tracks: list[ViewTrack],
                  pieces: list[_Piece], cameras: dict[int, tuple[np.ndarray, np.ndarray]], distances: dict, body: Any,
                  gender: str, job: FuseJob, record: dict, folder: list[str]) -> list[str]:
    """Each person's fused files written into ``stage`` (``cameras``: each track's camera, OpenCV
    axes -> the files' world and its centre there; ``folder``: each run's name), their entries
    added to ``record``, each run's camera too; returns the names of the files written.

    A person's GLB holds their source camera as ``source_camera`` and every other run's camera
    as ``camera_<run>`` (:class:`wbcap.export.gltf.PlacedCamera`)."""
    from wbcap.export.amass import npz_camera
    from wbcap.export.animation import write_animations
    from wbcap.export.gltf import PlacedCamera
    from wbcap.fuse.views import seen_together

    written: list[str] = []
    ground = record.get("world", {}).get("ground_from", "calibration")
    views: dict[int, PlacedCamera] = {}  # (each run's camera, from its first track file)
    for i, piece in enumerate(pieces):
        intrinsics = npz_camera(piece.arrays)
        if piece.run in views or intrinsics is None:
            continue
        views[piece.run] = PlacedCamera(f"camera_{folder[piece.run]}", intrinsics, *cameras[i])
        record["runs"][piece.run].update(
            camera_rotation=[[float(v) for v in row] for row in cameras[i][0]],
            camera={"focal_px": [float(v) for v in intrinsics.focal],
                    "principal_point_px": [float(v) for v in intrinsics.princpt],
                    "image_size_px": [int(v) for v in intrinsics.image_size]})
    for k, (members, chosen, fused) in enumerate(people):
        reference = pieces[chosen]
        names = [f"track_{k}" if len(fused) == 1 else f"track_{k}_part{n + 1}" for n in range(len(fused))]
        others = tuple(v for run, v in sorted(views.items()) if run != reference.run)
        for name, piece in zip(names, fused):
            arrays = _piece_arrays(piece, reference, *cameras[chosen], ground, body, gender)
            written += [p.name for p in write_animations(stage, name, arrays, body, job.export,
                                                         camera=npz_camera(reference.arrays), other_cameras=others)]
        pairs = {(i, j): d for (i, j), d in distances.items() if i in members and j in members}
        apart = {f"{tracks[i].label} ~ {tracks[j].label}": round(d, 4) for (i, j), d in pairs.items()
                 if seen_together(tracks[i], tracks[j], job.config.min_overlap_s)}
        handed = {f"{tracks[i].label} ~ {tracks[j].label}": round(d, 4) for (i, j), d in pairs.items()
                  if f"{tracks[i].label} ~ {tracks[j].label}" not in apart}
        record["people"].append({
            "track": k, "tracks": [tracks[i].label for i in members],
            "source_camera": tracks[chosen].label,
            "median_distance_m": apart, "handover_m": handed, "files": names,
            "rows": [len(p.times) for p in fused], "cameras_per_row": [float(np.mean(p.views)) for p in fused]})
        said = [f"{d:.2f} m apart" for d in apart.values()] + [f"handed over {d:.2f} m apart" for d in handed.values()]
        log.info("person %d: %s (%s) -> %s", k, ", ".join(tracks[i].label for i in members),
                 ", ".join(said) or "one camera", ", ".join(names))
    return written

"""``wbcap fuse``: several calibrated cameras' runs into one motion per person.

Reads each run folder's track files (``track_<id>.npz``: AMASS files in the calibration's world,
written by ``wbcap run --world --calibration`` where the calibration's floor was taken:
``ground_from`` ``"calibration"``), finds which tracks are one person and fuses them
(:mod:`wbcap.fuse.views`), and writes each person's files into OUT as ``wbcap run`` writes a
track's (``track_<k>.npz``, ``.glb``, ``.trc``, ...: :func:`wbcap.export.animation.write_animations`)
with ``fuse.json``: which tracks of which runs each person holds, how far apart the cameras put
them, the runs' cameras and the settings.

A fused person's files carry the camera that saw them longest as their ``source_camera`` (the
npz's ``camera_rotation``, ``camera_position`` and intrinsics, the GLB's camera node); their frame
is the calibration's world (``frame`` ``"world"``, ``ground_from`` ``"calibration"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wbcap.errors import InputError, setting
from wbcap.export.animation import AnimationExport
from wbcap.fuse.views import FuseConfig, FusedPiece, ViewTrack

__all__ = ["AUTO_OFFSETS", "FUSE_FILE", "FuseJob", "FuseResult", "fuse_runs"]

log = logging.getLogger(__name__)

#: The record of a fusion in its output folder.
FUSE_FILE = "fuse.json"

#: The largest ``--offsets`` value, seconds (a day: anything more is no synchronisation).
MAX_OFFSET_S = 86400.0

#: ``FuseJob.offsets`` (``--offsets auto``): the clocks found from the people's motion.
AUTO_OFFSETS = "auto"

#: Seconds either way over which ``--offsets auto`` looks for a camera's clock against another's.
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
            :data:`AUTO_OFFSETS`: found from the people's motion (:func:`_found_offsets`).
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
    """One run's track file as read: the run's index, the file, its arrays."""

    run: int
    path: Path
    arrays: dict[str, np.ndarray]


def _read_run(run: Path, index: int) -> tuple[dict, list[_Piece]]:
    """``(meta.json, its track files)`` of one run folder.

    Raises:
        InputError: not a run folder, no track file, a track file that is not in a calibration's
            world, or a damaged one: one line naming the file and the fix.
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
        if frame != "world" or ground != "calibration":
            world = meta.get("world") or {}
            why = world.get("reason") if frame != "world" else world.get("calibration_note")
            where = ("in the camera's frame" + (f" (its --world fell back: {why})" if why else "") if frame != "world"
                     else "on the ground found from the feet, not in the calibration's world" +
                     (f" (its --world did not take the calibration: {why})" if why else ""))
            posed = isinstance(meta.get("calibration"), dict) and meta["calibration"].get("rotation") is not None
            fix = (f"if its calibration is right, `wbcap export {run} --world --trust-calibration --format npz` writes "
                   "the run's tracks in its world" if posed and (why is None or trust_helps(str(why))) else
                   "fix its calibration (the camera's pose: z up, z = 0 the floor) and run it again" if posed else
                   "run its video with --world --calibration FILE (the camera's pose)")
            raise InputError(f"{path}: {where}; fuse takes tracks in the calibration's world: {fix}")
        pieces.append(_Piece(run=index, path=path, arrays=arrays))
    return meta, pieces


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


def _piece_arrays(piece: FusedPiece, reference: _Piece, body: Any, gender: str) -> dict[str, np.ndarray]:
    """A fused piece as one AMASS file's arrays (:func:`wbcap.export.amass.amass_arrays`), its
    source camera ``reference``'s."""
    from wbcap.export.amass import amass_arrays, camera_to_world, npz_camera
    from wbcap.world.estimate import WorldFrame
    from wbcap.world.ground import GroundPlane

    rotation = np.asarray(reference.arrays["camera_rotation"], np.float64)  # camera -> world
    position = np.asarray(reference.arrays["camera_position"], np.float64)
    rest = _rest_root(body, piece.betas)
    t = len(piece.times)
    # (amass_arrays takes camera-frame parameters and the world's pose: the reference camera's)
    orient, transl = camera_to_world(piece.poses[:, 0], piece.trans, rest, rotation.T, -rotation.T @ position)
    hands_mean = body.hands_mean()
    frame = WorldFrame(ground=GroundPlane(normal=rotation[2], offset=float(position[2])), world_from_camera=rotation,
                       camera_position=position, ground_from="calibration")
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
    from wbcap.fuse.views import associate
    from wbcap.io.run_folder import run_body_model

    runs = _run_folders([Path(r).expanduser() for r in job.runs])
    if len(runs) < 2:
        raise InputError(f"fuse takes two or more run folders (one a camera); got {len(runs)}")
    if len({r.resolve() for r in runs}) < len(runs):
        raise InputError("a run folder is given twice; give each camera's run once")
    auto = isinstance(job.offsets, str)
    if auto and job.offsets != AUTO_OFFSETS:
        raise InputError(f"{setting('offsets')}: {job.offsets!r}: seconds, one a run, or {AUTO_OFFSETS!r}")
    offsets = tuple(job.offsets) if job.offsets is not None and not auto else (0.0,) * len(runs)
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
    positions = [np.asarray(pieces[0].arrays["camera_position"], np.float64) for _, pieces in read]
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            if np.linalg.norm(positions[i] - positions[j]) < 0.01:
                raise InputError(f"{runs[i]} and {runs[j]}: the same camera (its calibrated centre within 1 cm); give "
                                 "each camera's run once")
    files = {str((meta.get("calibration") or {}).get("file", "")) for meta, _ in read}
    if len(files) > 1:
        log.warning("the runs' calibrations come from different files (%s): their worlds must be one (the same "
                    "lab frame)", ", ".join(sorted(Path(f).name or "?" for f in files)))
    pieces = [p for _, run_pieces in read for p in run_pieces]
    for piece in pieces[1:]:  # (one network's sizes: runs of other weights have other ones)
        for key, size in (("betas", pieces[0].arrays["betas"].size), ("expression", pieces[0].arrays["expression"].shape[1])):
            mine = piece.arrays[key].size if key == "betas" else piece.arrays[key].shape[1]
            if mine != size:
                raise InputError(f"{piece.path}: {mine} {key} coefficients where {pieces[0].path} has {size}: runs of "
                                 "networks of other sizes; run every camera with the same checkpoint")
    job.export.check_available()  # (FBX without Blender: said before any work)
    out = Path(job.out).expanduser()
    created, earlier = _prepare_out(out, runs, job.overwrite)  # (checked before the slow work)
    record: dict[str, Any] = {
        "runs": [{"folder": os.path.abspath(run), "offset_s": offsets[i],
                  "calibration_file": (meta.get("calibration") or {}).get("file"),
                  "camera_position_m": [float(v) for v in positions[i]]} for i, (run, (meta, _)) in
                 enumerate(zip(runs, read))],
        "settings": asdict(job.config), "gender": gender, "offsets": AUTO_OFFSETS if auto else "given",
        "people": []}
    try:
        body = SMPLXLayer.from_file(run_body_model(runs[0], gender, job.body_models, job.allow_pickle),
                                    allow_pickle=job.allow_pickle)
        names = [r.name for r in runs]
        folder = [r.name if names.count(r.name) == 1 else str(r) for r in runs]  # (runs a/cam and b/cam: their paths)
        tracks = [_view_track(p, f"{folder[p.run]}/{p.path.stem}", offsets[p.run], body) for p in pieces]
        if auto:
            offsets, record["clock_pairs"] = _found_offsets(tracks, runs, job.config)
            tracks = [dataclasses.replace(t, times=t.times + offsets[t.view]) for t in tracks]
            for entry, offset in zip(record["runs"], offsets):
                entry["offset_s"] = offset
        people, distances = associate(tracks, job.config)
        if not auto:
            _say_clocks(tracks, runs, offsets, job.config)
        # (made beside OUT, then moved in: its files named as OUT's in messages; earlier ones set aside likewise)
        with staging_sibling(out) as stage, staging_sibling(out) as old:
            made = _write_people(stage, people, tracks, pieces, distances, body, gender, job, record)
            atomic_write_text(stage / FUSE_FILE, json.dumps(record, indent=1) + "\n")
            written = _swap(out, stage, [*made, FUSE_FILE], earlier, old)
    except BaseException:  # (Ctrl-C included) a folder this fusion made and nothing went into goes again
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return FuseResult(out=out, people=len(people), tracks=len(tracks), files=tuple(written), cameras=len(runs))


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
    from wbcap.fuse.views import clock_offsets, clock_shifts

    views = list(range(len(runs)))
    shifts = clock_shifts(tracks, config, max_shift_s=AUTO_SEARCH_S,
                          min_overlap_s=max(AUTO_MIN_OVERLAP_S, config.min_overlap_s))
    linked, grew = {0}, True
    while grew:
        grew = False
        for s in shifts:
            if (s.first_view in linked) != (s.second_view in linked):
                linked |= {s.first_view, s.second_view}
                grew = True
    lost = [runs[v].name for v in views if v not in linked]
    if lost:
        raise InputError(f"{setting('offsets')} {AUTO_OFFSETS}: nothing tells {', '.join(lost)}'s clock (no one moved "
                         f"while it and another camera saw them, within {AUTO_SEARCH_S:g} s of each other's clocks); "
                         f"give {setting('offsets')} as seconds, one a run")
    clocks = clock_offsets(shifts, views)
    step = 1.0 / max(t.fps for t in tracks)
    pairs, off = [], []
    for s in shifts:
        residual = s.shift_s - (clocks[s.second_view] - clocks[s.first_view])
        if abs(residual) >= 2 * step:
            off.append(f"{runs[s.first_view].name} and {runs[s.second_view].name} by {residual:+.3f} s "
                       f"({tracks[s.first].label} ~ {tracks[s.second].label})")
        pairs.append({"first": tracks[s.first].label, "second": tracks[s.second].label, "shift_s": s.shift_s,
                      "apart_m": s.apart_m, "by_poses": s.by_poses})
    if off:  # (three or more cameras: the pairs' shifts do not add up)
        log.warning("%s %s: the camera pairs' clocks do not add up (%s off the clocks that fit all pairs best): a "
                    "person taken for another? check the fused files, or give %s as seconds", setting("offsets"),
                    AUTO_OFFSETS, "; ".join(off), setting("offsets"))
    offsets = tuple(-clocks[v] + 0.0 for v in views)
    log.info("%s %s: %s (%s)", setting("offsets"), AUTO_OFFSETS, ",".join(f"{o:.4f}" for o in offsets),
             "; ".join(f"{tracks[s.first].label} ~ {tracks[s.second].label} {s.apart_m:.2f} m apart with "
                       f"{runs[s.second_view].name}'s clock {-s.shift_s + 0.0:+.4f} s"
                       + ("" if s.by_poses else " (to a frame: the poses told nothing)") for s in shifts))
    return offsets, pairs


def _say_clocks(tracks: list[ViewTrack], runs: list[Path], offsets: tuple[float, ...], config: FuseConfig) -> None:
    """One warning where the cameras' clocks look shifted (:func:`~wbcap.fuse.views.clock_shifts`,
    one offset a camera by :func:`~wbcap.fuse.views.clock_offsets`) by 1.5 rows or more, with the
    ``--offsets`` that lines them up: a clock a few frames off fuses worse than either camera (a
    trial: 79 mm against 8-22 mm)."""
    from wbcap.fuse.views import clock_offsets, clock_shifts

    shifts = clock_shifts(tracks, config)
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


def _write_people(stage: Path, people: list[list[int]], tracks: list[ViewTrack], pieces: list[_Piece],
                  distances: dict, body: Any, gender: str, job: FuseJob, record: dict) -> list[str]:
    """Each person's fused files written into ``stage``, their entries added to ``record``;
    returns the names of the files written."""
    from wbcap.export.amass import npz_camera
    from wbcap.export.animation import write_animations
    from wbcap.fuse.views import fuse_person

    written: list[str] = []
    for k, members in enumerate(people):
        group = [tracks[i] for i in members]
        chosen = max(members, key=lambda i: (int(tracks[i].valid.sum()), -i))  # (the camera that saw them most)
        reference = pieces[chosen]
        fused = fuse_person(group, lambda b: _rest_root(body, b), job.config, reference_view=tracks[chosen].view)
        names = [f"track_{k}" if len(fused) == 1 else f"track_{k}_part{n + 1}" for n in range(len(fused))]
        for name, piece in zip(names, fused):
            written += [p.name for p in write_animations(stage, name, _piece_arrays(piece, reference, body, gender),
                                                         body, job.export, camera=npz_camera(reference.arrays))]
        apart = {f"{tracks[i].label} ~ {tracks[j].label}": round(d, 4) for (i, j), d in distances.items()
                 if i in members and j in members}
        record["people"].append({
            "track": k, "tracks": [tracks[i].label for i in members],
            "source_camera": tracks[chosen].label,
            "median_distance_m": apart, "files": names,
            "rows": [len(p.times) for p in fused], "cameras_per_row": [float(np.mean(p.views)) for p in fused]})
        log.info("person %d: %s (%s) -> %s", k, ", ".join(tracks[i].label for i in members),
                 ", ".join(f"{d:.2f} m apart" for d in apart.values()) or "one camera", ", ".join(names))
    return written

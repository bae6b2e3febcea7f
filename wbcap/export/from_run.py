"""``wbcap export RUN``: rebuild a finished run's per-track files from its ``params.jsonl``.

No video is decoded and no network runs: the smoothed parameters of ``params.jsonl``
(:func:`wbcap.export.params_jsonl.read_params_jsonl`), the clock and camera of ``meta.json``
(:func:`wbcap.io.run_folder.read_meta`) and the SMPL-X model file are all it reads. The files
are the ones ``wbcap run`` writes with the same settings (``track_<id>.npz`` byte for byte), laid
on the same regular clock (:func:`wbcap.export.track_npz.track_segments`). With ``--world`` the
ground is estimated from all the run's tracks, as ``wbcap run --world`` does, so a run made
without it can be grounded afterwards (and a run made with it, on the CPU, gives the same files again); each
file says its frame itself (the npz's ``frame`` and camera pose, the GLB's extras and camera node).
Without ``--world`` or ``--camera`` the files are written in the run's frame (``meta.json``'s
``frame``): re-exporting a ``--world`` run, say as FBX, grounds it again rather than writing that
file alone in the camera frame (a user trial).

Where the files go (``--dest``, default the run folder itself):

* the run folder: its track files of the exported formats and tracks that this export does not
  write again are removed (as ``wbcap run``'s pass 2 does, :func:`wbcap.io.run_folder.track_files`),
  so ``track_2.glb`` never stays beside the ``track_2_part1.glb`` of a smaller ``--max-gap``; an
  export into another frame than the folder's also rewrites the exported tracks' files of the
  other formats there, so that the folder stays in one frame (before, ``--world`` with the
  default ``--format glb`` left the npz files in the camera frame under a ``meta.json`` saying
  "world": a user trial); and ``meta.json`` follows the files (:func:`_update_meta`: ``max_gap``,
  ``frame``, ``world``);
* another folder: created when missing; an earlier export there (of this run or another) is
  replaced in the same way, file by file: the exported tracks' files of the exported formats are
  written and their stale pieces removed, any other file is left alone. A folder holding another
  ``wbcap run`` (``params.jsonl``, ``meta.json`` or ``.wbcap/``) is refused: its track files belong
  to its own parameters (export into it with ``wbcap export`` of that folder instead).

Bad input is refused before anything is written or created: no format to write (``--format
none``), a destination that cannot be written in, another run's folder, a folder in it where a
track file goes, a damaged ``params.jsonl`` (:func:`~wbcap.export.params_jsonl.read_params_jsonl`:
a line whose values are missing, of another length, not finite, repeated or out of time order).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wbcap.errors import InputError, WbcapError, setting
from wbcap.export.animation import FORMATS, AnimationExport

if TYPE_CHECKING:
    from wbcap.world.estimate import WorldConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportJob:
    """What ``wbcap export`` was asked to do (built once by the CLI).

    Attributes:
        run: a finished ``wbcap run`` folder (holds ``params.jsonl``).
        export: formats and the exact option.
        body_models: SMPL-X file or folder (None: the model the run was made with while it exists,
            :func:`wbcap.io.run_folder.recorded_body_models`, else the usual places,
            :func:`wbcap.body.model_files.find_body_model`).
        gender: None = the run's (``meta.json``).
        allow_pickle: also accept a ``.pkl`` model file.
        dest: where to write (default: the run folder).
        max_gap: seconds; None = the run's.
        tracks: only these track ids (None = all).
        frame: ``"world"``: estimate the ground from all the run's tracks and write the files in
            its world (:func:`wbcap.world.estimate.ground_tracks`); ``"camera"``: the camera's
            frame; None: the run's (``meta.json``'s ``frame``, ``"camera"`` for runs without one).
        world: the ground estimate's settings for the world frame (None: the defaults).
        warn_unfinished: say when the run's outputs are unfinished (a pass 2 that was stopped);
            False where the caller said it already (``wbcap view``, which makes missing GLBs).
    """

    run: str
    export: AnimationExport
    body_models: str | None = None
    gender: str | None = None
    allow_pickle: bool = False
    dest: str | None = None
    max_gap: float | None = None
    tracks: tuple[int, ...] | None = None
    frame: str | None = None
    world: WorldConfig | None = None
    warn_unfinished: bool = True

    def __post_init__(self) -> None:
        """Raises ValueError for a ``frame`` other than "world", "camera" or None, or ``world``
        settings with ``frame="camera"``. ``world`` settings alone mean ``frame="world"`` (how a
        Python caller asked for the world frame before ``frame`` was there)."""
        if self.frame not in (None, "world", "camera"):
            raise ValueError(f"frame must be 'world', 'camera' or None (the run's), got {self.frame!r}")
        if self.world is not None and self.frame is None:
            object.__setattr__(self, "frame", "world")
        if self.world is not None and self.frame == "camera":
            raise ValueError("world settings were given with frame='camera'; drop one of them")



def _track_file_stamps(folder: Path) -> dict[Path, tuple[int, int]]:
    """``{track file: (inode, mtime in ns)}`` of the track files in ``folder`` (none when it is missing)."""
    from wbcap.io.run_folder import track_files

    stamps = {}
    for path in track_files(folder):  # (none in a folder that is not there)
        with contextlib.suppress(OSError):
            st = path.stat()
            stamps[path] = (st.st_ino, st.st_mtime_ns)
    return stamps


def _say_stopped(dest: Path, before: dict[Path, tuple[int, int]]) -> None:
    """After a stop: say which track files this export wrote (each file is written whole, under a
    temporary name) and that the others are missing or the previous export's; nothing when it
    wrote none (stopped while estimating the ground, say)."""
    after = _track_file_stamps(dest)
    written = sorted(p for p, stamp in after.items() if before.get(p) != stamp)
    if not written:
        return
    older = " or an earlier export's" if set(before) - set(written) else ""
    log.warning("%s: stopped after writing %d track file(s) (e.g. %s); the others are missing%s: run the same command "
                "again to write them all", dest, len(written), written[0].name, older)


def _clock_rate(meta: dict | None, frames: dict[int, float]) -> float:
    """The run's clock: ``meta.json``'s ``fps``, or for runs that predate it the median frame rate."""
    if meta and meta.get("fps"):
        return float(meta["fps"])
    times = np.asarray(sorted(frames.values()))
    if times.size < 2:
        return 30.0
    return float(1.0 / np.median(np.diff(times)))


def export_run(job: ExportJob) -> list[Path]:
    """Write the per-track files of ``job``; returns them.

    Raises:
        InputError: no format to write, not a run folder, a destination that is another run's
            folder or cannot be written in or holds a folder named as a track file it writes, a
            damaged or empty ``params.jsonl``, an unknown track id, a missing SMPL-X model (each
            one line naming the file and the fix); all before any file is written.
    """
    from wbcap.atomic import check_writable_destination
    from wbcap.io.run_folder import hold_folder, reading_folder, unfinished_outputs_note

    if not job.export.formats:  # `--format none`, "" or ",": nothing would be written
        raise InputError(f"{setting('formats', api='export.formats')}: no format to write; "
                         f"choose one or more of {', '.join(FORMATS)}")
    job.export.check_available()
    run = Path(job.run).expanduser()
    if not run.is_dir():
        raise InputError(f"{run}: no such folder; pass the output folder of a finished `wbcap run`")
    _refuse_image_results(run, job.export.formats)
    _refuse_fusion(run, job)
    dest = Path(job.dest).expanduser() if job.dest else run
    in_place = dest.exists() and dest.resolve() == run.resolve()
    if job.export.start_at_zero:
        _check_start_at_zero(job.export, in_place)
    # Not while a run (or an export in place) writes RUN: its pass 2 removes and rewrites the files read here.
    with hold_folder(run) if in_place else reading_folder(run, then="export it again"):
        note = unfinished_outputs_note(run) if job.warn_unfinished else None
        if note is not None:
            log.warning("%s", note)
        if not in_place:
            _refuse_dest_in_a_run(run, dest)
            _refuse_other_run(dest)
        # (the fix names --dest: export has no -o, a paths trial was told to choose another output folder)
        check_writable_destination(dest, fix=f"pass {setting('dest')} with a folder you can write in")
        return _export_into(job, run, dest, in_place)


def _refuse_image_results(run: Path, formats: tuple[str, ...]) -> None:
    """Refuse a ``wbcap image`` result (its output folder of ``<photo>/person_<k>/``, one photo's
    folder or one person's), which has no ``params.jsonl`` to export from, saying how a photo's
    files are made (a new user's trial was asked "is this a finished `wbcap run` folder?").

    Raises:
        InputError: naming the folder and the ``wbcap image`` command.
    """
    from wbcap.console import shell_word
    from wbcap.io.image_results import KEYPOINTS_FILE
    from wbcap.io.run_folder import track_file_name

    if (run / "params.jsonl").exists():
        return
    found = _image_result_people(run.absolute())
    if found is None:
        return
    people, out = found
    # (a photo done again is written anew: the formats and keypoints its folder holds go in the command too)
    held = {f for f in FORMATS if any((person / track_file_name("output", f)).is_file() for person in people)}
    wanted = ",".join(f for f in FORMATS if f in held or f in formats)
    keypoints = " --openpose" if any((person / KEYPOINTS_FILE).is_file() for person in people) else ""
    raise InputError(f"{run.absolute() if run.name in ('', '.', '..') else run}: holds `wbcap image` results, which "
                     "`wbcap export` does not read (it exports a `wbcap run` folder's params.jsonl); write the photos' "
                     f"files with `wbcap image PHOTOS -o {shell_word(str(out), option_safe=True)} --export "
                     f"{wanted}{keypoints} --skip-done` and the options the photos were read with (the photos whose "
                     "results lack these files are done again, whole)")


def _refuse_fusion(run: Path, job: ExportJob) -> None:
    """Refuse a ``wbcap fuse`` folder (``fuse.json``, no ``params.jsonl``), saying the command
    that writes its files in the formats asked (and those it holds): ``wbcap fuse`` of its runs
    with the offsets and settings ``fuse.json`` records, ``--overwrite`` (a fusion takes seconds:
    no network runs; made again from the same runs and clocks, it is the same).

    Raises:
        InputError: naming the folder and the ``wbcap fuse`` command.
    """
    import json

    from wbcap.console import shell_word
    from wbcap.fuse.views import FuseConfig
    from wbcap.fuse_app import FUSE_FILE
    from wbcap.io.run_folder import track_file, track_files

    record_path = run / FUSE_FILE
    if (run / "params.jsonl").exists() or not record_path.is_file():
        return
    where = run.absolute() if run.name in ("", ".", "..") else run
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        runs = [str(r["folder"]) for r in record["runs"]]
        offsets = ",".join(f"{float(r['offset_s']):.12g}" for r in record["runs"])
        distance = float(record.get("settings", {}).get("max_distance", FuseConfig().max_distance))
        # (a fusion made before handovers had none: 0 keeps its people as they were)
        handover = float(record.get("settings", {}).get("max_handover_s", 0.0))
        per_metre = record.get("settings", {}).get("units_per_metre")
        per_metre = None if per_metre is None else float(per_metre)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{where}: holds `wbcap fuse` results, which `wbcap export` does not read, and a damaged "
                         f"{FUSE_FILE} ({type(exc).__name__}); fuse the runs again with `wbcap fuse RUNS -o "
                         f"{shell_word(str(run), option_safe=True)} --format ... --overwrite`") from None
    held = {found[2] for p in track_files(run) if (found := track_file(p.name)) is not None}
    wanted = ",".join(f for f in FORMATS if f in held or f in job.export.formats)
    words = ["wbcap", "fuse", *(shell_word(r, option_safe=True) for r in runs), "-o",
             shell_word(str(run), option_safe=True), "--format", wanted, "--offsets", offsets]
    if distance != FuseConfig().max_distance:
        words += ["--max-distance", f"{distance:g}"]
    if handover != FuseConfig().max_handover_s:
        words += ["--max-handover", f"{handover:g}"]
    if per_metre is not None:
        words += ["--units-per-metre", f"{per_metre:.12g}"]
    words += [*(["--exact"] if job.export.exact else []), *(["--root-bone"] if job.export.root_bone else []),
              *(["--body-models", shell_word(job.body_models, option_safe=True)] if job.body_models else []),
              *(["--allow-pickle"] if job.allow_pickle else []), "--overwrite"]
    raise InputError(f"{where}: holds `wbcap fuse` results, which `wbcap export` does not read (it exports a `wbcap "
                     f"run` folder's params.jsonl); write them in these formats by fusing again, the same runs on the "
                     f"same clocks (seconds): `{' '.join(words)}`")


def _image_result_people(folder: Path) -> tuple[list[Path], Path] | None:
    """The person folders of ``folder`` (absolute) and the output folder of the ``wbcap image``
    command that wrote them, where ``folder`` is that output folder (``<photo>/person_<k>/``), one
    photo's folder (``person_<k>/``) or one person's (holding ``smplx_param.json``); None
    otherwise. Hidden entries are left out (a Finder's ``.DS_Store``)."""
    from wbcap.io.image_results import PERSON_DIR

    def visible(p: Path) -> list[Path]:
        return [q for q in p.iterdir() if not q.name.startswith(".")] if p.is_dir() else []

    def person(p: Path) -> bool:
        return PERSON_DIR.fullmatch(p.name) is not None and (p / "smplx_param.json").is_file()

    def photo(p: Path) -> bool:
        kids = visible(p)
        return bool(kids) and all(person(k) for k in kids)

    try:
        if person(folder):
            return [folder], folder.parent.parent
        if photo(folder):
            return visible(folder), folder.parent
        photos = visible(folder)
        if photos and all(photo(p) for p in photos):
            return [q for p in photos for q in visible(p)], folder
    except OSError:  # (a folder that cannot be listed: the usual message)
        return None
    return None


def _check_start_at_zero(export: AnimationExport, in_place: bool) -> None:
    """Refuse ``start_at_zero`` into the run folder itself, by any name (``--dest`` naming it, a
    link to it: a second break-it review), whose files ``wbcap view`` plays on the source's clock;
    warn where no format written has key times to move (BVH, CSV, TRC, C3D, npz).

    Raises:
        InputError: naming the settings and the fix.
    """
    if in_place:
        raise InputError(f"{setting('start_at_zero', api='export.start_at_zero')} writes into another folder "
                         f"({setting('dest')}): the run folder's own files stay on the source's clock, on which "
                         "wbcap view plays them over the video")
    if not {"glb", "fbx"} & set(export.formats):
        timed = [f.upper() for f in export.formats if f != "bvh"]
        log.warning("%s changes only GLB and FBX files%s%s", setting("start_at_zero"),
                    " (a BVH has no start time)" if "bvh" in export.formats else "",
                    f"; {', '.join(timed)} files keep the source's times" if timed else "")


def _export_into(job: ExportJob, run: Path, dest: Path, in_place: bool) -> list[Path]:
    """:func:`export_run` once ``run`` and ``dest`` are checked (and ``run`` held when ``in_place``)."""
    import torch

    from wbcap.atomic import final_path
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.camera import camera_from_dict
    from wbcap.export.animation import write_track_files
    from wbcap.export.params_jsonl import read_params_jsonl
    from wbcap.io.run_folder import META_FILE, PARAMS_FILE, read_meta, remove_temporary_files, run_body_model

    meta = read_meta(run)
    frames, tracks, camera = read_params_jsonl(run / PARAMS_FILE)
    if job.tracks is not None:
        unknown = sorted(set(job.tracks) - set(tracks))
        if unknown:
            has = f"which has tracks {', '.join(map(str, tracks))}" if tracks else "which kept no track"
            raise InputError(f"track {unknown[0]}: not in {run}{_why_dropped(unknown[0], meta)}, {has}")
    if not tracks:  # (as the run, which kept nobody and exited 0: a batch script carries on, an HCI trial)
        log.warning("%s: holds no person (its run kept no track): nothing to export", run / PARAMS_FILE)
        return []
    _refuse_folders_in_the_way(dest, set(tracks) if job.tracks is None else set(job.tracks), job.export.formats, in_place)
    if camera is None and meta and "camera" in meta:  # lines of older runs carry none; meta.json does (checked)
        camera = camera_from_dict(meta["camera"])
    run_frame = (meta or {}).get("frame", "camera")
    world = job.frame == "world" or (job.frame is None and run_frame == "world")
    if world and camera is None:
        needs = setting("world") if job.frame == "world" else "the run's world frame (meta.json)"
        raise InputError(f"{run / PARAMS_FILE}: neither its lines nor meta.json hold the video camera, which "
                         f"{needs} needs; rewrite them with a current `wbcap run --resume`")
    export = job.export
    gender = job.gender or (meta or {}).get("gender", "neutral")
    max_gap = job.max_gap if job.max_gap is not None else float((meta or {}).get("max_gap", 1.0))
    body = SMPLXLayer.from_file(run_body_model(run, gender, job.body_models, job.allow_pickle),
                                allow_pickle=job.allow_pickle)
    created = [f for f in (dest, *dest.parents) if not f.exists()]  # (leaf first)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{dest}: cannot create the folder ({exc.strerror or exc}); choose another destination") from None
    # wbcap's own hidden temporaries (`.track_3.tmp-*`) that an export or a run killed there left (a
    # signal can land after a temporary folder is made and before its cleanup takes it over: a user trial)
    remove_temporary_files(dest)
    rate = _clock_rate(meta, frames)
    frame = contacts = None
    before = _track_file_stamps(dest)
    grounded = None
    try:
        if world:  # the ground from every track of the run, as `wbcap run --world` found it
            from wbcap.camera import CameraPose
            from wbcap.world.estimate import WorldConfig, ground_tracks

            cuts = (meta or {}).get("cuts") or []  # (checked by read_meta)
            pose = CameraPose.from_record((meta or {}).get("calibration"))  # (checked by read_meta)
            if pose is None and job.world is not None and not job.world.check_calibration:
                raise InputError(f"{run / META_FILE}: records no calibration with the camera's pose, which "
                                 f"{setting('trust_calibration', api='check_calibration=False')} takes; run the video "
                                 "with --calibration FILE (its rotation and translation)")
            grounded = ground_tracks(tracks, body, torch.device("cpu"), camera, job.world or WorldConfig(), cuts=cuts,
                                     pose=pose)
            frame, contacts, tracks = grounded.frame, grounded.contacts, grounded.tracks
            if frame is None:
                export.say_root_bone_off_the_ground()
        if job.tracks is not None:
            tracks = {t: tracks[t] for t in job.tracks}
        now = "camera" if frame is None else "world"
        others = _files_frames(run, set(tracks)) - {now} if in_place else set()  # (a --track export's, before)
        if in_place and (others or _frame_changes(meta, grounded)):  # (on the ground found: it may fall back, or differ)
            was = (f"in the {'/'.join(sorted(others))} frame" if others else f"in the {run_frame} frame"
                   if run_frame != now else "on the ground meta.json records, not the one found now")
            export = _with_the_folders_formats(export, run, set(tracks), now, was)
        _say_smoothed_across(run, meta, tracks, rate, max_gap, _frame_step(meta, frames))
        with torch.no_grad():
            written = write_track_files(dest, tracks, body, torch.device("cpu"), rate, max_gap, gender, export,
                                        camera, world=frame, contacts=contacts, frame_step=_frame_step(meta, frames))
    except BaseException as exc:  # (Ctrl-C included) a folder this export made and nothing went into goes again
        _remove_empty(created)
        if isinstance(exc, KeyboardInterrupt):  # (a user trial: 4 of 7 files left, unsaid)
            _say_stopped(dest, before)
        raise
    _remove_stale_track_files(dest, written, set(tracks), export.formats)
    if not in_place and job.tracks is None:
        _say_other_tracks(dest, set(tracks))
    if in_place and meta is not None:
        _update_meta(run, meta, grounded, all_tracks=job.tracks is None, max_gap=max_gap)
    log.info("wrote %d file(s) for %d track(s) to %s", len(written), len(tracks), final_path(dest))
    return sorted(written)


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (leaf first) that is empty: the ``--dest`` folders an export made
    before it failed or was interrupted on its first file (a user trial found them left)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): it and its parents stay
            return


def _refuse_dest_in_a_run(run: Path, dest: Path) -> None:
    """Refuse a ``--dest`` inside ``run`` or inside another run's folder (one holding
    ``.wbcap/run.json``): that run's ``wbcap run --overwrite``, which replaces only what ``wbcap
    run`` wrote, would then refuse the whole folder. ``run`` itself is a fine ``--dest`` (the
    same as none); another run's own folder, or a folder in a ``.wbcap/``, is
    :func:`_refuse_other_run`'s to refuse.

    Raises:
        InputError: one line naming ``--dest``, the run folder it lies in and the fix.
    """
    from wbcap.io.run_folder import RUN_DIR, enclosing_run

    target, own = dest.expanduser().resolve(), run.expanduser().resolve()
    if target == own or RUN_DIR in dest.expanduser().absolute().parts:  # (export_run: its own line for .wbcap/)
        return
    folder = own if own in target.parents else enclosing_run(target)
    if folder is not None:
        raise InputError(f"{setting('dest')} {dest}: lies inside the wbcap run folder {folder} (whose `wbcap run "
                         f"--overwrite` would then refuse it); choose a folder outside it, or leave "
                         f"{setting('dest')} out to write into {run}")


def _refuse_other_run(dest: Path) -> None:
    """Refuse a destination that is another ``wbcap run``'s folder (it has its own ``params.jsonl``,
    ``meta.json`` or ``.wbcap/``): export files there would replace that run's track files with
    files of other parameters, beside its own ``params.jsonl`` and ``meta.json``.

    Raises:
        InputError: naming the file found and the fix.
    """
    from wbcap.io.run_folder import META_FILE, PARAMS_FILE, RUN_DIR

    if RUN_DIR in dest.absolute().parts:  # (a run's own bookkeeping folder, or a folder inside one)
        raise InputError(f"{dest}: lies in a wbcap run's {RUN_DIR}/ folder; choose a new or empty {setting('dest')} "
                         "folder elsewhere")
    found = next((name for name in (PARAMS_FILE, META_FILE, RUN_DIR) if (dest / name).exists()), None)
    if found is not None:
        raise InputError(f"{dest} holds another wbcap run (e.g. {found}); choose a new or empty {setting('dest')} "
                         f"folder (or export that run itself: wbcap export {dest})")


def _why_dropped(track: int, meta: dict | None) -> str:
    """Why the run dropped ``track``, from ``meta.json``'s ``dropped`` (runs made before it: ""),
    for the refusal of an export of it (an HCI trial looked for a dropped id in vain)."""
    dropped = (meta or {}).get("dropped") or {}
    if track in dropped.get("short", ()):
        return f" (dropped by {setting('min_length')}: seen in too few frames; a resume of the run with a lower one writes it)"
    if track in dropped.get("static", ()):
        return f" (dropped as static, likely an object; a resume of the run with {setting('keep_static')} writes it)"
    return ""


def _refuse_folders_in_the_way(dest: Path, tracks: set[int], formats: tuple[str, ...], in_place: bool) -> None:
    """Refuse, before anything is written, what is in ``dest`` under a name this export writes or
    replaces (``track_<id>.<format>`` or ``track_<id>_part<k>.<format>`` of an exported track and
    format): a folder (no file can take its place, and the files written before it would be left
    beside the old ones), or a file wbcap did not write (:func:`wbcap.io.run_folder.written_by_wbcap`:
    a lab's ``track_1.c3d`` in a ``--dest`` folder was replaced, a Pose2Sim ``track_0_part1.trc``
    removed: a break-it review), in the run folder too.

    Raises:
        InputError: naming the folder or file and the fix.
    """
    from wbcap.io.run_folder import track_file, written_by_wbcap

    for path in sorted(dest.glob("track_*")) if dest.is_dir() else ():
        parts = track_file(path.name)
        if parts is None or parts[2] not in formats or parts[1] not in tracks:
            continue
        what = f"track {parts[1]}'s {parts[2]} file"
        if path.is_dir():
            raise InputError(f"{path}: is a folder, where `wbcap export` writes {what}; move or remove it, or choose "
                             f"another {setting('dest')} folder")
        if not written_by_wbcap(path):
            raise InputError(f"{path}: wbcap did not write this file, and `wbcap export` would replace or remove it "
                             f"with {what}; move it" + ("" if in_place else f", or choose another {setting('dest')} folder"))


def _track_id(path: Path) -> int | None:
    """The track id of a per-track file name (``track_3.glb``, ``track_3_part2_angles.csv`` -> 3), else None."""
    from wbcap.io.run_folder import track_file

    parts = track_file(path.name)
    return None if parts is None else parts[1]


def _say_other_tracks(dest: Path, tracks: set[int]) -> None:
    """Warn where ``dest`` (another folder than the run's) also holds files of tracks this export of
    every track did not write: an earlier export's of another run (a new user's trial imported a
    reused folder into a game engine with an earlier run's person among this run's)."""
    from wbcap.io.run_folder import track_files

    others = sorted(p.name for p in track_files(dest) if _track_id(p) not in tracks)
    if others:
        log.warning("%s: also holds %d file(s) of tracks this export did not write (e.g. %s), from an earlier export; "
                    "remove them before taking the folder as one run's", dest, len(others), others[0])


def _remove_stale_track_files(dest: Path, written: set[Path], tracks: set[int], formats: tuple[str, ...]) -> None:
    """Delete the per-track files in ``dest`` (:func:`wbcap.io.run_folder.track_files`) of the
    exported ``tracks`` in the exported ``formats`` that this export did not write: an earlier
    file of another split (``track_2.glb`` beside ``track_2_part1.glb`` after a smaller
    ``--max-gap``, or the reverse). Other tracks' and formats' files are left alone; a file of
    another format whose pieces differ from this export's is named in a warning."""
    from wbcap.io.run_folder import track_file, track_files

    found = track_files(dest)
    parts = {p: track_file(p.name) or ("", -1, "") for p in [*written, *found]}
    pieces = {parts[p][0] for p in written}
    kept: list[Path] = []
    for stale in found:
        stem, track, fmt = parts[stale]
        if stale in written or track not in tracks:
            continue
        if fmt in formats:
            log.info("removed %s (not written by this export)", stale)
            stale.unlink()
        elif stem not in pieces:
            kept.append(stale)
    if kept:  # (one line, not one a file: a user trial's six)
        others = sorted({parts[p][2] for p in kept})
        log.warning("%s: %d file(s) of other formats keep the tracks' earlier pieces (e.g. %s), which differ from "
                    "this export's; add %s to %s to rewrite them", dest, len(kept), kept[0].name, ",".join(others),
                    setting("formats", api="export.formats"))


#: The ground's numbers that place the world files (``meta.json``'s ``world``), and how far
#: (metres, or unit-vector and rotation components) two estimates of them may differ and be the
#: same ground: a GPU run's and the CPU export's differ in float32's last bits (0.2 µm), which
#: must not rewrite every file of the folder (a review).
_GROUND_KEYS = {"ground_normal_camera": 1e-6, "ground_offset_m": 1e-5, "world_from_camera": 1e-6,
                "camera_position_m": 1e-5}


def _frame_changes(meta: dict | None, grounded) -> bool:
    """Whether files written now (``grounded``: the :class:`~wbcap.world.estimate.WorldResult`,
    or None for the camera frame) are in another frame than the run folder's (``meta.json``):
    another frame, or another ground than the one it records (an estimate that fell back, or
    one made by another version: :data:`_GROUND_KEYS`; a review)."""
    run_frame = (meta or {}).get("frame", "camera")
    if grounded is None or grounded.frame is None:
        return run_frame != "camera"
    if run_frame != "world":
        return True
    recorded, found = (meta or {}).get("world") or {}, grounded.to_meta()
    for key, tolerance in _GROUND_KEYS.items():
        try:
            a = np.asarray(recorded[key], np.float64)
            b = np.asarray(found[key], np.float64)
            if a.shape != b.shape or not np.all(np.abs(a - b) <= tolerance):
                return True
        except (KeyError, TypeError, ValueError):  # (a meta.json of another kind: rewrite to be sure)
            return True
    return False


def _files_frames(run: Path, tracks: set[int]) -> set[str]:
    """The frames that ``tracks``' npz and GLB files in ``run`` name (their ``frame`` key and
    ``asset.extras.frame``; ``"camera"`` for files older than the key; unreadable files left
    out): after a ``--track`` export into another frame, these tracks' files are not in
    meta.json's frame, and the next export of them must rewrite them all (a user trial found a
    track's GLB in the world frame beside its npz, CSV and BVH in the camera's)."""
    from wbcap.export.gltf import glb_json
    from wbcap.io.run_folder import track_files

    frames = set()
    for path in track_files(run):
        if _track_id(path) not in tracks or path.suffix not in (".npz", ".glb"):
            continue
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    frames.add(str(z["frame"]) if "frame" in z.files else "camera")
            else:
                extras = (glb_json(path).get("asset") or {}).get("extras") or {}
                frames.add(str(extras.get("frame", "camera")))
        except (OSError, ValueError, KeyError, InputError):  # (a damaged file: rewritten anyway if exported)
            continue
    return frames


def _with_the_folders_formats(export: AnimationExport, run: Path, tracks: set[int], frame: str,
                              was: str) -> AnimationExport:
    """``export`` with the formats of the files ``tracks`` have in ``run`` added: an export in place
    into ``frame`` of files that were in another frame or on another ground (``was``, in words)
    rewrites them all, so that no file stays in the old one beside the new ones (said in one line).

    Raises:
        InputError: an FBX file to rewrite where Blender (bpy) cannot be imported.
    """
    from dataclasses import replace

    from wbcap.io.run_folder import track_file, track_files

    present = {(track_file(p.name) or ("", -1, ""))[2] for p in track_files(run) if _track_id(p) in tracks}
    present -= set(export.formats)
    if not present:
        return export
    added = replace(export, formats=tuple(f for f in FORMATS if f in present or f in export.formats))
    try:
        added.check_available()
    except WbcapError as exc:  # (its own FBX message: Blender's module is missing)
        raise InputError(f"{run}: its {', '.join(sorted(present))} files are {was} and must be rewritten in the "
                         f"{frame} frame with the others: {exc}") from None
    log.info("%s: also rewriting the %s files of these tracks in the %s frame (they were %s; %s as this export's), so "
             "that all its track files are in one frame", run, ",".join(sorted(present)), frame, was, setting("exact"))
    return added


def _frame_step(meta: dict | None, frames: dict[int, float]) -> int | None:
    """The run's frame step (source frames between two processed ones): meta.json's
    ``frame_step``; for a run written before it, the smallest step between the frames of
    ``params.jsonl`` that hold anyone (every track's, not only the ``--track`` ones exported);
    None with fewer than two such frames."""
    if meta and "frame_step" in meta:
        return int(meta["frame_step"])
    steps = np.diff(np.asarray(sorted(frames), np.int64))
    return int(steps.min()) if steps.size else None


def _say_smoothed_across(run: Path, meta: dict | None, tracks: dict, rate: float, max_gap: float,
                         frame_step: int | None) -> None:
    """Warn where the files split a track at a gap its run smoothed across: ``params.jsonl`` holds
    each track smoothed piece by piece at the run's ``--max-gap`` (meta.json's
    ``smoothed_max_gap``; a run made before it was recorded smoothed every track whole), so a
    piece this ``max_gap`` cuts there keeps, at its ends, what the other side's frames gave the
    smoothing (up to 3 cm in a break-it trial) until a ``wbcap run --resume`` smooths it again."""
    from wbcap.export.amass import clock_cuts

    smoothed = (meta or {}).get("smoothed_max_gap")
    across = []
    for tid, tr in tracks.items():
        now = set(clock_cuts(tr.time, rate, max_gap, tr.frame, frame_step).tolist())
        if now and (smoothed is None or now - set(clock_cuts(tr.time, rate, float(smoothed), tr.frame,
                                                             frame_step).tolist())):
            across.append(tid)
    if across:
        said = ", ".join(map(str, across[:5])) + (f" and {len(across) - 5} more" if len(across) > 5 else "")
        how = (f"the run smoothed {'it' if len(across) == 1 else 'them'} as one piece there (its "
               f"{setting('max_gap')} {float(smoothed):g} s)" if smoothed is not None else
               "the run, made before wbcap smoothed the pieces of a track apart, smoothed every track whole")
        gap = setting("max_gap")
        log.warning("%s: track%s %s split at %s %g s where %s: each piece's ends keep what the other side gave the "
                    "smoothing; a resume of the run with %s %g smooths them piece by piece", run,
                    "" if len(across) == 1 else "s", said, gap, max_gap, how, gap, max_gap)


def _update_meta(run: Path, meta: dict, grounded, all_tracks: bool, max_gap: float) -> None:
    """Files rewritten in the run folder: ``meta.json``'s ``frame`` (and ``world``) and
    ``max_gap`` follow them (``grounded``: the :class:`~wbcap.world.estimate.WorldResult`, None
    without ``--world``; ``max_gap``: the seconds the files were split at). When only some
    tracks were rewritten into another frame or at another ``max_gap``, meta.json is left and a
    warning says so (each npz and GLB names its own frame; its file names show its pieces)."""
    from wbcap.io.run_folder import write_meta

    frame = "world" if grounded is not None and grounded.frame is not None else "camera"
    old_gap = float(meta.get("max_gap", 1.0))
    if not all_tracks:
        if meta.get("frame", "camera") != frame:
            log.warning("%s: the rewritten tracks are in the %s frame, the others in the %s frame; each track's npz "
                        "and GLB say which", run, frame, meta.get("frame", "camera"))
        elif frame == "world" and _frame_changes(meta, grounded):  # (unsaid before: a user trial)
            log.warning("%s: the rewritten tracks are on another ground than the others and meta.json (found again "
                        "from params.jsonl); export every track to put them all on it", run)
        if old_gap != max_gap:
            log.warning("%s: the rewritten tracks are split at %s %g s, the others (and meta.json) at %g s",
                        run, setting("max_gap"), max_gap, old_gap)
        return
    meta = {**meta, "frame": frame, "max_gap": max_gap}
    if grounded is not None:
        meta["world"] = grounded.to_meta()
    else:
        meta.pop("world", None)
    write_meta(run, meta)

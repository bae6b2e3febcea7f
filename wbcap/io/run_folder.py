"""The output folder ``OUT`` of ``wbcap run``: its layout, the settings a resumed run must
match, and making it ready for a run.

Layout::

    OUT/.wbcap/run.json       settings fingerprint of pass 1 (:func:`fingerprint`), the
                              SMPL-X model file it used (:data:`BODY_MODEL_FILE`), the size and
                              mtime of each file it read (:data:`FILE_IDENTITY`) and the last
                              command that ran it (:data:`COMMAND`)
    OUT/.wbcap/raw.jsonl      pass 1's per-frame records (:mod:`wbcap.io.raw_records`)
    OUT/.wbcap/pass1.json     pass 1 finished: its records and the raw file's size then
                              (:func:`mark_pass_one_done`), so a ``--resume`` redoes pass 2
                              alone, without the network (:func:`pass_one_done`)
    OUT/params.jsonl          one line per person-frame (:mod:`wbcap.export.params_jsonl`; with
                              --world also the planted feet)
    OUT/meta.json             what the outputs need to be read or exported again: clock rate,
                              camera, gender, --max-gap, tracks, the frame of the track files and,
                              with --world, the ground and camera pose (:func:`write_meta`)
    OUT/track_<id>.npz        AMASS files, or track_<id>_part<k>.npz (:mod:`wbcap.export.track_npz`),
                              in the camera's frame or (--world) the ground's
    OUT/track_<id>.glb|bvh|fbx|csv|trc|c3d, track_<id>_angles.csv   files of --export
                              (:mod:`wbcap.export.animation`, :data:`TRACK_ENDINGS`)
    OUT/meshes/<track>/<frame>.obj   with --obj (:mod:`wbcap.export.track_meshes`)
    OUT/openpose/<stem>_<frame>_keypoints.json   with --openpose: every processed frame's people's
                              2D keypoints in OpenPose's JSON (:mod:`wbcap.export.openpose`; an
                              image sequence's <image>_keypoints.json), marked as wbcap's by
                              OUT/.wbcap/openpose-written, which lists them (:func:`start_keypoints`)
    OUT/render.mp4            the overlay video (:mod:`wbcap.export.video_render`)

Every output file is written under a hidden temporary name (``.params.tmp-*``...) and renamed
when complete (:mod:`wbcap.atomic`).

``--overwrite`` never loses a previous run to a new run that fails at once: :func:`prepare_output`
moves the previous run's files into ``OUT/.wbcap-previous/`` (:data:`PREVIOUS_DIR`), the new run
drops them (:func:`discard_previous`) once its first frames are in ``raw.jsonl``, and a run that
ends before that, by an error or a signal, puts them back (:func:`restore_previous`). A process
killed in between (SIGKILL) leaves the folder for the next ``wbcap run`` on it, which puts the
previous run back when the new one has no frame yet, else drops it (:func:`_settle_previous`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from stat import S_ISREG
from types import MappingProxyType
from typing import Any

from wbcap.errors import JSON_ERRORS, InputError, setting
from wbcap.io.frame_times import MAX_FPS
from wbcap.locks import closed_in_forked_children

log = logging.getLogger(__name__)

RUN_DIR = ".wbcap"
#: Where ``--overwrite`` keeps the previous run's files until the new run has its first frames
#: (see the module docstring).
PREVIOUS_DIR = ".wbcap-previous"
RAW_FILE = "raw.jsonl"
PASS1_FILE = "pass1.json"
RUN_FILE = "run.json"
PARAMS_FILE = "params.jsonl"
META_FILE = "meta.json"
#: Each ``--export`` format's per-track file of pass 2: ``track_<id>[_part<k>]`` then this ending
#: (``track_3_part2.glb``; the joint angles' CSV beside the joints' one: ``track_3_angles.csv``).
TRACK_ENDINGS: Mapping[str, str] = MappingProxyType({
    "npz": ".npz", "glb": ".glb", "bvh": ".bvh", "fbx": ".fbx", "csv": ".csv", "angles": "_angles.csv", "trc": ".trc",
    "c3d": ".c3d"})
RENDER_FILE = "render.mp4"
MESHES_DIR = "meshes"
#: ``wbcap run --openpose``'s folder of the frames' keypoint files (:mod:`wbcap.export.openpose`).
OPENPOSE_DIR = "openpose"
#: The file in ``.wbcap/`` that marks ``openpose/`` as wbcap's (:func:`_keypoints_mark`, :func:`_mark_record`).
KEYPOINTS_MARK = "openpose-written"
#: The key of ``run.json`` recording the SMPL-X model file the run used, wherever it was found
#: (``--body-models``, ``$WBCAP_BODY_MODELS`` or the user data folder), as :func:`absolute_path`
#: makes it: for ``wbcap export`` and ``wbcap view`` (:func:`recorded_body_models`). It records,
#: it does not ask: not one of the settings a resumed run must match (:func:`prepare_output`).
BODY_MODEL_FILE = "body_model_file"
#: The key of ``run.json`` recording what each file pass 1 read was when the run began
#: (:func:`file_identity`, by role: ``checkpoint``, ``body_model_file``, ``detector_model``,
#: ``detector`` for the file of ``boxes:FILE``/``yolox:FILE``): a ``--resume`` whose file at the
#: same path has another size or mtime is refused (:func:`prepare_output`), as one of another
#: source is. Like :data:`BODY_MODEL_FILE`, not one of the settings compared key by key; a run
#: recorded without it (an older wbcap) resumes unchecked and gains it.
FILE_IDENTITY = "file_identity"
#: The key of ``run.json`` recording the last command that ran the run: ``{"argv": the words after
#: ``wbcap``, "cwd": its working folder, "out": the run folder it named, resolved, and "env":
#: the environment variables through which it found its checkpoint or SMPL-X model, by name
#: (:func:`wbcap.paths.variables_finding`; absent when none)}`` (``wbcap run``, a resume
#: included; none from the Python API, whose resume keeps the one there), so that the hints
#: saying how to finish an interrupted run give the whole command (:func:`resume_command`), its
#: pass-1 flags, a resume's pass-2 ones and those variables included. Like
#: :data:`BODY_MODEL_FILE`, not a setting.
COMMAND = "command"
#: The key of ``run.json`` recording the person detector pass 1 ran (its ``name``: ``yolox-nano``,
#: ``hog``, ``yolox (model.onnx)``, ``boxes``...): ``--detector auto`` is YOLOX where its weights
#: are installed and another (Faster R-CNN, HOG) where not, so a resume on a machine or account without them would mix two
#: detectors' boxes, tracks and scores in one run (an HCI researcher's trial); a ``--resume``
#: running another detector is refused (:func:`prepare_output`). A run recorded without it (an
#: older wbcap) resumes unchecked and records none (the detector of its first frames is not known).
DETECTOR_USED = "detector_used"
#: run.json's keys that record rather than ask: not compared by a resume.
_RECORDS = (BODY_MODEL_FILE, FILE_IDENTITY, COMMAND, DETECTOR_USED)


def recorded_settings(run: Mapping) -> dict:
    """The settings of a ``run.json`` (:func:`read_run_file`): what a resume must match, without
    the records (:data:`BODY_MODEL_FILE`, :data:`FILE_IDENTITY`, :data:`COMMAND`)."""
    return {k: v for k, v in run.items() if k not in _RECORDS}


#: What the roles of :data:`FILE_IDENTITY` are called in messages.
_FILE_ROLES = {"checkpoint": "checkpoint", "body_model_file": "SMPL-X model", "detector_model": "detector model",
               "detector": "--detector", "detector_weights": "detector weights", "mano_model_file": "MANO model"}
#: :func:`file_identity`'s content sample: this many pieces of this many bytes, evenly spread.
_SAMPLE_PIECES, _SAMPLE_BYTES = 16, 1 << 16


def raw_path(out: Path) -> Path:
    """``OUT/.wbcap/raw.jsonl``."""
    return out / RUN_DIR / RAW_FILE


def mark_pass_one_done(out: Path, records: int, ended_early: str | None = None) -> None:
    """Record that pass 1 finished with ``records`` records in ``raw.jsonl`` (and its size now, in
    bytes) and, where the source ended before its header said, how
    (:attr:`wbcap.io.video_reader.FrameSource.ended_early`): ``OUT/.wbcap/pass1.json``, written
    atomically (best effort: without it a resume loads the network as before)."""
    from wbcap.atomic import atomic_write_text

    try:
        size = raw_path(out).stat().st_size
        record = {"records": int(records), "bytes": size, **({"ended_early": ended_early} if ended_early else {})}
        atomic_write_text(out / RUN_DIR / PASS1_FILE, json.dumps(record))
    except OSError as exc:
        log.debug("%s: pass 1's end not recorded (%s)", out, exc)


def clear_pass_one_done(out: Path) -> None:
    """Forget that pass 1 finished (a pass 1 starts: its raw file is about to change)."""
    with contextlib.suppress(OSError):  # (one that cannot go, a folder put there: never read as a record either)
        (out / RUN_DIR / PASS1_FILE).unlink()


def pass_one_done(out: Path) -> int | None:
    """The records of a finished pass 1 (:func:`mark_pass_one_done`) when ``raw.jsonl`` is still
    the size it had then, else None (no record of it, an unreadable one, a raw file changed
    since). A damaged record inside is found by :func:`wbcap.io.raw_records.start_raw`, whose
    count then differs: the caller regresses its frames again."""
    try:
        done = json.loads((out / RUN_DIR / PASS1_FILE).read_text(encoding="utf-8"))
        size = raw_path(out).stat().st_size
    except (OSError, *JSON_ERRORS):
        return None
    if not (isinstance(done, dict) and isinstance(done.get("records"), int) and done.get("bytes") == size
            and done["records"] > 0):
        return None
    return done["records"]


def pass_one_ended_early(out: Path) -> str | None:
    """How the source of a finished pass 1 ended before its header said
    (:func:`mark_pass_one_done`'s ``ended_early``), None where it did not, or where that is not
    recorded."""
    try:
        done = json.loads((out / RUN_DIR / PASS1_FILE).read_text(encoding="utf-8"))
    except (OSError, *JSON_ERRORS):
        return None
    note = done.get("ended_early") if isinstance(done, dict) else None
    return note if isinstance(note, str) else None


def raw_stamp(out: Path) -> tuple[int, int, int, int] | None:
    """Which ``OUT/.wbcap/raw.jsonl`` is there (device, inode, size, mtime), None when none: the
    same before and after a run stopped by Ctrl-C when ``--overwrite`` put the previous run back
    untouched (its files are moved aside and back, not copied)."""
    try:
        st = os.stat(raw_path(out))
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def fingerprint(source: str, settings: dict) -> dict:
    """What pass 1's results depend on: the source (resolved path; the path as given when it is
    no file or folder, e.g. a glob), its stamps and ``settings`` (JSON-able values). Returned as it
    reads back from ``run.json`` (tuples become lists).

    Stamps: of a video file its size in bytes and mtime in whole seconds; of an image folder or
    glob (:func:`~wbcap.io.images.iter_image_paths`) the images' total size, the newest one's
    mtime and ``source_files``, their count and a digest of each one's path, size and mtime: a
    folder's own stamps changed with a hidden file made and deleted beside the images, and not
    with an image rewritten in place (a user trial: a resume then mixed old and new pictures)."""
    src = Path(source).expanduser()
    images = None if src.is_file() else _sequence_images(source)
    if images is not None:
        folders: dict[Path, str] = {}  # (each folder resolved once: 50000 images' own resolve() took a second)
        try:
            stats = [(os.path.join(folders.setdefault(p.parent, str(p.parent.resolve())), p.name), p.stat())
                     for p in images]
        except OSError as exc:  # (an image gone between the listing and its stat)
            from wbcap.io.images import missing_path_message

            gone = Path(exc.filename) if exc.filename else None
            if gone is not None and gone.is_symlink() and not gone.exists():  # (a link to nothing: said as one)
                raise InputError(missing_path_message(gone)) from None
            raise InputError(f"{exc.filename or source}: an image of {source} changed while it was listed "
                             f"({exc.strerror or exc}); run the command again once it is settled") from None
        digest = hashlib.sha256("".join(f"{name}\t{st.st_size}\t{int(st.st_mtime)}\n" for name, st in stats)
                                .encode("utf-8", "surrogateescape")).hexdigest()[:16]
        stamps = {"source_size": sum(st.st_size for _, st in stats),
                  "source_mtime": max(int(st.st_mtime) for _, st in stats),
                  "source_files": f"{len(stats)} images, sha256 {digest}"}
    else:
        stat = src.stat() if src.exists() else None
        stamps = {"source_size": stat.st_size if stat else None, "source_mtime": int(stat.st_mtime) if stat else None}
    fp = {"source": str(src.resolve()) if src.exists() else source, **stamps, **settings}
    return json.loads(json.dumps(fp))


def _sequence_images(source: str) -> list[Path] | None:
    """The images of an image folder or glob ``source`` as a run reads them, None when it names
    none (e.g. a video file that is gone: the resume says so)."""
    from wbcap.io.images import iter_image_paths

    try:
        return iter_image_paths(source, warn=False)
    except (InputError, OSError):
        return None


def file_identity(path: str | os.PathLike | None) -> dict | None:
    """What :data:`FILE_IDENTITY` records of a file: ``path`` (absolute, :func:`absolute_path`),
    ``size`` (bytes), ``mtime`` (whole seconds) and ``sample``, the sha256 of 16 pieces of 64 kB
    spread evenly over it (1 MB read whatever its size: two checkpoints of one network differ
    in every piece of tensor data, while a ``touch``, a re-import or a copy of the same file
    leaves them). Not the ctime nor the inode, which every copy changes. None for None or what
    is not a readable file."""
    if path is None:
        return None
    p = Path(path).expanduser()
    try:
        st = p.stat()
        if not S_ISREG(st.st_mode):
            return None
        sample = hashlib.sha256()
        with p.open("rb") as f:
            last = max(0, st.st_size - _SAMPLE_BYTES)
            for i in range(_SAMPLE_PIECES):
                f.seek(last * i // (_SAMPLE_PIECES - 1))
                sample.update(f.read(_SAMPLE_BYTES))
    except (OSError, ValueError):
        return None
    return {"path": absolute_path(str(path)), "size": st.st_size, "mtime": int(st.st_mtime),
            "sample": sample.hexdigest()}


def _when(mtime: object) -> str:
    """An mtime of :func:`file_identity` as local time, for a message."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return json.dumps(mtime)[:30]


def same_file(old: Mapping, new: Mapping | None) -> bool:
    """Whether two :func:`file_identity` records name the same file: the same size and content
    sample (a ``touch``, a re-import, a copy elsewhere; a file rewritten with other bytes is
    another, whatever its mtime), or, where either has no sample (a record of an older wbcap),
    the same size, path and mtime. ``new`` None (no readable file): not the same."""
    if new is None or old.get("size") != new.get("size"):
        return False
    if old.get("sample") is not None and new.get("sample") is not None:
        return old["sample"] == new["sample"]
    return old.get("path") == new.get("path") and old.get("mtime") == new.get("mtime")


def check_same_files(out: Path, recorded: object, now: dict | None) -> None:
    """Refuse a ``--resume`` whose files (``now``: :func:`file_identity` by role) are not the ones
    the run in OUT ``recorded`` (its :data:`FILE_IDENTITY`), e.g. a checkpoint replaced by another
    network's (its results would be mixed with the first network's); the same file:
    :func:`same_file`. Roles either side lacks are not checked (a run of an older wbcap records
    none).

    Raises:
        InputError: one line naming the file(s), what changed and the fix.
    """
    if not isinstance(recorded, dict) or not now:
        return
    for role, new in now.items():
        old = recorded.get(role)
        if not isinstance(old, dict) or not isinstance(new, dict) or same_file(old, new):
            continue
        what = _FILE_ROLES.get(role, role)
        if old.get("path") != new["path"]:
            where = f"the run in {out} used the {what} {old.get('path')}; this finds {new['path']}, another file"
        else:
            changed = [f"size {old.get('size')} -> {new['size']} bytes"] if old.get("size") != new["size"] else []
            changed.append(f"modified {_when(old.get('mtime'))} -> {_when(new['mtime'])}, other content")
            where = f"{new['path']}: the {what} file changed since the run in {out} began ({', '.join(changed)})"
        raise InputError(f"{where}; a run continues only with the files it began with: put back the file it was "
                         f"made with, or start over with {setting('overwrite', api='overwrite=True')}")


def check_same_detector(out: Path, recorded: object, now: str | None) -> None:
    """Refuse a ``--resume`` whose person detector (``now``: its name; None: none opened) is not
    the one the run in OUT ``recorded`` (its :data:`DETECTOR_USED`; not a string: an older run's,
    not checked).

    Raises:
        InputError: one line naming both detectors and the fix.
    """
    if isinstance(recorded, str) and now is not None and now != recorded:
        if recorded in ("hog", "torchvision"):  # (auto's fallbacks: they run where it finds no YOLOX weights)
            fix = ("resume where auto finds no YOLOX weights (WBCAP_WEIGHTS naming a folder without them, and "
                   "WBCAP_OFFLINE=1)")
        else:
            fix = f"install {recorded}'s weights again (`wbcap weights import NAME FILE`) or resume where they are"
        raise InputError(
            f"{out}: the run began with the {recorded} detector, and this resume would run {now}; a run continues "
            f"only with the detector it began with ({setting('detector')} auto runs YOLOX where its weights are "
            f"installed, else torchvision's Faster R-CNN where it imports, else HOG: `wbcap weights list` says what "
            f"is installed here): {fix}, or start over with {setting('overwrite', api='overwrite=True')}")


def _our_outputs(out: Path) -> list[Path]:
    """What a wbcap run writes in OUT, including temporaries a killed run left behind. A
    ``meshes/`` folder is one only while it holds nothing but ``<track>/<frame:06d>.obj`` files
    (and their temporaries): a user's own ``meshes/mine.obj`` made it theirs (an ``--overwrite``
    deleted it, a hostile-input trial).

    Only a run's folder (one holding :data:`RUN_DIR` or :data:`PREVIOUS_DIR`) has a
    ``params.jsonl``, ``meta.json``, ``render.mp4`` or ``meshes/`` of wbcap's; elsewhere (a
    ``wbcap export --dest`` folder, or a user's) only the track files wbcap's writers made
    (:func:`written_by_wbcap`) are its: an ``--overwrite`` deleted a user's own ``meta.json``,
    ``params.jsonl`` and ``track_7.csv`` from a folder no run had written (a hostile-input trial)."""
    if not ((out / RUN_DIR).is_dir() or (out / PREVIOUS_DIR).is_dir()):  # (an export's: its files, temporaries)
        return [p for p in track_files(out) if written_by_wbcap(p)] + sorted(
            p for p in out.glob(".track_*.tmp-*") if _export_temporary(p))
    names = [RUN_DIR, PARAMS_FILE, META_FILE, RENDER_FILE, PREVIOUS_DIR]
    found = [out / n for n in names if (out / n).exists()]
    if _our_meshes(out / MESHES_DIR):
        found.append(out / MESHES_DIR)
    if _our_keypoints(out):
        found.append(out / OPENPOSE_DIR)
    return found + track_files(out) + temporary_files(out)


def _export_temporary(path: Path) -> bool:
    """Whether ``path`` is :mod:`wbcap.atomic`'s temporary of a per-track file
    (:func:`~wbcap.atomic.final_path` names a :func:`track_files` name, or its folder), or the
    folder an FBX export stages its GLB in (:data:`_FBX_STAGING`): what a killed ``wbcap export``
    or pass 2 leaves (a user's own ``.track_notes.tmp-1`` is not one: an ``--overwrite`` deleted
    it, a user trial, and an export into its folder, a review)."""
    from wbcap.atomic import final_path

    final = final_path(path.name)
    if final == Path(path.name):
        return _FBX_STAGING.fullmatch(path.name) is not None and path.is_dir()
    return track_file(final.name) is not None or (not final.suffix and TRACK_STEM.fullmatch(final.name) is not None)


#: A row of a TRC file as :func:`wbcap.export.opensim_trc.trc_text` writes it: the row number, then the
#: time and every coordinate with six decimals.
_TRC_ROW = re.compile(rb"\d+(\t-?\d+\.\d{6})+")

#: A row of a joints' CSV as :func:`wbcap.export.joints_csv.write_joints_csv` writes it, and of an
#: angles' CSV (:func:`wbcap.export.angles_csv.write_angles_csv`): the time with six decimals, the
#: frame index, valid 0 or 1, then the values with six (four) decimals (or as Python writes a
#: value that is not finite). A table saved again by a spreadsheet or pandas writes its numbers
#: otherwise, and is the user's.
_JOINTS_ROW = re.compile(rb"-?\d+\.\d{6},-?\d+,[01](,(-?\d+\.\d{6}|nan|-?inf))+")
_ANGLES_ROW = re.compile(rb"-?\d+\.\d{6},-?\d+,[01](,(-?\d+\.\d{4}|nan|-?inf))+")

#: Keys of the AMASS npz that only wbcap's writer adds (:func:`wbcap.export.amass.amass_arrays`), both
#: since its first version (2026-11-24: its later ``camera_rotation`` made a ``--dest`` refuse an
#: earlier export's npz as a user's).
_WBCAP_NPZ_KEYS = {"frame_indices.npy", "times.npy"}


def written_by_wbcap(path: Path) -> bool:
    """:func:`_marked` of ``path``; a large file's answer kept for the file as it is (its size,
    modification time and inode: read once a command, which asks of the same files several
    times; an ``--exact`` FBX of a long track is gigabytes, searched to its end, a review). A
    small file is read every time (a rewrite within the file system's timestamp step could keep
    its size and time). False for what cannot be looked at."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size < _KEEP_ANSWER_BYTES:
        return _marked.__wrapped__(str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    return _marked(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


#: Files from this size have their :func:`written_by_wbcap` answers kept (reading them costs).
_KEEP_ANSWER_BYTES = 1 << 22


@functools.lru_cache(maxsize=4096)
def _marked(name: str, size: int, mtime_ns: int, inode: int) -> bool:
    """Whether the per-track file ``path`` (:func:`track_files`) carries its wbcap writer's
    marks: a CSV that starts with :func:`wbcap.export.joints_csv.write_joints_csv`'s header (an
    angles CSV with :func:`wbcap.export.angles_csv.write_angles_csv`'s) and a first row as it
    writes rows (:data:`_JOINTS_ROW`, :data:`_ANGLES_ROW`), a
    TRC whose 4th line lists :mod:`wbcap.body.markers`' names in their order, a C3D
    (its header's key byte 0x50) whose parameters hold the ``WBCAP`` group, a
    BVH whose skeleton starts at SMPL-X's pelvis with wbcap's root channels
    (:mod:`wbcap.export.bvh`), an npz with wbcap's own keys (:data:`_WBCAP_NPZ_KEYS`), a GLB
    whose ``asset.generator`` is wbcap, a binary FBX (Blender's, from wbcap's GLB) naming
    SMPL-X's pelvis and ``left_eye_smplhf`` joints (:data:`wbcap.export.rig.JOINT_NAMES_55`). A
    file that cannot be read, or whose reading fails in any way (a hostile GLB's JSON nested
    past Python's recursion limit), is not."""
    import mmap
    import zipfile

    path = Path(name)

    try:
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as z:
                return set(z.namelist()) >= _WBCAP_NPZ_KEYS
        with open(path, "rb") as fh:
            head = fh.read(4096)
            if path.suffix == ".glb":  # (glTF 2.0, 4.4: a 12-byte header, then the JSON chunk's length and kind)
                size = int.from_bytes(head[12:16], "little")
                if head[:4] != b"glTF" or head[16:20] != b"JSON" or size > 1 << 26:
                    return False
                asset = json.loads((head[20:] + fh.read(max(0, size + 20 - len(head))))[:size]).get("asset")
                return isinstance(asset, dict) and str(asset.get("generator", "")).startswith("wbcap ")
            if path.suffix == ".csv":  # (the header, and the first row as wbcap writes rows)
                angles = path.name.endswith(TRACK_ENDINGS["angles"])
                # (lines ending in CRLF too: a copy that went through git's autocrlf or a Windows tool)
                lines = [line.removesuffix(b"\r") for line in (head + fh.read(1 << 16)).split(b"\n", 2)]
                return len(lines) > 2 and lines[0].startswith(
                    b"time,frame_index,valid,pelvis_yaw_left," if angles else b"time,frame_index,valid,pelvis_x,") and (
                    (_ANGLES_ROW if angles else _JOINTS_ROW).fullmatch(lines[1]) is not None) and (
                    lines[0].count(b",") == lines[1].count(b","))
            if path.suffix == ".trc":  # (its 4th line: Frame#, Time and the markers' names, tab-separated)
                from wbcap.body.markers import MARKER_NAMES

                lines = (head + fh.read(4096)).split(b"\n")
                names = [w.decode() for w in lines[3].split(b"\t") if w] if len(lines) > 4 else []
                # (the files of wbcap before its `Hip` marker had the other 31: a review found an
                # earlier TRC of wbcap's refused as a user's)
                # (and its first row as wbcap writes rows, every value with six decimals: OpenSim's TRCFileAdapter
                # keeps the names line of a file it saves again, a review, and writes its numbers shortest)
                return lines[0].startswith(b"PathFileType\t4\t") and names[:2] == ["Frame#", "Time"] and (
                    tuple(names[2:]) in (MARKER_NAMES, tuple(n for n in MARKER_NAMES if n != "Hip"))) and len(lines) > 6 and (
                    _TRC_ROW.fullmatch(lines[6]) is not None)
            if path.suffix == ".c3d":  # (wbcap.export.c3d_file.WBCAP_GROUP in the parameter section)
                if len(head) < 2 or head[1] != 0x50 or head[0] < 1:
                    return False
                # (the whole section, its first block named by the header's byte 0, its block count in its own
                # byte 2: a --world file's gait events put WBCAP past the first 12 kB a review found searched)
                fh.seek((head[0] - 1) * 512)
                section = fh.read(4)
                return len(section) == 4 and b"WBCAP" in section + fh.read(max(1, section[2]) * 512)
            if path.suffix == ".bvh":
                return head.startswith(b"HIERARCHY") and b"ROOT pelvis" in head and (
                    b"CHANNELS 6 Xposition Yposition Zposition" in head)
            if path.suffix == ".fbx":  # (searched in place: an --exact track's FBX can be gigabytes)
                if not head.startswith(b"Kaydara FBX Binary"):
                    return False
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as whole:
                    return whole.find(b"pelvis") >= 0 and whole.find(b"left_eye_smplhf") >= 0
    except Exception:  # (OSError, a damaged zip or JSON, RecursionError, MemoryError...: not recognised)
        return False
    return False


#: A file :func:`wbcap.export.track_meshes.write_track_objs` writes in ``meshes/<track>/``, or
#: its temporary (:mod:`wbcap.atomic`: ``.<stem>.tmp-*``).
_MESH_FILE = re.compile(r"\d{6}\.obj|\.\d{6}\.tmp-[^/]*")


def _our_meshes(folder: Path) -> bool:
    """Whether ``folder`` is a ``meshes/`` folder as wbcap writes it: a real folder (not a link)
    of track folders named by their ids holding only :data:`_MESH_FILE` files."""
    if folder.is_symlink() or not folder.is_dir():
        return folder.is_symlink() or folder.exists()  # (a link or a file of that name: removed as before)
    try:
        for track in folder.iterdir():
            if track.is_symlink() or not track.is_dir() or not track.name.isdigit():
                return False
            if not all(f.is_file() and not f.is_symlink() and _MESH_FILE.fullmatch(f.name) for f in track.iterdir()):
                return False
    except OSError:
        return False
    return True


#: A file :func:`wbcap.export.openpose.write_video_keypoints` writes in ``openpose/``
#: (``<video>_<frame:012d>_keypoints.json``, an image sequence's ``<image>_keypoints.json``), or
#: its temporary (``.<name>_keypoints.tmp-*``).
_KEYPOINTS_FILE = re.compile(r"[^/.][^/]*_keypoints\.json|\.[^/]*_keypoints\.tmp-[^/]*")


def _keypoints_mark(out: Path) -> Path:
    """The file whose presence says ``out/openpose/`` is ``--openpose``'s (:data:`KEYPOINTS_MARK`,
    in ``.wbcap/``: OpenPose's own files are named as wbcap names its, so only it tells a user's
    OpenPose output, which a resume deleted, from wbcap's: a break-it review; inside the folder,
    EasyMocap's importer read it as a keypoint file: a consumer's trial)."""
    return out / RUN_DIR / KEYPOINTS_MARK


def _journal(out: Path) -> Path:
    """The file in ``.wbcap/`` where a pass writing ``--openpose``'s files records each one as it is
    written (:func:`keypoint_written`; one JSON line ``[name, inode, size, mtime in ns]``), until
    :func:`finish_keypoints` records them all in the mark."""
    return out / RUN_DIR / (KEYPOINTS_MARK + ".jsonl")


def _journal_record(out: Path) -> dict[str, list[int]]:
    """The files the journal (:func:`_journal`) records, ``{name: [inode, size, mtime in ns]}``;
    lines that cannot be read are left out (a pass stopped while writing one)."""
    written: dict[str, list[int]] = {}
    try:
        text = _journal(out).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return written
    for line in text.splitlines():
        try:
            name, *identity = json.loads(line)
        except (*JSON_ERRORS, TypeError, ValueError):
            continue
        if isinstance(name, str) and len(identity) == 3 and all(isinstance(v, int) for v in identity):
            written[name] = identity
    return written


def _mark_record(out: Path) -> dict[str, Any] | None:
    """The mark's record (:func:`_keypoints_mark`): ``{"folder": [device, inode] of the
    ``openpose/`` folder when it was marked, "files": [names], "written": {name: [inode, size,
    mtime in ns]}}``, ``written`` from the mark once the pass finished, else from the journal
    (:func:`_journal`: the files a pass stopped part way had written), only names of ``files``.
    None where there is no mark or it cannot be read. Which files there are wbcap's is decided
    file by file (:func:`_is_recorded_file`), not by the folder's inode, which the file system
    gives again to a folder made where one was removed (a backup of ``openpose/`` put back was
    taken for the original and none of its files for wbcap's; a user's own OpenPose folder put
    there for wbcap's folder: a review)."""
    folder, mark = out / OPENPOSE_DIR, _keypoints_mark(out)
    if folder.is_symlink() or not folder.is_dir() or mark.is_symlink() or not mark.is_file():
        return None
    try:
        record = json.loads(mark.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, *JSON_ERRORS):
        return None
    if (not isinstance(record, dict) or not isinstance(record.get("files"), list)
            or not all(isinstance(n, str) for n in record["files"])):
        return None
    written = record.get("written")
    if written is None:  # (a pass stopped part way: what it wrote, as it wrote it)
        written = _journal_record(out)
    if not isinstance(written, dict) or not all(
            isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) for x in v) for v in written.values()):
        return None
    names = set(record["files"])
    return {**record, "written": {name: identity for name, identity in written.items() if name in names}}


def _identity(path: Path) -> list[int] | None:
    """``[inode, size, mtime in ns]`` of the file at ``path`` (not followed), None where it cannot be read."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


#: How far a copy's modification time may be from the one recorded: tar keeps whole seconds,
#: zip and FAT two (a review's zip copy was refused).
_COPY_TIME_NS = 2 * 10**9


def _is_recorded_file(path: Path, identity: list[int]) -> bool:
    """Whether ``path`` is a regular file (not a link) that is the file ``identity`` recorded
    (:func:`_identity`) or a copy of it (``cp -a``, ``rsync -a``, ``tar``, a backup put back: new
    inodes): the same size, and the time within :data:`_COPY_TIME_NS` (an HCI trial's ``cp -a``
    copy was refused as OpenPose's own output, and a resume of it kept the old keypoints). The
    inode is not asked: a copy has another."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return S_ISREG(st.st_mode) and st.st_size == identity[1] and abs(st.st_mtime_ns - identity[2]) <= _COPY_TIME_NS


def _keypoint_files(out: Path) -> list[Path] | None:
    """``--openpose``'s files in ``out/openpose/`` where wbcap marked the folder as its own
    (:func:`_mark_record`): each file recorded as written that is the one wbcap wrote or a copy
    of it (:func:`_is_recorded_file`: a file of a user's named as OpenPose names its own is never
    among them, also after a pass stopped part way, whose mark lists names it had not yet
    written: reviews), and wbcap's temporaries of them. None for a folder it did not mark (a
    user's: wbcap's files nowhere in it), a link, a file, or what cannot be read."""
    record = _mark_record(out)
    if record is None:
        return None
    written = record["written"]
    try:
        return sorted(f for f in (out / OPENPOSE_DIR).iterdir() if _KEYPOINTS_FILE.fullmatch(f.name) and (
            (f.name in written and _is_recorded_file(f, written[f.name]))
            or (f.name.startswith(".") and f.is_file() and not f.is_symlink())))  # (wbcap's temporaries)
    except OSError:
        return None


def _foreign_keypoints(out: Path) -> list[Path]:
    """Files in ``out/openpose/`` named as OpenPose names its files (``*_keypoints.json``) that are
    not wbcap's (:func:`_keypoint_files`), sorted: a user's OpenPose output, or files wbcap
    cannot tell as its own (a backup put back without its times)."""
    folder = out / OPENPOSE_DIR
    ours = set(_keypoint_files(out) or [])
    try:
        return sorted(f for f in folder.iterdir() if not f.name.startswith(".") and _KEYPOINTS_FILE.fullmatch(f.name)
                      and f not in ours)
    except OSError:
        return []


def has_keypoints(out: Path) -> bool:
    """Whether ``out/openpose/`` holds ``--openpose``'s files (:func:`_keypoint_files`)."""
    return bool(_keypoint_files(out))


def _our_keypoints(out: Path) -> bool:
    """Whether ``out/openpose/`` is a folder as ``--openpose`` writes it: marked as wbcap's and
    holding nothing but its files (a user's own file there makes it theirs, as in ``meshes/``;
    a file or link of that name is no folder wbcap writes: not its, a second break-it review)."""
    ours = _keypoint_files(out)
    try:
        return ours is not None and len(ours) == sum(1 for _ in (out / OPENPOSE_DIR).iterdir())
    except OSError:
        return False


def remove_keypoints(out: Path) -> None:
    """Delete ``--openpose``'s files in ``out/openpose/`` (:func:`_keypoint_files`), the folder where
    nothing else is left, and the mark: a pass 2 writing other keypoints, or none, leaves none of
    the earlier ones beside other files (a user's ``notes.txt`` kept the old smoothing's files: a
    break-it review); a folder wbcap did not mark (a user's OpenPose output) is left as it is,
    and files there named as OpenPose's that wbcap cannot tell as its own are named in a warning
    (they stayed without a word: a review). A folder still there keeps a mark of no file."""
    folder = out / OPENPOSE_DIR
    ours = _keypoint_files(out)
    for path in ours or []:
        path.unlink(missing_ok=True)
    left = _foreign_keypoints(out) if folder.is_dir() and not folder.is_symlink() else []
    if left and ours is not None:
        log.warning("%s: kept %d file(s) named as OpenPose's that wbcap cannot tell as its own (e.g. %s: yours, or "
                    "wbcap's without the times it wrote them with); remove them if they are wbcap's", folder,
                    len(left), left[0].name)
    with contextlib.suppress(OSError):
        folder.rmdir()  # (where the user's files are left in it, it stays)
    _journal(out).unlink(missing_ok=True)
    if ours is not None and folder.is_dir() and not folder.is_symlink():
        _write_mark(out, [], written=True)  # (still wbcap's folder, none of its files in it now)
    else:
        _keypoints_mark(out).unlink(missing_ok=True)  # (no folder, or one it does not mark)


def _write_mark(out: Path, names: list[str], written: bool = False) -> None:
    """Mark ``out/openpose/`` (it exists) as wbcap's, holding ``names``; ``written``: they are
    written, and their identities (:func:`_identity`) recorded."""
    from wbcap.atomic import atomic_write_text

    folder = out / OPENPOSE_DIR
    st = folder.stat()
    record: dict[str, Any] = {"folder": [st.st_dev, st.st_ino], "files": sorted(names)}
    if written:  # (a file gone meanwhile is not recorded: a None there made the whole mark unreadable)
        record["written"] = {name: identity for name in names if (identity := _identity(folder / name)) is not None}
    atomic_write_text(_keypoints_mark(out), json.dumps(record) + "\n")


def keypoint_written(out: Path, name: str, path: Path) -> None:
    """Record in the journal (:func:`_journal`) that ``--openpose``'s file ``out/openpose/<name>``
    is ``path``, its whole temporary, about to be moved into place (which keeps its inode, size
    and time): a pass stopped after it leaves it taken for wbcap's, and the names it had not
    written yet (a user's files put there after) not."""
    with open(_journal(out), "a", encoding="utf-8") as fh:
        fh.write(json.dumps([name, *(_identity(path) or [0, 0, 0])]) + "\n")


def finish_keypoints(out: Path, names: list[str]) -> None:
    """Record in the mark the files ``--openpose`` wrote in ``out/openpose/`` (``names``, listed by
    :func:`start_keypoints`) as they are now: only these files are taken for wbcap's again."""
    _write_mark(out, names, written=True)
    _journal(out).unlink(missing_ok=True)


def start_keypoints(out: Path, names: list[str]) -> Path:
    """``out/openpose/``, made and marked as wbcap's, listing the ``names`` of the files
    ``--openpose`` is about to write there (before the first: a pass stopped part way leaves them
    listed, and only those it wrote, :func:`keypoint_written`, taken for wbcap's).

    Raises:
        InputError: ``out/openpose`` exists and is not wbcap's, or holds files named as
            OpenPose's that wbcap did not write (:func:`refuse_foreign_keypoints`: a user's own
            OpenPose files put in wbcap's folder after a pass stopped part way were replaced: a
            review).
    """
    refuse_foreign_keypoints(out)  # (every name it writes is OpenPose's kind: a user's file under one is refused there)
    folder = out / OPENPOSE_DIR
    folder.mkdir(exist_ok=True)
    _keypoints_mark(out).parent.mkdir(exist_ok=True)
    _journal(out).unlink(missing_ok=True)
    _write_mark(out, names)
    return folder


def refuse_foreign_keypoints(out: Path) -> None:
    """Refuse ``--openpose`` where ``out/openpose`` holds something wbcap did not write there (no
    mark, :func:`_keypoints_mark`): its files would be replaced by wbcap's of the same names, a
    break-it review. Checked before any work and again before writing.

    Raises:
        InputError: naming the folder and the fix.
    """
    folder = out / OPENPOSE_DIR
    if not (folder.exists() or folder.is_symlink()):
        return
    try:
        empty = folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir())
    except OSError:
        empty = False
    if not empty and _keypoint_files(out) is None:
        raise InputError(f"{folder}: holds files wbcap did not write (OpenPose's own output?), which --openpose "
                         "would mix its files with or replace; move it away, or write the run to another folder")
    foreign = _foreign_keypoints(out) if not empty else []
    if foreign:  # (a marked folder too: its inode can be a removed one's, and a stopped pass lists names unwritten)
        raise InputError(f"{folder}: holds files wbcap did not write (e.g. {foreign[0].name}: OpenPose's own output?), "
                         "which --openpose would mix its files with or replace; move them away (or remove them, if they "
                         "are wbcap's copied without their times), or write the run to another folder")


#: The hidden temporary names of pass 2's files (``.<stem>.tmp-*``, :mod:`wbcap.atomic`; the
#: render's ``.render.tmp-*.mp4``), which a killed run leaves behind.
_TEMP_STEMS = ("params", "meta", "render", "track_*")


def temporary_files(out: Path) -> list[Path]:
    """The temporaries of pass 2's files in ``out`` (:data:`_TEMP_STEMS`; a per-track one only
    where it names a per-track file, :func:`_export_temporary`) that a killed run left, sorted."""
    return sorted(p for stem in _TEMP_STEMS for p in out.glob(f".{stem}.tmp-*")
                  if stem != "track_*" or _export_temporary(p))


def _remove(path: Path) -> None:
    """Delete ``path``, a file or a folder with what it holds."""
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def remove_temporary_files(out: Path) -> None:
    """Delete what :func:`temporary_files` finds (a pass 2 that ended holds none of its own:
    call it when this process writes none, e.g. after pass 2)."""
    for p in temporary_files(out):
        with contextlib.suppress(OSError):
            _remove(p)


#: The stem of a per-track file (pass 2's, `wbcap export`'s): ``track_3``, ``track_3_part2``.
TRACK_STEM = re.compile(r"track_(\d+)(?:_part\d+)?")
#: The folder :func:`wbcap.export.animation.write_animations` stages an FBX's GLB in
#: (``tempfile.TemporaryDirectory(prefix=".track_3.tmp-")``: eight of its random letters).
_FBX_STAGING = re.compile(rf"\.{TRACK_STEM.pattern}\.tmp-[a-z0-9_]{{8}}")
_TRACK_FILE = re.compile(rf"({TRACK_STEM.pattern})({'|'.join(map(re.escape, TRACK_ENDINGS.values()))})")
_ENDING_FORMAT = {ending: fmt for fmt, ending in TRACK_ENDINGS.items()}


def track_file(name: str) -> tuple[str, int, str] | None:
    """A per-track file's name taken apart: ``track_3_part2_angles.csv`` -> ``("track_3_part2",
    3, "angles")`` (the piece's stem, the track id, the format: :data:`TRACK_ENDINGS`); None for
    any other name (a user's ``track_notes.csv``)."""
    match = _TRACK_FILE.fullmatch(name)
    return None if match is None else (match[1], int(match[2]), _ENDING_FORMAT[match[3]])


def track_file_name(stem: str, fmt: str) -> str:
    """The file of format ``fmt`` (:data:`TRACK_ENDINGS`) of the piece ``stem`` (``track_3``, or a
    photo's person's ``output``): ``track_3.glb``, ``output_angles.csv``."""
    return stem + TRACK_ENDINGS[fmt]


def track_files(out: Path) -> list[Path]:
    """The per-track files of pass 2 in ``out`` (:func:`track_file`) that carry wbcap's marks
    (:func:`written_by_wbcap`, which every format has written since its first version), sorted;
    not a user's own ``track_notes.csv`` beside them (a break-it trial's was removed by a
    ``--resume``), nor a file of such a name that wbcap did not write, in a run folder too: a
    Pose2Sim ``track_7.trc``, a lab's ``track_8.c3d`` (a break-it review's were deleted by an
    ``--overwrite`` and a ``--resume``), a user's ``track_9_angles.csv`` (a user trial's), a GLB
    edited in Blender and saved under its name."""
    return sorted(p for p in out.glob("track_*") if track_file(p.name) is not None and p.is_file()
                  and written_by_wbcap(p))


def absolute_path(path: str | None) -> str | None:
    """A file or folder the user named, as ``run.json`` records it: absolute (``~`` expanded,
    from the current folder when relative; links kept as spelled), so that ``wbcap export``,
    ``wbcap view`` and ``--resume`` from another folder read it as the run did. None stays None."""
    return None if path is None else os.path.abspath(Path(path).expanduser())


def same_path(recorded: object, typed: str | None, now: str | None) -> bool:
    """Whether the path ``recorded`` in a run's ``run.json`` names what is given now: spelled
    ``typed`` on the command line, ``now`` as :func:`absolute_path` records it.

    Runs before wbcap recorded absolute paths hold the spelling as typed, relative to a working
    folder that is no longer known: such a path matches when it equals ``typed``, or when it
    resolves from the current folder to the same file or folder as ``now`` (links followed).
    """
    return recorded == now or (typed is not None and recorded == typed) or _same_file(recorded, now)


def _same_file(a: object, b: object) -> bool:
    """Whether the paths ``a`` and ``b`` (None or anything else: no) name one file (links followed)."""
    return isinstance(a, str) and isinstance(b, str) and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


#: A path setting as the user typed it, for :func:`prepare_output`: the path, or ``(prefix,
#: path)`` for a setting whose value is a fixed prefix followed by a path (``("boxes:", "b.json")``
#: for ``--detector boxes:b.json``); None: not given.
TypedPath = str | tuple[str, str] | None


def _as_given(previous: dict, fp: dict, typed_paths: dict[str, TypedPath]) -> dict:
    """``previous`` (a ``run.json``) with each path setting of ``typed_paths`` (``"body.path"``:
    the key, dotted into nested settings, and the path as typed) that :func:`same_path` finds
    naming what ``fp`` names replaced by ``fp``'s value. A setting with a prefix matches only
    when both values start with it; the paths after it are compared."""
    result = json.loads(json.dumps(previous))  # (a deep copy)
    if "source_files" in fp and "source_files" not in result and result.get("source") == fp.get("source"):
        # (an image sequence's run begun by a wbcap before its images' stamps: it recorded the
        # folder's own, which say nothing of the images; not checked, as then)
        result.update({k: fp[k] for k in ("source_size", "source_mtime", "source_files")})
    for key, typed in typed_paths.items():
        prefix, typed = typed if isinstance(typed, tuple) else ("", typed)
        *parents, last = key.split(".")
        old, new = result, fp
        for name in parents:
            old = old.get(name) if isinstance(old, dict) else None
            new = new[name]
        if not isinstance(old, dict) or last not in old:
            continue
        recorded, now = old[last], new[last]
        if prefix:
            if not all(isinstance(v, str) and v.startswith(prefix) for v in (recorded, now)):
                continue
            recorded, now = recorded[len(prefix):], now[len(prefix):]
        if same_path(recorded, typed, now):
            old[last] = new[last]
    return result


def read_run_file(out: Path) -> dict | None:
    """``OUT/.wbcap/run.json`` (the settings of :func:`prepare_output`) as a dict, or None when
    there is none; its ``start`` (which ``wbcap view`` reads) is checked.

    Raises:
        InputError: the file is not JSON, not an object, or its ``start`` not a number of
            seconds (one line: start the run over).
    """
    path = out / RUN_DIR / RUN_FILE
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except JSON_ERRORS as exc:
        problem = f"not a wbcap run.json ({exc})"
    else:
        if not isinstance(run, dict):
            problem = f"not a wbcap run.json (a JSON {type(run).__name__}, not an object)"
        elif "start" in run and not _number(run["start"], 0.0, above=False):
            problem = f"a damaged start ({json.dumps(run['start'])[:60]}, where wbcap writes a number of seconds)"
        else:
            return run
    raise InputError(f"{path}: {problem}; start its run over with {setting('overwrite', api='overwrite=True')}")


def _read_run_file(out: Path) -> dict:
    """:func:`read_run_file`, {} when there is none or it is damaged (a record to use when it is there)."""
    try:
        return read_run_file(out) or {}
    except (InputError, OSError):
        return {}


def _recorded_body(out: Path) -> tuple[str | None, str | None, str | None]:
    """What ``OUT/.wbcap/run.json`` records of the SMPL-X model: (``--body-models``, the file
    used (:data:`BODY_MODEL_FILE`), the gender); each None when absent or not a usable record (a
    relative path, written by an older wbcap, meant that run's working folder, unknown here)."""
    run = _read_run_file(out)
    body = run.get("body") if isinstance(run.get("body"), dict) else {}

    def absolute(path: object) -> str | None:
        return path if isinstance(path, str) and Path(path).expanduser().is_absolute() else None

    gender = body.get("gender")
    return absolute(body.get("path")), absolute(run.get(BODY_MODEL_FILE)), gender if isinstance(gender, str) else None


def recorded_body_models(out: Path, gender: str | None = None) -> str | None:
    """The SMPL-X file or folder for the run in OUT when the user names none (``wbcap export``,
    ``wbcap view``): the ``--body-models`` it was made with when that still exists, else the model
    file it used (:data:`BODY_MODEL_FILE`: also one found through ``$WBCAP_BODY_MODELS`` or the
    user data folder) when that still exists and ``gender`` (None: the run's) is the run's; else
    None (the usual search applies)."""
    given, used, run_gender = _recorded_body(out)
    if given is not None and Path(given).expanduser().exists():
        return given
    same_gender = gender is None or run_gender is None or gender.lower() == run_gender.lower()
    if used is not None and same_gender and Path(used).expanduser().is_file():
        return used
    return None


def run_body_model(out: Path, gender: str, body_models: str | None, allow_pickle: bool = False) -> Path:
    """The SMPL-X file for the finished run in OUT (``wbcap export``, ``wbcap fuse``):
    ``body_models`` where the user names it, else the run's record (:func:`recorded_body_models`),
    else the usual search (:func:`wbcap.body.model_files.find_body_model`).

    Raises:
        BodyModelNotFoundError: none found where the user or the record says, or anywhere;
            one the run was made with that no longer exists is said so (:func:`missing_body_model`).
    """
    from wbcap.body.model_files import BodyModelNotFoundError, find_body_model

    where = body_models if body_models is not None else recorded_body_models(out, gender)
    try:
        return find_body_model(gender, where, allow_pickle=allow_pickle,
                               named_by=None if body_models is not None else "the run's record")
    except BodyModelNotFoundError as exc:
        if where is not None:
            raise
        raise missing_body_model(exc, out, resume=False) from None


def missing_body_model(exc: Exception, out: Path, *, resume: bool) -> Exception:
    """The error for an SMPL-X model of the run in OUT that the usual search did not find
    (``exc``, a :class:`~wbcap.body.model_files.BodyModelNotFoundError`), for a ``--resume`` of
    it (``resume``) or for ``wbcap export``/``wbcap view``: when ``run.json`` records the model
    of that gender the run was made with (:func:`_recorded_body`) and it is of use here (for a
    resume: when the usual places no longer hold it; else once it no longer exists, as
    :func:`recorded_body_models` uses it while it does), one line naming it and the fix; else
    ``exc`` itself."""
    from wbcap.errors import ModelFileError

    given, used, run_gender = _recorded_body(out)
    recorded = given or used
    gender = getattr(exc, "gender", None)
    if recorded is None or (gender is not None and run_gender is not None and gender != run_gender.lower()):
        return exc
    exists = Path(recorded).expanduser().exists()
    if exists and not resume:
        return exc
    body_models = setting("body_models")
    looked = ", ".join(str(p) for p in getattr(exc, "looked", ()))
    found = f"SMPL-X model file {getattr(exc, 'file_name', '')} not found" + (f" (looked for {looked})" if looked else "")
    made = f"{out / RUN_DIR / RUN_FILE} says the run was made with the SMPL-X model {recorded}"
    from wbcap.console import shell_word
    from wbcap.errors import CHECKPOINT_TOO

    also = getattr(exc, "checkpoint_error", None)  # (:func:`wbcap.pipeline.check_model_files`)
    # the checkpoint the run recorded, where the search found none: named with the model (a break-it
    # trial was told to download a checkpoint it had given the run, then refused for its absence)
    ckpt = _read_run_file(out).get("checkpoint")
    ckpt = ckpt if also and isinstance(ckpt, str) and Path(ckpt).is_absolute() and Path(ckpt).is_file() else None
    also = f"; {CHECKPOINT_TOO}{also}" if also and ckpt is None else ""
    if exists:
        given = f"{body_models} {shell_word(recorded)}" + (f" {setting('checkpoint')} {shell_word(ckpt)}" if ckpt else "")
        return ModelFileError(f"{found}; {made}" + (f" and the checkpoint {ckpt}" if ckpt else "")
                              + f": resume with {given}{also}")
    fix = (f"put it back there, or start over with {setting('overwrite', api='overwrite=True')}" if resume
           else f"pass {body_models} naming the folder that holds it now")
    return ModelFileError(f"{found}; {made}, which no longer exists: {fix}{also}")


def write_meta(out: Path, meta: dict) -> Path:
    """Write ``OUT/meta.json`` atomically: JSON-able ``meta`` (keys documented by the writer,
    :func:`wbcap.video_app.run_meta`)."""
    from wbcap.atomic import atomic_write_text

    atomic_write_text(out / META_FILE, json.dumps(meta, indent=1, sort_keys=True))
    return out / META_FILE


def _number(value: object, low: float, *, above: bool) -> bool:
    """Whether ``value`` is a finite JSON number (not a boolean) above ``low`` (``above``) or at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        number = float(value)
    except OverflowError:  # (an integer of 400 digits)
        return False
    return math.isfinite(number) and (number > low if above else number >= low)


def _camera_ok(value: object) -> bool:
    from wbcap.camera import camera_from_dict

    try:
        camera_from_dict(value)  # (the one reader of the camera meta.json and params.jsonl hold)
    except (KeyError, TypeError, ValueError, OverflowError):
        return False
    return True


def _pose_ok(value: object) -> bool:
    """A ``calibration`` record whose camera pose, where it holds one, is one (``wbcap export
    --world`` reads it: :meth:`wbcap.camera.CameraPose.from_record`)."""
    from wbcap.camera import CameraPose

    if not isinstance(value, dict):
        return False
    try:
        CameraPose.from_record(value)
    except (TypeError, ValueError):
        return False
    return True


def _gender_ok(value: object) -> bool:
    from wbcap.body.model_files import GENDERS

    return isinstance(value, str) and value.lower() in GENDERS


#: The lowest processed frame rate a run can have (frames per second): a 1 fps source read with
#: ``--every``'s largest step, 10^6.
MIN_RUN_FPS = 1e-6
#: The keys of ``meta.json`` that ``wbcap export`` and ``wbcap view`` read, each with a check of
#: its value and what it should be (for the message); :func:`wbcap.video_app.run_meta` writes them.
_META_KEYS: dict[str, tuple[Callable[[object], bool], str]] = {
    # (at least a 1 fps source's rate over the largest --every, 10^6: a tampered 1e-300 made BVH
    # frame times of 1e300 s, a hostile-input trial)
    "fps": (lambda v: _number(v, MIN_RUN_FPS, above=False) and v <= MAX_FPS,
            f"a number of frames per second from {MIN_RUN_FPS:g} to {MAX_FPS:g}"),
    "max_gap": (lambda v: _number(v, 0.0, above=False), "a number of seconds, 0 or more"),
    "smoothed_max_gap": (lambda v: _number(v, 0.0, above=False), "a number of seconds, 0 or more"),
    "frame_step": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                   "a whole number of source frames, 1 or more"),
    "gender": (_gender_ok, "neutral, male or female"),
    "camera": (_camera_ok, "focal, princpt and image_size, 2 numbers each: a focal of 1 pixel or more, a "
               "principal point within 1e7 pixels and a picture's size in whole pixels"),
    "frame": (lambda v: v in ("camera", "world"), '"camera" or "world"'),
    "world": (lambda v: isinstance(v, dict), "an object"),
    "calibration": (_pose_ok, "an object; its rotation and translation, where it holds them, a rotation (3 x 3 or "
                    "a rotation vector) and 3 numbers"),
    "source": (lambda v: isinstance(v, str), "the source's path"),
    "source_ended_early": (lambda v: isinstance(v, str), "a sentence"),
    "cuts": (lambda v: isinstance(v, list) and all(_number(t, 0.0, above=False) for t in v),
             "a list of times in seconds, 0 or more"),
    "colors": (lambda v: v in (1, 2) and not isinstance(v, bool), "1 or 2"),
    "dropped": (lambda v: isinstance(v, dict) and all(
        isinstance(ids, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in ids) for ids in v.values()),
        'an object of lists of track ids ("short", "static")'),
}


def read_meta(out: Path) -> dict | None:
    """``OUT/meta.json`` as a dict, or None when the run predates it. The keys that ``wbcap
    export`` and ``wbcap view`` read (:data:`_META_KEYS`) are checked: each, when present, holds
    a value of its kind.

    Raises:
        InputError: the file is not JSON, not an object, or holds a damaged value (one line
            naming the file, the key and the fix: the run's ``--resume`` or ``--overwrite``).
    """
    path = out / META_FILE
    if not path.is_file():
        return None
    rewrite = rewrite_hint(out)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except JSON_ERRORS as exc:
        raise InputError(f"{path}: not a wbcap meta.json ({exc}); {rewrite}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: not a wbcap meta.json (a JSON {type(meta).__name__}, not an object); {rewrite}")
    for key, (ok, expected) in _META_KEYS.items():
        if key in meta and not ok(meta[key]):
            shown = json.dumps(meta[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise InputError(f"{path}: a damaged {key} ({shown}, where wbcap writes {expected}); {rewrite}")
    return meta


def _lock(fd: int, out: Path, shared: bool, fix: str, quiet: bool = False) -> None:
    """``flock`` ``fd`` (OUT opened), exclusive or ``shared``, without waiting; ``quiet``: a
    file system without ``flock`` is said in the debug log only (a check the real hold repeats).

    Raises:
        InputError: another process holds OUT in a way that excludes this lock (``fix``: the
            end of the message).
    """
    from wbcap.locks import flock_nowait

    try:
        taken = flock_nowait(fd, shared)
    except OSError as exc:  # a file system without flock on folders (NFS: EBADF; ENOLCK, ENOSYS...)
        # (a writer says so once; a reader, which may take the lock several times in one command,
        # only in the debug log: the writer of that folder said it when it ran)
        (log.debug if shared or quiet else log.warning)(
            "%s: cannot lock the folder (%s), so another wbcap process writing it at the same time would not be "
            "noticed", out, exc.strerror or exc)
        return
    if taken is False:
        holder = "one still writing it" if shared else "one still writing or reading it"  # (readers: shared)
        raise InputError(f"{out} is in use by another wbcap process ({holder}); wait for it to finish{fix}")


@contextlib.contextmanager
def hold_folder(out: Path, quiet: bool = False) -> Iterator[Path]:
    """Keep other wbcap processes out of OUT while this block writes it.

    An exclusive advisory lock (``flock``) on the folder itself, not on a file in it (so
    ``--overwrite`` deleting ``.wbcap/`` cannot hand out a second lock, and nothing is left
    behind): the kernel releases it when the block ends or the process dies, also when it is
    killed. Two ``wbcap run`` on one folder interleaved their frames in ``raw.jsonl`` before.
    Processes that only read OUT take it shared (:func:`reading_folder`), so neither waits for
    the other. Creates OUT (and its parents) when missing. Where the platform has no ``flock``, or
    the file system refuses it on a folder (NFS, some cluster file systems), nothing is locked
    (with a warning in the second case).

    ``quiet``: see :func:`_lock` (for a brief hold before the real one).

    Raises:
        InputError: OUT is a file, cannot be created, or another process holds it.
    """
    other_out = setting("out", api="output")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is {'a file' if out.is_file() else 'not a folder'}; {setting('out')} must be a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:  # a parent is a file, no permission, read-only disk...
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror or exc}); "
                         f"choose another {other_out} folder") from None
    try:
        _lock(fd, out, False, " or choose another folder", quiet)
        with closed_in_forked_children(fd):
            yield out
    finally:
        os.close(fd)  # (releases the lock)


@contextlib.contextmanager
def reading_folder(out: Path, then: str) -> Iterator[Path]:
    """Read OUT (``wbcap view``, ``wbcap export --dest``) while no wbcap process writes it.

    A shared ``flock`` on the folder (see :func:`hold_folder`) for the block: a run or an export
    in place holding OUT (its pass 2 removes and rewrites the outputs, so the files read would
    be a mix of two, or missing) refuses this one, and none can start in the block; readers
    share it. Release it before a long wait (a served page): a later ``wbcap run --resume`` on
    OUT must not be refused for it. OUT that is no folder or cannot be opened is not locked
    (what reads it says what is wrong); nor where ``flock`` is missing or refused (in the debug
    log only: one ``wbcap view`` reads OUT up to three times, and the run writing it warned).

    Raises:
        InputError: another wbcap process holds OUT (one line; ``then``: what to do once it
            has finished, e.g. "view it again").
    """
    try:
        fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        yield out
        return
    try:
        _lock(fd, out, True, f", then {then}")
        with closed_in_forked_children(fd):
            yield out
    finally:
        os.close(fd)


def refuse_others(out: Path, existing: list[Path], ours: list[Path]) -> None:
    """Refuse an output folder holding entries wbcap did not write (those of ``existing`` not in
    ``ours``), whatever the flags: ``--overwrite`` only ever deletes what wbcap wrote, so it is
    never advised here.

    Raises:
        InputError: one line naming one such entry and asking for another folder.
    """
    others = [p for p in existing if p not in ours]
    if not others:
        return
    other_out = setting("out", api="output")
    from wbcap.io.image_results import is_image_result

    # (a user trial: "did not write"; an empty folder is no result, a hostile-input trial's was called one)
    if all(p.is_dir() and not p.is_symlink() and is_image_result(p) and any(p.iterdir()) for p in others):
        raise InputError(f"{out} holds `wbcap image` results (e.g. {others[0].name}/); choose another {other_out} "
                         "folder (a new or empty one)")
    raise InputError(f"{out} holds files wbcap did not write (e.g. {others[0].name}); "
                     f"choose another {other_out} folder (a new or empty one)")


def replace_previous(out: Path, existing: list[Path], ours: list[Path], example: Path, *, what: str,
                     overwrite: bool, aside: Path | None = None, resumable: bool = True) -> None:
    """The rule for an output folder that is not empty (``existing``: its entries), shared by
    ``wbcap run`` and ``wbcap train``: files wbcap did not write (not in ``ours``) are refused
    always; a previous result (``what``, e.g. "a previous wbcap run", named by ``example``) is
    deleted with ``overwrite`` (only ``ours``; moved into the folder ``aside`` instead when
    given), else refused with the flags that would do (``resumable``: whether a resume would
    find what it continues, else it is not offered).

    Raises:
        InputError: one line saying what the folder holds and what to pass instead.
    """
    other_out = setting("out", api="output")
    refuse_others(out, existing, ours)
    if not overwrite:
        resume = f"{setting('resume', api='resume=True')} to continue it, " if resumable else ""
        raise InputError(f"{out} holds {what} (e.g. {example.name}); pass {setting('overwrite', api='overwrite=True')} "
                         f"to replace it, {resume}or choose another {other_out} folder")
    if aside is not None:
        from wbcap.stop_signals import held_stop_signals

        with held_stop_signals():  # (a Ctrl-C in between would leave the run half here, half aside)
            aside.mkdir()
            for p in ours:
                p.rename(aside / p.name)
        return
    for p in ours:
        _remove(p)


def discard_previous(out: Path) -> None:
    """Delete the previous run that ``--overwrite`` set aside in ``OUT/.wbcap-previous/``
    (:data:`PREVIOUS_DIR`), if any: call it once the new run has its first frames."""
    previous = out / PREVIOUS_DIR
    if previous.is_dir():
        shutil.rmtree(previous, ignore_errors=True)
        log.debug("%s: removed the previous run set aside by --overwrite", out)


def restore_previous(out: Path, outputs: Callable[[Path], list[Path]] | None = None) -> bool:
    """Undo a run that ends before its first frame (or snapshot): delete what it wrote in OUT
    (``outputs(out)``, default :func:`_our_outputs`: ``wbcap run``'s; the set-aside folder
    excepted) and move the previous run's files that ``--overwrite`` set aside
    (:data:`PREVIOUS_DIR`) back, so OUT is as the run found it. True when there was one."""
    from wbcap.stop_signals import held_stop_signals

    previous = out / PREVIOUS_DIR
    with held_stop_signals():
        for p in (outputs or _our_outputs)(out):
            if p != previous:
                _remove(p)
        if not previous.is_dir():
            return False
        for p in sorted(previous.iterdir()):
            p.rename(out / p.name)
        previous.rmdir()
        return True


def set_aside_note(out: Path) -> str:
    """``""``, or, where an ``--overwrite`` killed before its first frames left the previous run
    set aside in ``OUT/.wbcap-previous/`` (:data:`PREVIOUS_DIR`), the end of a message saying
    so and how to get it back (for ``wbcap export`` / ``wbcap view`` of such a folder)."""
    if not (out / PREVIOUS_DIR).is_dir():
        return ""
    return (f"; an interrupted `wbcap run --overwrite` set the previous run aside in {out / PREVIOUS_DIR}: "
            f"any `wbcap run` on {out} first puts it back: its command with --resume keeps it (continued where it "
            "stopped), with --overwrite it is replaced")


def unfinished_run_note(out: Path) -> str:
    """The end of a message about a run folder ``out`` without ``params.jsonl`` (``wbcap export``,
    ``wbcap view``): where an ``--overwrite`` set the previous run aside (:func:`set_aside_note`),
    or, for a run whose pass 1 began (``OUT/.wbcap/``), that it is unfinished and how to finish
    it (:func:`resume_command`); ``""`` for a folder no run wrote."""
    aside = set_aside_note(out)
    if aside or not (out / RUN_DIR).is_dir():
        return aside
    return f" yet (interrupted?); finish it with {resume_command(out)}"


def rewrite_hint(out: Path) -> str:
    """How to rewrite a run's damaged ``meta.json`` or ``params.jsonl``: in a command, the command
    that ran it with ``--resume`` (:func:`resume_command`: "rerun its run with --resume" was
    refused for the run's other flags not given again, a new user's trial); from Python, the
    setting."""
    from wbcap.errors import in_command

    if in_command():
        return f"rewrite it with its run's command: {resume_command(out)} (or start over with --overwrite)"
    return (f"rerun its run with {setting('resume', api='resume=True')} to rewrite it (or with "
            f"{setting('overwrite', api='overwrite=True')} to start over)")


def resume_command(out: Path) -> str:
    """The command that finishes the run in ``out``, quoted for a shell: the last one that ran it
    (:data:`COMMAND`) without ``--overwrite``, with ``--resume``, preceded by the environment
    variables through which it found its files (``WBCAP_WEIGHTS=... wbcap run ...``), after
    ``cd`` to its working folder when that is not this process's; for a run folder moved or copied since, its ``-o``
    names ``out`` (absolute). For a run recorded without it (an older wbcap, the Python API):
    ``wbcap run SOURCE -o OUT --resume ... and the run's pass-1 flags``, SOURCE the source
    ``run.json`` records (``SOURCE`` where there is none, or a damaged one: the commands that need
    it say so)."""
    from wbcap.console import shell_word

    try:
        run = read_run_file(out) or {}
    except InputError:
        run = {}
    command = run.get(COMMAND)
    argv, cwd, named = ((command.get("argv"), command.get("cwd"), command.get("out")) if isinstance(command, dict)
                        else (None, None, None))
    if (isinstance(argv, list) and argv and all(isinstance(w, str) for w in argv) and isinstance(cwd, str)
            and Path(cwd).is_absolute() and isinstance(named, str)):
        if not _same_file(named, str(out)):  # (the folder moved or copied since: -o names it now)
            argv = _with_out(argv, str(out.expanduser().resolve()))
        words = " ".join(shell_word(w) for w in ["wbcap", *(w for w in argv if w not in ("--resume", "--overwrite")),
                                                  "--resume"])
        env = command.get("env")
        if isinstance(env, dict):  # (files found through these: a shell without them would not find them)
            from wbcap.paths import FINDING_VARIABLES

            words = " ".join([*(f"{name}={shell_word(env[name])}" for name in FINDING_VARIABLES
                                if isinstance(env.get(name), str) and env[name]), words])
        try:
            here = os.path.samefile(cwd, os.getcwd())
        except OSError:
            here = False
        return f"`{words}`" if here else f"`cd {shell_word(cwd)} && {words}`"
    source = run.get("source")
    source = shell_word(source, option_safe=True) if isinstance(source, str) and source else "SOURCE"
    return f"`wbcap run {source} -o {shell_word(str(out), option_safe=True)} --resume` and the run's pass-1 flags"


def _with_out(argv: list[str], out: str) -> list[str]:
    """``argv`` (a ``wbcap run`` command's words) with its output folder ``out``: the value of
    ``-o`` / ``--out`` (``-o DIR``, ``--out DIR``, ``--out=DIR``, ``-oDIR``) replaced, or
    ``-o OUT`` added where it had none (the default folder)."""
    words = list(argv)
    for i, word in enumerate(words):
        if word in ("-o", "--out") and i + 1 < len(words):
            words[i + 1] = out
            return words
        if word.startswith("--out="):
            words[i] = f"--out={out}"
            return words
        if word.startswith("-o") and len(word) > 2:
            words[i] = f"-o{out}"
            return words
    return [*words, "-o", out]


def _settle_previous(out: Path) -> None:
    """A previous run set aside by an ``--overwrite`` killed before it dropped it (SIGKILL, a
    power cut): put back when the new run got no frame (:func:`restore_previous`), else dropped
    (:func:`discard_previous`). Call it holding the folder (:func:`hold_folder`)."""
    if not (out / PREVIOUS_DIR).is_dir():
        return
    from wbcap.io.raw_records import has_records

    if has_records(raw_path(out)):
        discard_previous(out)
    else:
        restore_previous(out)
        log.warning("%s: put back the previous run that an interrupted --overwrite had set aside in %s", out,
                    PREVIOUS_DIR)


def enclosing_run(path: Path) -> Path | None:
    """The nearest folder above ``path`` (resolved) holding a wbcap run (``.wbcap/run.json``),
    or None: a run's ``--overwrite`` replaces only what that run wrote, so it refuses a folder
    holding another output inside it (``wbcap run -o``, ``wbcap export --dest``)."""
    return next((f for f in path.expanduser().resolve().parents if (f / RUN_DIR / RUN_FILE).is_file()), None)


def refuse_output_inside_a_run(out: Path, *, itself: bool = False) -> None:
    """Refuse a new output folder ``out`` inside another run's folder (:func:`enclosing_run`);
    with ``itself`` (``wbcap image``, whose outputs are no run's) also a run's folder itself.

    Raises:
        InputError: one line naming ``-o``, the run folder it is or lies in and the fix.
    """
    if itself and (out.expanduser() / RUN_DIR / RUN_FILE).is_file():
        raise InputError(f"{setting('out', api='output')} {out}: is the folder of a `wbcap run` (a video's results); "
                         "a photo's results cannot go into it: choose a folder outside it")
    holder = enclosing_run(out)
    if holder is not None:
        raise InputError(f"{setting('out', api='output')} {out}: lies inside the wbcap run folder {holder} (whose "
                         "`wbcap run --overwrite` would then refuse it); choose a folder outside it")


def refuse_taken_output(out: Path, overwrite: bool = False) -> None:
    """The check :func:`prepare_output` makes of a folder without ``resume``, made early (before
    the model and the detector load, seconds) and changing nothing but what :func:`_settle_previous`
    settles (as :func:`prepare_output` would): an output
    folder that is not empty is refused, in the same words; with ``overwrite`` only one that
    holds files wbcap did not write (it was refused after the detector loaded, a user trial).
    Forgetting ``--overwrite`` is the commonest mistake; :func:`prepare_output` checks again
    under the folder's lock. The folder is held for the check (one another process is writing
    is refused as that, not as one to overwrite); a run an ``--overwrite`` killed outright set
    aside is first put back (or dropped) as :func:`prepare_output` would (:func:`_settle_previous`),
    so that folder too is refused before the model loads (it was refused after, a user trial).

    Raises:
        InputError: see :func:`replace_previous` and :func:`hold_folder`.
    """
    if not out.is_dir():
        return
    with hold_folder(out, quiet=True):
        _settle_previous(out)
        try:
            existing = sorted(out.iterdir())
        except OSError:
            return  # (prepare_output says what is wrong with it)
        if existing and overwrite:
            refuse_others(out, existing, _our_outputs(out))
        elif existing:
            _replace_previous_run(out, existing, overwrite=False)


def _replace_previous_run(out: Path, existing: list[Path], *, overwrite: bool, aside: Path | None = None) -> None:
    """:func:`replace_previous` for a ``wbcap run`` output folder: a run (``.wbcap/run.json``) may
    be resumed; outputs without one (a `wbcap export --dest` folder) are "wbcap outputs"."""
    resumable = (out / RUN_DIR / RUN_FILE).is_file()
    replace_previous(out, existing, _our_outputs(out), existing[0],
                     what="a previous wbcap run" if resumable else "wbcap outputs", overwrite=overwrite, aside=aside,
                     resumable=resumable)


def prepare_output(out: Path, fp: dict, *, resume: bool, overwrite: bool,
                   typed_paths: dict[str, TypedPath] | None = None, body_model_file: str | None = None,
                   files: dict[str, dict | None] | None = None, options: Mapping[str, str] | None = None,
                   command: dict | None = None, detector: str | None = None) -> Path:
    """Check OUT, the folder this process holds (:func:`hold_folder` made it): refuse a folder
    holding another run unless ``overwrite`` or ``resume``.

    ``fp`` is the run's :func:`fingerprint`: written to ``.wbcap/run.json``, with
    ``body_model_file`` (the SMPL-X model file the run uses, absolute, under
    :data:`BODY_MODEL_FILE`; None: not recorded); with ``resume`` the one there must equal it,
    but for the path settings named in ``typed_paths`` (key in ``fp``, dotted into nested
    settings, e.g. ``"body.path"``, and the path as the user typed it, :data:`TypedPath`; ``fp``
    holds it as :func:`absolute_path` makes it), which must name the same file or folder (:func:`same_path`:
    a run recorded before paths were absolute holds them as typed). ``body.path`` (how the model
    was found: ``--body-models`` or not) may differ when ``body_model_file`` is the file the run
    recorded. ``files`` (:func:`file_identity` of each file pass 1 reads, by role; None values
    skipped) is recorded under :data:`FILE_IDENTITY`; with ``resume`` each must be what the run
    recorded (:func:`check_same_files`: a file replaced at the same path is refused). ``run.json``
    is then rewritten with ``fp``'s absolute paths, ``body_model_file`` and ``files`` (None: the
    ones it recorded are kept). ``command`` (:data:`COMMAND`: the words after ``wbcap``, the
    working folder and the folder named) is recorded; None keeps the one recorded. ``detector``
    (the name of the person detector pass 1 runs, :data:`DETECTOR_USED`) is recorded; with
    ``resume`` it must be the one recorded (None: none runs, e.g. pass 2 alone; the recorded one is kept).
    A resume with other settings is refused naming each with both values (``options``: the
    option that sets each key of ``fp``, dotted into groups (``"body.gender": "gender"``), by
    its parameter name, spelled as :func:`wbcap.errors.setting` does); a recorded value of
    another kind than the setting's (text for a number), or a damaged file record, is called
    damage in ``run.json``.
    ``overwrite`` touches only what a wbcap run wrote, and keeps it aside in
    ``OUT/.wbcap-previous/`` (:data:`PREVIOUS_DIR`) until the new run has its first frames: the
    caller then calls :func:`discard_previous`, or :func:`restore_previous` when the run ends
    before them. A set-aside run an ``--overwrite`` killed by SIGKILL left is settled first
    (:func:`_settle_previous`).
    """
    run_dir = out / RUN_DIR
    other_out = setting("out", api="output")
    files = {role: ident for role, ident in (files or {}).items() if ident is not None}
    record = _record(fp, body_model_file, files, command, detector)
    _settle_previous(out)
    existing = list(out.iterdir())
    if existing:
        resume_, overwrite_ = setting("resume", api="resume=True"), setting("overwrite", api="overwrite=True")
        if resume:
            run_file = run_dir / RUN_FILE
            previous = read_run_file(out)
            if previous is None:
                raise InputError(f"{out}: nothing to resume (no {RUN_DIR}/{RUN_FILE}); drop {resume_} or use {overwrite_}")
            _check_file_records(run_file, previous, overwrite_)
            settings = recorded_settings(previous)
            matched = _as_given(settings, fp, typed_paths or {})
            body, now = matched.get("body"), fp.get("body")
            if (isinstance(body, dict) and isinstance(now, dict) and "path" in body
                    and _same_file(previous.get(BODY_MODEL_FILE), body_model_file)):
                body["path"] = now.get("path")  # (the same model file, found another way)
            if matched != fp:
                _refuse_other_settings(out, run_file, matched, fp, options or {}, overwrite_)
            check_same_files(out, previous.get(FILE_IDENTITY), files)
            recorded_detector = previous.get(DETECTOR_USED)
            check_same_detector(out, recorded_detector, detector)
            recorded_files = previous.get(FILE_IDENTITY)
            # (a pipeline not built from files: what the run recorded is kept)
            record = _record(fp, body_model_file if body_model_file is not None else previous.get(BODY_MODEL_FILE),
                             {**(recorded_files if isinstance(recorded_files, dict) else {}), **files},
                             command or (previous.get(COMMAND) if isinstance(previous.get(COMMAND), dict) else None),
                             # (a run recorded without it, by an older wbcap, gains none: its first
                             # frames' detector is not known, a break-it trial)
                             (detector if detector is not None else recorded_detector)
                             if isinstance(recorded_detector, str) else None)
            if previous != record:  # (paths an older run recorded as typed: absolute now, for export and view)
                from wbcap.atomic import atomic_write_text

                atomic_write_text(run_file, json.dumps(record, indent=1, sort_keys=True))
            return out
        _replace_previous_run(out, existing, overwrite=overwrite, aside=out / PREVIOUS_DIR)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, no permission, read-only disk...
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror or exc}); "
                         f"choose another {other_out} folder") from None
    from wbcap.atomic import atomic_write_text

    atomic_write_text(run_dir / RUN_FILE, json.dumps(record, indent=1, sort_keys=True))
    return out


def refuse_other_resume(out: Path, fp: dict, *, typed_paths: dict[str, TypedPath] | None = None,
                        options: Mapping[str, str] | None = None) -> None:
    """Before the model loads, what :func:`prepare_output` with ``resume`` would refuse from
    ``run.json`` alone: nothing to resume, damaged file records, settings other than ``fp``'s
    (same arguments as there), with the folder held for the check (one another process is
    writing is refused as that). Where ``body.path`` differs the whole comparison is left to
    :func:`prepare_output` (the run's model file may be found another way, which only the loaded
    model says; and a refusal names every setting that differs at once), and so are the files'
    identities. Nothing is checked in a folder that is empty, missing, or holds a run an
    ``--overwrite`` set aside (:data:`PREVIOUS_DIR`): :func:`prepare_output` settles it.

    Raises:
        InputError: the line :func:`prepare_output` would give.
    """
    if not out.is_dir() or (out / PREVIOUS_DIR).exists():
        return
    with hold_folder(out, quiet=True):
        _refuse_other_resume(out, fp, typed_paths or {}, options or {})


def _refuse_other_resume(out: Path, fp: dict, typed_paths: dict[str, TypedPath], options: Mapping[str, str]) -> None:
    try:
        if not any(out.iterdir()):
            return
    except OSError:
        return  # (prepare_output says what is wrong with it)
    resume_, overwrite_ = setting("resume", api="resume=True"), setting("overwrite", api="overwrite=True")
    run_file = out / RUN_DIR / RUN_FILE
    previous = read_run_file(out)
    if previous is None:
        raise InputError(f"{out}: nothing to resume (no {RUN_DIR}/{RUN_FILE}); drop {resume_} or use {overwrite_}")
    _check_file_records(run_file, previous, overwrite_)
    settings = recorded_settings(previous)
    matched = _as_given(settings, fp, typed_paths)
    body, now = matched.get("body"), fp.get("body")
    if isinstance(body, dict) and isinstance(now, dict) and body.get("path") != now.get("path"):
        return
    if matched != fp:
        _refuse_other_settings(out, run_file, matched, fp, options, overwrite_)


_ABSENT = object()

#: How a refusal words the kinds of JSON value a setting takes (:func:`_kind`).
_KIND_WORDS = {"number": "a number", "str": "text", "bool": "true or false", "dict": "a group of settings",
               "list": "a list"}


def _kind(value: object) -> str:
    """A JSON value's kind, numbers as one (an int recorded for a float setting is no damage)."""
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def _flat(settings: dict, other: dict) -> dict:
    """``settings`` with each group (a dict value) that ``other`` has as a group too spread into
    dotted keys (``body.gender``). A group only one side has (``people_limit``, recorded with
    ``--max-people`` only) stays whole: the setting that makes it is what differs."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value and isinstance(other.get(key), dict):
            out.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            out[key] = value
    return out


def _refuse_other_settings(out: Path, run_file: Path, recorded: dict, fp: dict, options: Mapping[str, str],
                           overwrite_: str) -> None:
    """Raise the one line of a resume whose settings ``fp`` differ from the run's ``recorded``
    ones (see :func:`prepare_output`): each setting, a group's (``body``, ``model``) one by one,
    named as its option where ``options`` gives one, with the run's value and this one's, then
    how to go on; a recorded value of another kind than the setting's is named as damage in
    ``run_file``."""
    then_all, now_all = _flat(recorded, fp), _flat(fp, recorded)
    diff = sorted(k for k in {*then_all, *now_all} if then_all.get(k, _ABSENT) != now_all.get(k, _ABSENT))
    named = [k for k in diff if not isinstance(then_all.get(k, now_all.get(k)), dict)]
    diff = named or diff  # (a group on one side only is named when nothing else differs)
    for key in diff:
        then, now = then_all.get(key), now_all.get(key)
        if then is not None and now is not None and _kind(then) != _kind(now):
            raise InputError(f"{run_file}: a damaged {key} ({json.dumps(then)[:60]}, where wbcap writes "
                             f"{_KIND_WORDS.get(_kind(now), _kind(now))}); start its run over with {overwrite_}")

    def value(v: object) -> str:
        text = "not set" if v is _ABSENT or v is None else json.dumps(v)
        return text if len(text) <= 300 else text[:297] + "..."

    scalar = (str, int, float, bool, type(None))
    parts = []
    stamps = {"source_size", "source_mtime", "source_files"}  # (the source's identity: named in words, once)
    for key in diff:
        if key in stamps:
            continue
        name = setting(options[key]) if key in options else key
        then, now = then_all.get(key, _ABSENT), now_all.get(key, _ABSENT)
        if (value(then) == value(now)  # (null recorded, absent now)
                or not all(v is _ABSENT or isinstance(v, scalar) for v in (then, now))):
            parts.append(name)
        else:
            parts.append(f"{name}: {value(then)} in the run, {value(now)} now")
    if not stamps.isdisjoint(diff) and "source" not in diff:
        parts.append("its images (which, their sizes or modification times)" if "source_files" in fp
                     else "the source file's size or modification time")
    if not stamps.isdisjoint(diff):
        # (another path: a break-it trial, given another video, was told its source had changed)
        why = "it began with another source" if "source" in diff else "its source changed since that run began"
        raise InputError(f"{out}: holds a run with different settings ({'; '.join(parts)}); {why}, and a run "
                         f"continues only from the source it began with; use {overwrite_} to start over")
    raise InputError(f"{out}: holds a run with different settings ({'; '.join(parts)}); give the run's own settings "
                     f"to continue it, or use {overwrite_} to start over")


def _check_file_records(run_file: Path, previous: dict, overwrite_: str) -> None:
    """Refuse a ``run.json`` whose model-file, file-identity or detector record
    (:data:`BODY_MODEL_FILE`, :data:`FILE_IDENTITY`, :data:`DETECTOR_USED`) is not what wbcap
    writes: a damaged one would skip the check that a resumed run uses the files and the detector
    it began with."""
    body = previous.get(BODY_MODEL_FILE)
    files = previous.get(FILE_IDENTITY)
    detector = previous.get(DETECTOR_USED)
    if body is not None and not isinstance(body, str):
        bad, what = BODY_MODEL_FILE, "a file path"
    elif detector is not None and not (isinstance(detector, str) and 0 < len(detector) <= 200):
        bad, what = DETECTOR_USED, "a detector's name"
    elif files is not None and not (isinstance(files, dict) and all(v is None or isinstance(v, dict)
                                                                      for v in files.values())):
        bad, what = FILE_IDENTITY, "a group of file records"
    else:
        return
    raise InputError(f"{run_file}: a damaged {bad} ({json.dumps(previous[bad])[:60]}, where wbcap writes {what}); "
                     f"start its run over with {overwrite_}")


def _record(fp: dict, body_model_file: object, files: dict, command: dict | None = None,
            detector: str | None = None) -> dict:
    """``run.json``: the settings ``fp``, the SMPL-X model file (:data:`BODY_MODEL_FILE`), the
    files' identities (:data:`FILE_IDENTITY`), the command (:data:`COMMAND`) and the detector
    that ran (:data:`DETECTOR_USED`), each of the last four when there is one."""
    return {**fp, **({BODY_MODEL_FILE: body_model_file} if body_model_file is not None else {}),
            **({FILE_IDENTITY: files} if files else {}), **({COMMAND: command} if command else {}),
            **({DETECTOR_USED: detector} if detector is not None else {})}


#: ``OUT/.wbcap/writing``: there while pass 2 writes OUT's outputs (made before it removes an
#: earlier pass 2's, removed when it has written them all): a run stopped in pass 2 leaves it,
#: so ``wbcap export`` and ``wbcap view`` can say that some outputs are missing.
WRITING_FILE = "writing"


def start_writing(out: Path) -> None:
    """Mark OUT as having its outputs written (:data:`WRITING_FILE`), before pass 2 touches them."""
    from wbcap.atomic import atomic_write_bytes

    (out / RUN_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / RUN_DIR / WRITING_FILE, b"")  # (a link there replaced, not its file emptied)


def done_writing(out: Path) -> None:
    """Pass 2 has written every output of OUT: drop the mark of :func:`start_writing`."""
    (out / RUN_DIR / WRITING_FILE).unlink(missing_ok=True)


def unfinished_outputs_note(out: Path) -> str | None:
    """The warning for a run folder whose pass 2 was stopped (:data:`WRITING_FILE` left): its
    outputs may lack files (``render.mp4``, animation files); None for a finished one."""
    if not (out / RUN_DIR / WRITING_FILE).is_file():
        return None
    return (f"{out}: its run was stopped while writing its outputs, so some may be missing (render.mp4, animation "
            f"files); finish them with {resume_command(out)}")


def remove_outputs(out: Path) -> list[Path]:
    """Before pass 2 writes OUT's outputs: delete those an earlier pass 2 of this folder wrote
    (``--resume`` with other smoothing, --export or --obj), or ``wbcap export`` wrote from its
    ``params.jsonl``: ``params.jsonl``, ``meta.json``, the
    track files (:func:`track_files`), ``meshes/``, ``--openpose``'s files (:func:`remove_keypoints`:
    a folder of a user's own OpenPose output is kept) and ``render.mp4``. A pass 2 stopped part way
    (Ctrl-C, a full disk) then leaves only its own files beside the frames, never a mix of two
    settings (the old sigma's render.mp4 beside the new sigma's tracks); ``--resume`` writes them all.
    Returns the track files removed."""
    removed = track_files(out)
    remove_keypoints(out)
    for path in [out / PARAMS_FILE, out / META_FILE, *removed, out / MESHES_DIR, out / RENDER_FILE]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    return removed

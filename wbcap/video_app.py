"""``wbcap run``: video (or image sequence) in, tracked and smoothed SMPL-X people out.

Two passes, so memory stays flat however long the video is and an interrupted run resumes:

1. **regress** — frames are decoded and people detected in a background thread; person crops
   from several frames are batched through the network; each processed frame's detections and
   raw parameters are appended, in frame order, to ``OUT/.wbcap/raw.jsonl`` (flushed as it
   goes). ``--resume`` keeps the complete lines already there and continues after them.
2. **finalize** — the raw file is read back; boxes are tracked (IoU + Hungarian); each person's
   parameters are moved into one camera for the whole video
   (:func:`wbcap.camera.shared_camera_translation`),
   smoothed per track, and written: ``params.jsonl``, ``track_<id>.npz`` (an AMASS file, z-up, on a
   regular clock: :mod:`wbcap.export.amass`), optional ``meshes/<track>/<frame>.obj``, and ``render.mp4`` (the source frames
   decoded again with every tracked mesh drawn over them, source audio copied).

Every output file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from wbcap.config import PipelineConfig
from wbcap.errors import InputError, add_note
from wbcap.smooth.sequence import SmoothConfig
from wbcap.track.iou_tracker import TrackerConfig

log = logging.getLogger(__name__)

RUN_DIR = ".wbcap"
RAW_FILE = "raw.jsonl"
RUN_FILE = "run.json"
PARAMS_FILE = "params.jsonl"
RENDER_FILE = "render.mp4"
ROT_KEYS = ("root_pose", "body_pose", "lhand_pose", "rhand_pose", "jaw_pose")
ROT_SIZES = (1, 21, 15, 15, 1)
TRACK_COLORS = (
    (0.65, 0.74, 0.86), (0.90, 0.62, 0.55), (0.60, 0.82, 0.62), (0.86, 0.78, 0.50),
    (0.75, 0.62, 0.85), (0.55, 0.80, 0.82), (0.88, 0.66, 0.78), (0.70, 0.70, 0.70),
)

Progress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class VideoJob:
    """What ``wbcap run`` was asked to do (built once by the CLI).

    start/end: seconds of the source to process; every: keep every N-th frame; max_frames:
    stop after this many processed frames. detector: a name
    :func:`wbcap.detect.factory.make_detector` takes (``auto``, ``hog``, ``yolox-nano``, ...,
    ``boxes:FILE`` with FILE a JSON ``{"<frame index>": [[x, y, w, h], ...]}``); detector_model:
    a YOLOX ONNX file; offline: never download a detector. focal: focal length
    in pixels of the one camera results are expressed in (default ``sqrt(W^2 + H^2)``, a ~53°
    diagonal field of view, the usual guess when the real camera is unknown). max_gap: seconds
    a track may be missed and still be one AMASS file (filled by interpolation, ``valid`` False);
    a longer gap splits it into ``track_<id>_part<k>.npz``.
    """

    source: str
    out: str
    pipeline: PipelineConfig = PipelineConfig()
    start: float = 0.0
    end: float | None = None
    every: int = 1
    max_frames: int | None = None
    detector: str = "auto"
    detector_model: str | None = None
    score_threshold: float | None = None
    min_height_frac: float | None = None
    max_people: int | None = None
    offline: bool = False
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    smooth: SmoothConfig = field(default_factory=SmoothConfig)
    focal: float | None = None
    max_gap: float = 1.0
    write_obj: bool = False
    render: bool = True
    resume: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class VideoResult:
    out: Path
    frames: int
    person_frames: int
    tracks: list[int]
    render: Path | None
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- output folder


def _fingerprint(job: VideoJob) -> dict:
    """What pass 1's results depend on (a resumed run must match it)."""
    src = Path(job.source).expanduser()
    stat = src.stat() if src.exists() else None
    from wbcap.pipeline import normalize_precision

    p = job.pipeline
    fp = {
        "source": str(src.resolve()) if src.exists() else job.source,
        "source_size": stat.st_size if stat else None,
        "source_mtime": int(stat.st_mtime) if stat else None,
        "start": job.start, "end": job.end, "every": job.every, "max_frames": job.max_frames,
        "detector": job.detector, "detector_model": job.detector_model, "score_threshold": job.score_threshold,
        "min_height_frac": job.min_height_frac, "max_people": job.max_people,
        "checkpoint": p.checkpoint, "body": asdict(p.body), "model": p.model.to_dict(),
        "precision": normalize_precision(p.precision),
        "box_scale": p.box_scale,
    }
    return json.loads(json.dumps(fp))  # as it reads back from run.json (tuples -> lists)


def _our_outputs(out: Path) -> list[Path]:
    """What a wbcap run writes in OUT, including temporaries a killed run left behind."""
    names = [RUN_DIR, PARAMS_FILE, RENDER_FILE, "meshes"]
    found = [out / n for n in names if (out / n).exists()]
    temps = [p for stem in ("params", "render", "track_*") for p in out.glob(f".{stem}.tmp-*")]
    return found + sorted(out.glob("track_*.npz")) + sorted(temps)


def prepare_output(job: VideoJob) -> Path:
    """Create/check OUT: refuse a folder holding another run unless --overwrite or --resume."""
    out = Path(job.out).expanduser()
    run_dir = out / RUN_DIR
    fp = _fingerprint(job)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; pass an output folder with -o")
    existing = [p for p in out.iterdir()] if out.is_dir() else []
    if existing:
        if job.resume:
            run_file = run_dir / RUN_FILE
            if not run_file.is_file():
                raise InputError(f"{out}: nothing to resume (no {RUN_DIR}/{RUN_FILE}); drop --resume or use --overwrite")
            previous = json.loads(run_file.read_text())
            if previous != fp:
                diff = sorted(k for k in fp if previous.get(k) != fp.get(k))
                raise InputError(f"{out}: holds a run with different settings ({', '.join(diff)}); use --overwrite to start over")
            return out
        ours = _our_outputs(out)
        others = [p for p in existing if p not in ours]
        if others:
            # --overwrite only ever deletes what a wbcap run wrote: never advise it here.
            raise InputError(f"{out} holds files wbcap did not write (e.g. {others[0].name}); choose another -o folder "
                             "(a new or empty one)")
        if not job.overwrite:
            raise InputError(
                f"{out} holds a previous wbcap run (e.g. {existing[0].name}); pass --overwrite to replace it, "
                "--resume to continue it, or choose another -o folder"
            )
        for p in ours:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, no permission, read-only disk...
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror or exc}); choose another -o folder") from None
    from wbcap.atomic import atomic_write_text

    atomic_write_text(run_dir / RUN_FILE, json.dumps(fp, indent=1, sort_keys=True))
    return out


# --------------------------------------------------------------------------- pass 1: regress


def read_raw(path: Path) -> Iterator[dict]:
    """Complete records of a raw file (a torn last line from an interrupted run is skipped)."""
    if not path.is_file():
        return
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            yield json.loads(line)


def _truncate_to_complete_lines(path: Path) -> tuple[int, int]:
    """Drop a torn last line; return (number of records, last frame index or -1)."""
    count, last, good_bytes = 0, -1, 0
    if not path.is_file():
        return 0, -1
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                last = int(json.loads(line)["frame"])
            except (ValueError, KeyError):
                break
            count += 1
            good_bytes += len(line)
    with open(path, "r+b") as f:
        f.truncate(good_bytes)
    return count, last


def _timed(iterable, timings: dict[str, float], key: str):
    """Yield from ``iterable``, adding the time spent producing each item to ``timings[key]``."""
    it = iter(iterable)
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        timings[key] = timings.get(key, 0.0) + (time.perf_counter() - t0)
        if item is None:
            return
        yield item


def _detect_thread(
    frames, detector, q: queue.Queue, stop: threading.Event, skip_until: int, timings: dict[str, float]
) -> None:
    """Producer: decode + detect; puts (frame, detections) then None; exceptions are forwarded."""
    from wbcap.detect.factory import BoxesFileDetector

    try:
        for frame in _timed(frames, timings, "decode"):
            if stop.is_set():
                break
            t1 = time.perf_counter()
            if frame.index <= skip_until:
                q.put((frame, None))
                continue
            if isinstance(detector, BoxesFileDetector):
                dets = detector.for_frame(frame.index)
            else:
                dets = detector(frame.image)
            timings["detect"] = timings.get("detect", 0.0) + (time.perf_counter() - t1)
            q.put((frame, dets))
        q.put(None)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
        q.put(exc)


def _person_record(person) -> dict:
    return {
        "box": [float(v) for v in person.box],
        "score": float(person.score),
        "crop_box": [float(v) for v in person.crop_box],
        "focal": [float(v) for v in person.focal],
        "princpt": [float(v) for v in person.princpt],
        "params": {k: [float(x) for x in np.asarray(v).reshape(-1)] for k, v in person.params.items()},
    }


def regress_frames(
    job: VideoJob, pipeline, source, progress: Progress | None = None, timings: dict[str, float] | None = None
) -> int:
    """Pass 1. Returns the number of processed frames in the raw file.

    ``timings`` (if given) accumulates seconds per stage: decode, detect (background thread),
    crop, regress, write.
    """
    timings = {} if timings is None else timings
    from wbcap.detect.factory import BoxesFileDetector, make_detector

    out = Path(job.out).expanduser()
    raw_path = out / RUN_DIR / RAW_FILE
    done_count, last_done = _truncate_to_complete_lines(raw_path) if job.resume else (0, -1)
    if not job.resume and raw_path.exists():
        raw_path.unlink()
    if last_done >= 0:
        log.info("resuming after frame %d (%d frames already done)", last_done, done_count)
    detector = make_detector(
        job.detector, model=job.detector_model, device=pipeline.device, score_threshold=job.score_threshold,
        min_height_frac=job.min_height_frac, offline=job.offline,  # --max-people is applied (and counted) below
    )
    if isinstance(detector, BoxesFileDetector):
        names = None
        if source.info.is_image_sequence:
            from wbcap.io.images import iter_image_paths  # the same list, in the same order, as the frames

            names = [p.name for p in iter_image_paths(job.source)]
        detector.bind(names, source.info.frame_count)
    total = _expected_frames(source.info, job)
    q: queue.Queue = queue.Queue(maxsize=max(4, pipeline.batch_size))
    stop = threading.Event()
    worker = threading.Thread(target=_detect_thread, args=(source, detector, q, stop, last_done, timings), daemon=True)
    worker.start()
    processed = done_count
    current: int | None = None  # the latest frame taken from the decoder, for error notes
    over_limit = frames_over = 0  # boxes beyond --max-people, and the frames they were in
    seen: set[int] = set()
    pending: list[tuple] = []  # (frame index, time, size, jobs)
    n_pending_crops = 0
    try:
        with open(raw_path, "a", encoding="utf-8") as raw:

            def flush() -> None:
                nonlocal pending, n_pending_crops, processed
                all_jobs = [j for _, _, _, jobs in pending for j in jobs]
                t0 = time.perf_counter()
                people = pipeline.regress(all_jobs) if all_jobs else []
                t1 = time.perf_counter()
                timings["regress"] = timings.get("regress", 0.0) + (t1 - t0)
                k = 0
                for index, ftime, size, jobs in pending:
                    mine = people[k : k + len(jobs)]
                    k += len(jobs)
                    rec = {"frame": index, "time": ftime, "size": size, "people": [_person_record(p) for p in mine]}
                    raw.write(json.dumps(rec) + "\n")
                raw.flush()
                timings["write"] = timings.get("write", 0.0) + (time.perf_counter() - t1)
                processed += len(pending)
                if progress:
                    progress("regress", processed, total)
                pending, n_pending_crops = [], 0

            while True:
                item = q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                frame, dets = item
                current = frame.index
                seen.add(frame.index)
                if dets is None:  # done in an earlier run
                    continue
                if job.max_people is not None and len(dets) > job.max_people:
                    over_limit += len(dets) - job.max_people
                    frames_over += 1
                    dets = list(dets)[: job.max_people]
                h, w = frame.image.shape[:2]
                t0 = time.perf_counter()
                jobs = pipeline.crop(frame.image, dets, source=f"frame {frame.index}", strict=False)
                timings["crop"] = timings.get("crop", 0.0) + (time.perf_counter() - t0)
                pending.append((frame.index, float(frame.time), [w, h], jobs))
                n_pending_crops += len(jobs)
                if n_pending_crops >= pipeline.batch_size or len(pending) >= 4 * pipeline.batch_size:
                    flush()
            if pending:
                flush()
            os.fsync(raw.fileno())
        if over_limit:
            log.warning("dropped %d detected box(es) beyond --max-people %d in %d frame(s) (the lowest-scoring ones); "
                        "raise --max-people to keep them", over_limit, job.max_people, frames_over)
        if isinstance(detector, BoxesFileDetector):
            outside = sorted(set(detector.by_frame) - seen)
            if outside:
                log.warning("%s: %d of %d box-file frames were not processed (outside --start/--end/--every/--max-frames, "
                            "e.g. frame %d)", detector.path, len(outside), len(detector.by_frame), outside[0])
    except Exception as exc:
        add_note(exc, f"while processing {job.source}" + ("" if current is None else f" near frame {current}"))
        raise
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)
    return processed


def _expected_frames(info, job: VideoJob) -> int | None:
    if info.frame_count is None or not info.fps:
        return job.max_frames
    first = int(np.ceil(job.start * info.fps - 1e-6))
    last = info.frame_count if job.end is None else min(info.frame_count, int(np.ceil(job.end * info.fps - 1e-6)))
    n = max(0, -(-(last - first) // max(1, job.every)))
    return min(n, job.max_frames) if job.max_frames else n


# --------------------------------------------------------------------------- pass 2: finalize


def _frames_of_raw(raw_path: Path, fps: float) -> dict[int, float]:
    """``{frame index: time}`` of every record of the raw file, times strictly increasing.

    Runs from this version record repaired times already; a raw file of an older run may hold
    repeated or backward times, which get the decoder's rule (:func:`wbcap.io.frame_times.retime`).
    """
    from wbcap.io.frame_times import retime

    index, times = [], []
    for rec in read_raw(raw_path):
        index.append(int(rec["frame"]))
        times.append(float(rec["time"]))
    fixed_t, fixed = retime(times, fps)
    if fixed:
        log.warning("%d of %d frame times in %s were out of order or repeated; retimed as the decoder does",
                    fixed, len(times), raw_path)
    return dict(zip(index, fixed_t))


@dataclass
class _Collected:
    """Pass 2, step 1: the raw file tracked."""

    frames: dict[int, float]  # frame index -> time (s), in frame order
    per_track: dict[int, dict[str, list]]
    kept: set[int]
    detections: int = 0
    untracked: int = 0  # boxes left without an id (over --max-people, or unmatched)
    dropped: dict[int, int] = field(default_factory=dict)  # short track id -> frames
    min_length: int = 0
    static: dict[int, int] = field(default_factory=dict)  # static false-positive track id -> frames


def _collect_tracks(job: VideoJob, raw_path: Path, fps: float) -> _Collected:
    """Track the raw file's boxes; an input shorter than ``--min-track`` keeps its tracks.

    With ``job.tracker.drop_static`` (default), kept tracks judged static false positives
    (:mod:`wbcap.track.static_filter`: long, low mean score, never moving) are removed from
    ``kept`` and listed in ``static``; boxes the user gave (``boxes:FILE``, ``full``) are not judged.
    """
    import dataclasses

    from wbcap.track.iou_tracker import IoUTracker
    from wbcap.track.static_filter import static_false_positives

    frames = _frames_of_raw(raw_path, fps)
    # A photo or a 2-frame clip cannot hold a 3-frame track: keep whatever the input allows.
    min_length = min(job.tracker.min_length, max(1, len(frames)))
    tracker = IoUTracker(dataclasses.replace(job.tracker, min_length=min_length))
    col = _Collected(frames=frames, per_track={}, kept=set(), min_length=min_length)
    for rec in read_raw(raw_path):
        people = rec["people"]
        boxes = np.asarray([p["box"] for p in people], np.float64).reshape(-1, 4)
        scores = np.asarray([p["score"] for p in people], np.float64)
        ids = tracker.update(rec["frame"], boxes, scores)
        col.detections += len(people)
        for pid, person in zip(ids, people):
            if pid < 0:
                col.untracked += 1
                continue
            tr = col.per_track.setdefault(
                pid, {"frame": [], "time": [], "box": [], "score": [], "focal": [], "princpt": [], "params": []})
            tr["frame"].append(rec["frame"])
            tr["time"].append(frames[int(rec["frame"])])
            tr["box"].append(person["box"])
            tr["score"].append(float(person["score"]))
            tr["focal"].append(person["focal"][0])
            tr["princpt"].append(person["princpt"])
            tr["params"].append(person["params"])
    col.kept = tracker.finalize()
    col.dropped = {tid: len(tr["frame"]) for tid, tr in col.per_track.items() if tid not in col.kept}
    user_boxes = job.detector.startswith("boxes:") or job.detector == "full"
    if job.tracker.drop_static and not user_boxes:
        static = static_false_positives({
            tid: (np.asarray(tr["time"]), np.asarray(tr["box"], np.float64).reshape(-1, 4), np.asarray(tr["score"]))
            for tid, tr in col.per_track.items() if tid in col.kept
        })
        for tid, st in sorted(static.items()):
            log.info("track %d dropped as static: %d detections over %.1f s, mean score %.2f, centre moved %.3f "
                     "and size changed %.3f box heights (%.0f px)",
                     tid, st.frames, st.duration, st.mean_score, st.motion, st.resize, st.height)
        col.static = {tid: st.frames for tid, st in static.items()}
        col.kept -= set(static)
    return col


def _report_losses(job: VideoJob, col: _Collected, n_tracks: int) -> None:
    """One warning per kind of dropped data, with counts and advice true for the flags used."""
    if col.dropped:
        log.warning(
            "dropped %d short track(s) (%d person-frames) seen in fewer than --min-track %d frames; "
            "lower --min-track to keep them", len(col.dropped), sum(col.dropped.values()), col.min_length,
        )
    if col.static:
        from wbcap.track.static_filter import StaticFilterConfig

        cfg = StaticFilterConfig()
        log.warning(
            "dropped %d static track(s) (%d person-frames) that never moved (box within %.0f%% of its height for "
            "%g s or more) and scored below %.2f on average: likely objects detected as people; "
            "pass --keep-static to keep them",
            len(col.static), sum(col.static.values()), 100 * cfg.max_motion, cfg.min_duration, cfg.max_mean_score,
        )
    if col.untracked:
        why = (f"beyond --max-people {job.tracker.max_people} or not matched"
               if job.tracker.max_people is not None else "not matched to a track")
        log.warning("%d detected box(es) got no track (%s)", col.untracked, why)
    if n_tracks:
        return
    if col.detections == 0:
        det = job.detector
        if det.startswith("boxes:"):
            advice = f"the box file {det[len('boxes:'):]} gives no box for the processed frames; check its keys"
        elif det == "full":
            advice = "check --start/--end"
        else:
            advice = ("try --detector full if one person fills the frame"
                      + (", or a lower --score-threshold" if det in ("auto", "hog", "torchvision") else ""))
        log.warning("%s: no person was detected in any of the %d processed frames by the %s detector; %s",
                    job.source, len(col.frames), det, advice)
    else:
        log.warning("%s: %d person detection(s) but no track was kept; see the warnings above", job.source, col.detections)


def _clock_rate(times: list[float], nominal: float) -> float:
    """Rows per second of the AMASS clock: the nominal rate (source rate / ``--every``) when the
    processed frames follow it (median interval within 1 %; a few dropped frames do not change
    it), else their average rate (variable-frame-rate footage, whose container may declare a
    nominal rate the frames do not have)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return nominal
    median_rate = 1.0 / float(np.median(np.diff(times)))
    if abs(median_rate - nominal) <= 0.01 * nominal:
        return nominal
    return (len(times) - 1) / (times[-1] - times[0])


def _smoothed_track(job: VideoJob, tr: dict[str, list], body, dev, focal: float, princpt) -> dict[str, np.ndarray]:
    """One track's parameters moved into the video camera and smoothed (arrays per frame).

    Each person-frame's ``cam_trans`` is in its own box's camera (``tr["focal"]`` (N,),
    ``tr["princpt"]`` (N, 2), pixels); :func:`wbcap.camera.shared_camera_translation` moves it so
    the pelvis keeps its pixel and apparent size under the video camera (``focal``, ``princpt``).
    """
    import torch

    from wbcap.camera import shared_camera_translation_np
    from wbcap.smooth.sequence import smooth_track

    params = {k: np.asarray([p[k] for p in tr["params"]], np.float32) for k in tr["params"][0]}
    with torch.no_grad():
        rest = body.rest_root(torch.as_tensor(params["shape"], device=dev)).cpu().numpy()
    trans = shared_camera_translation_np(
        params["cam_trans"], rest, np.asarray(tr["focal"]), np.asarray(tr["princpt"]), focal, princpt
    )
    poses = np.concatenate([params[k].reshape(len(trans), n, 3) for k, n in zip(ROT_KEYS, ROT_SIZES)], 1)
    t = np.asarray(tr["time"], np.float64)
    poses_s, trans_s, betas_s, extras = smooth_track(poses, trans, params["shape"], t, job.smooth, extras={"expr": params["expr"]})
    split = np.cumsum(ROT_SIZES)[:-1]
    smoothed = {k: part.reshape(len(t), -1).astype(np.float32) for k, part in zip(ROT_KEYS, np.split(poses_s, split, axis=1))}
    smoothed["shape"] = np.repeat(np.asarray(betas_s, np.float32)[None], len(t), 0)
    smoothed["expr"] = np.asarray(extras["expr"], np.float32)
    smoothed["cam_trans"] = np.asarray(trans_s, np.float32)
    return {
        **smoothed,
        "frame": np.asarray(tr["frame"], np.int64),
        "time": t,
        "box": np.asarray(tr["box"], np.float32),
        "betas": np.asarray(betas_s, np.float32),
    }


def _write_track_npz(out: Path, tid: int, tr: dict[str, np.ndarray], body, dev, rate: float, max_gap: float,
                     gender: str) -> list[Path]:
    """``track_<id>.npz`` (or ``track_<id>_part<k>.npz`` when a long gap splits it): AMASS files."""
    import torch

    from wbcap.export.amass import amass_arrays, lerp_rows, regular_clock, slerp_rows, write_amass_npz

    with torch.no_grad():
        rest = body.rest_root(torch.as_tensor(tr["betas"][None], device=dev)).cpu().numpy()[0]
    hands_mean = body.hands_mean()
    segments = regular_clock(tr["time"], rate, max_gap)
    written = []
    for k, seg in enumerate(segments):
        rot = {key: slerp_rows(tr[key].reshape(len(tr["time"]), -1, 3), seg).reshape(len(seg.times), -1) for key in ROT_KEYS}
        arrays = amass_arrays(
            global_orient=rot["root_pose"], body_pose=rot["body_pose"], jaw_pose=rot["jaw_pose"],
            left_hand_pose=rot["lhand_pose"], right_hand_pose=rot["rhand_pose"],
            transl=lerp_rows(tr["cam_trans"], seg), betas=tr["betas"], expression=lerp_rows(tr["expr"], seg),
            hands_mean=hands_mean, rest_root=rest, fps=rate, times=seg.times,
            frame_indices=np.where(seg.valid, tr["frame"][seg.lo], -1), valid=seg.valid, gender=gender,
        )
        name = f"track_{tid}.npz" if len(segments) == 1 else f"track_{tid}_part{k + 1}.npz"
        written.append(write_amass_npz(out / name, arrays))
    if len(segments) > 1:
        log.info("track %d has gaps longer than --max-gap %g s: written as %d files (track_%d_part*.npz)",
                 tid, max_gap, len(segments), tid)
    return written


def _write_params_jsonl(out: Path, frames: dict[int, float], tracks: dict, by_frame: dict, focal: float, princpt,
                        size: tuple[int, int]) -> int:
    """``params.jsonl``: one line per person-frame, in frame order; returns the line count."""
    from wbcap.atomic import atomic_path

    camera = {"focal": [focal, focal], "princpt": list(princpt), "image_size": list(size)}
    zeros = [0.0, 0.0, 0.0]
    n_lines = 0
    with atomic_path(out / PARAMS_FILE) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for frame_index, ftime in frames.items():
            for tid, row in sorted(by_frame.get(frame_index, [])):
                tr = tracks[tid]
                rec = {"frame": frame_index, "time": ftime, "track": tid, "box": tr["box"][row].tolist()}
                for k in (*ROT_KEYS, "shape", "expr", "cam_trans"):
                    rec[k] = tr[k][row].tolist()
                # Hand4Whole does not estimate the eyes: SMPL-X's rest eyes, written so every parameter is here.
                rec["leye_pose"], rec["reye_pose"] = zeros, zeros
                rec["camera"] = camera
                f.write(json.dumps(rec) + "\n")
                n_lines += 1
    return n_lines


def finalize(
    job: VideoJob, pipeline, info, progress: Progress | None = None, timings: dict[str, float] | None = None
) -> VideoResult:
    """Pass 2: track, move to the video camera, smooth, write every output file."""
    timings = {} if timings is None else timings
    t_start = time.perf_counter()
    out = Path(job.out).expanduser()
    body = pipeline.regressor.body
    dev = next(iter(body.buffers())).device
    width, height = info.width, info.height
    focal = float(job.focal) if job.focal else float(np.hypot(width, height))
    princpt = (width / 2.0, height / 2.0)
    rate = float(info.fps) / max(1, job.every) if info.fps else 30.0

    col = _collect_tracks(job, out / RUN_DIR / RAW_FILE, rate)
    rate = _clock_rate(list(col.frames.values()), rate)
    tracks = {tid: _smoothed_track(job, col.per_track[tid], body, dev, focal, princpt)
              for tid in sorted(col.per_track) if tid in col.kept}
    _report_losses(job, col, len(tracks))

    by_frame: dict[int, list[tuple[int, int]]] = {}
    for tid, tr in tracks.items():
        for row, f in enumerate(tr["frame"]):
            by_frame.setdefault(int(f), []).append((tid, row))
    n_lines = _write_params_jsonl(out, col.frames, tracks, by_frame, focal, princpt, (width, height))
    written = {p for tid, tr in tracks.items()
               for p in _write_track_npz(out, tid, tr, body, dev, rate, job.max_gap, job.pipeline.body.gender)}
    # A rerun (--resume with other settings) must not leave files of the earlier outputs behind.
    for stale in sorted(set(out.glob("track_*.npz")) - written):
        stale.unlink()
    if (out / "meshes").is_dir():
        shutil.rmtree(out / "meshes")  # rewritten below with --obj, else stale
    if not job.render and (out / RENDER_FILE).exists():
        (out / RENDER_FILE).unlink()

    timings["track+smooth+write"] = time.perf_counter() - t_start
    if job.write_obj:
        t0 = time.perf_counter()
        _write_objs(out, tracks, body, pipeline.faces, dev, progress)
        timings["obj"] = time.perf_counter() - t0
    render_path = None
    frame_times = list(col.frames.values())
    if job.render:
        # Audio up to the end of the last processed frame (--max-frames may stop before --end).
        last = frame_times[-1] + 1.0 / rate if frame_times else job.start
        audio_end = last if job.end is None else min(job.end, last)
        render_path = _render_video(
            job, tracks, by_frame, body, pipeline.faces, dev, focal, princpt, info, progress, timings, audio_end
        )
    return VideoResult(
        out=out, frames=len(col.frames), person_frames=n_lines, tracks=sorted(tracks), render=render_path, timings=timings
    )


def _track_vertices(body, tr: dict, rows: np.ndarray, dev) -> np.ndarray:
    """(len(rows), V, 3) vertices in the video camera for rows of one track."""
    import torch

    t = lambda k: torch.as_tensor(tr[k][rows], device=dev)  # noqa: E731
    zeros = torch.zeros(len(rows), 3, device=dev)
    with torch.no_grad():
        o = body(
            betas=t("shape"), global_orient=t("root_pose"), body_pose=t("body_pose"), left_hand_pose=t("lhand_pose"),
            right_hand_pose=t("rhand_pose"), jaw_pose=t("jaw_pose"), expression=t("expr"), leye_pose=zeros, reye_pose=zeros,
        )
        return (o.vertices + t("cam_trans")[:, None, :]).cpu().numpy()


def _write_objs(out: Path, tracks: dict, body, faces, dev, progress: Progress | None) -> None:
    from wbcap.export.obj import write_obj

    total = sum(len(tr["frame"]) for tr in tracks.values())
    done = 0
    for tid, tr in tracks.items():
        folder = out / "meshes" / f"{tid}"
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(tr["frame"]), 64):
            rows = np.arange(start, min(start + 64, len(tr["frame"])))
            verts = _track_vertices(body, tr, rows, dev)
            for r, v in zip(rows, verts):
                write_obj(folder / f"{int(tr['frame'][r]):06d}.obj", v, faces)
            done += len(rows)
            if progress:
                progress("obj", done, total)


def _render_video(
    job, tracks, by_frame, body, faces, dev, focal, princpt, info, progress: Progress | None, timings, audio_end
) -> Path:
    from wbcap.export.render import render_meshes
    from wbcap.io.video_reader import open_frames
    from wbcap.io.video_writer import VideoWriter

    out = Path(job.out).expanduser() / RENDER_FILE
    source = open_frames(job.source, start=job.start, end=job.end, every=job.every, max_frames=job.max_frames,
                         warn_retimed=False)  # pass 1 reported the retimed frames already
    fps = info.fps_fraction / max(1, job.every) if info.fps_fraction else 30
    audio = None if source.info.is_image_sequence or not source.info.has_audio else Path(job.source)
    n = 0
    with VideoWriter(out, info.width, info.height, fps, audio_from=audio, audio_start=job.start, audio_end=audio_end) as writer:
        for frame in _timed(source, timings, "render_decode"):
            t1 = time.perf_counter()
            people = sorted(by_frame.get(frame.index, []))
            image = frame.image
            if people:
                meshes = [_track_vertices(body, tracks[tid], np.array([row]), dev)[0] for tid, row in people]
                colors = np.asarray([TRACK_COLORS[tid % len(TRACK_COLORS)] for tid, _ in people], np.float32)
                image = render_meshes(image, meshes, faces, (focal, focal), princpt, colors=colors)
            t2 = time.perf_counter()
            timings["render"] = timings.get("render", 0.0) + (t2 - t1)
            writer.write(image, time=frame.time)  # each frame at its source time: VFR kept
            timings["encode"] = timings.get("encode", 0.0) + (time.perf_counter() - t2)
            n += 1
            if progress:
                progress("render", n, None)
    return out


# --------------------------------------------------------------------------- entry point


def run_video(job: VideoJob, pipeline=None, progress: Progress | None = None) -> VideoResult:
    """Run both passes for ``job`` (see the module docstring)."""
    from wbcap.io.video_reader import open_frames
    from wbcap.pipeline import Pipeline

    if job.every < 1:
        raise InputError(f"--every {job.every}: must be >= 1")
    source = open_frames(job.source, start=job.start, end=job.end, every=job.every, max_frames=job.max_frames)
    out = Path(job.out).expanduser()
    created = not out.exists()
    if pipeline is None:
        pipeline = Pipeline.from_config(job.pipeline)
    prepare_output(job)
    try:
        timings: dict[str, float] = {}
        frames = regress_frames(job, pipeline, source, progress, timings)
    except BaseException:
        # Nothing worth resuming: leave no half-made output folder behind.
        if created and not any(read_raw(out / RUN_DIR / RAW_FILE)):
            shutil.rmtree(out, ignore_errors=True)
        raise
    if frames == 0:
        raise InputError(f"{job.source}: no frames in the selected range (start {job.start}, end {job.end}); check --start/--end")
    try:
        return finalize(job, pipeline, source.info, progress, timings)
    except Exception as exc:
        add_note(exc, f"while writing the outputs of {job.source} to {out}")
        raise

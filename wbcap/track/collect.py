"""Tracks of a ``wbcap run`` raw file (pass 2, step 1): every frame's boxes linked into tracks
(:class:`~wbcap.track.iou_tracker.IoUTracker`), each track's person-frames gathered, and
the losses (short, static) counted and reported.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wbcap.errors import setting
from wbcap.io.raw_records import PART_BOXES, choice_boxes, detected_looks, read_checked_raw, record_size
from wbcap.track.cuts import FLASH_SECONDS, FrameChange
from wbcap.track.iou_tracker import PAUSE_LEAST_FRAMES, PAUSE_SLACK, PauseFinder, TrackerConfig

log = logging.getLogger(__name__)


def frames_of_raw(raw_path: Path, fps: float) -> tuple[dict[int, float], list[FrameChange]]:
    """``{frame index: time}`` of every record of the raw file, times strictly increasing, and each
    record's :class:`~wbcap.track.cuts.FrameChange`, in the same order.

    Runs from this version record repaired times already; a raw file of an older run may hold
    repeated or backward times, which get the decoder's rule (:func:`wbcap.io.frame_times.retime`).

    Raises:
        InputError: a damaged record (:func:`wbcap.io.raw_records.read_checked_raw`).
    """
    from wbcap.io.frame_times import retime

    index, times, changes = [], [], []
    for rec in read_checked_raw(raw_path):
        index.append(int(rec["frame"]))
        times.append(float(rec["time"]))
        changes.append(FrameChange.of_record(rec))
    fixed_t, fixed = retime(times, fps)
    if fixed:
        log.warning("%d of %d frame times in %s were out of order or repeated; retimed as the decoder does",
                    fixed, len(times), raw_path)
    return dict(zip(index, fixed_t)), changes


@dataclass
class Track:
    """One tracked person's person-frames as read from the raw file: N entries per field, in
    frame order (raw record format: :mod:`wbcap.io.raw_records`)."""

    frame: list[int] = field(default_factory=list)  # source frame index
    time: list[float] = field(default_factory=list)  # seconds (repaired: strictly increasing)
    box: list[list[float]] = field(default_factory=list)  # detected box (x, y, w, h), image pixels
    score: list[float] = field(default_factory=list)  # detection score
    focal: list[float] = field(default_factory=list)  # the person-frame's own image camera: fx = fy, pixels
    princpt: list[list[float]] = field(default_factory=list)  # its principal point (cx, cy), pixels
    params: list[dict[str, list[float]]] = field(default_factory=list)  # network SMPL-X parameters, flattened
    # the network's left-hand, right-hand and face boxes (x, y, w, h), image pixels; None: not recorded (older runs)
    part_boxes: list[list[list[float]] | None] = field(default_factory=list)

    def cut(self, n: int) -> None:
        """Keep the first ``n`` person-frames only."""
        for f in dataclasses.fields(self):
            del getattr(self, f.name)[n:]

    def append(self, frame: int, time: float, person: dict) -> None:
        """Add a raw record's person (``frame`` index, ``time`` seconds)."""
        self.frame.append(frame)
        self.time.append(time)
        self.box.append(person["box"])
        self.score.append(float(person["score"]))
        self.focal.append(person["focal"][0])
        self.princpt.append(person["princpt"])
        self.params.append(person["params"])
        self.part_boxes.append([person[key] for key in PART_BOXES] if all(key in person for key in PART_BOXES)
                               else None)


@dataclass
class Collected:
    """Pass 2, step 1: the raw file tracked."""

    frames: dict[int, float]  # frame index -> time (s), in frame order
    per_track: dict[int, Track]  # track id -> its person-frames (kept or not)
    kept: set[int]
    detections: int = 0
    dropped: dict[int, int] = field(default_factory=dict)  # short track id -> frames
    min_length: int = 0
    frame_stride: int = 1  # source frames between processed ones (--every)
    static: dict[int, int] = field(default_factory=dict)  # static false-positive track id -> frames
    cuts: list[int] = field(default_factory=list)  # frames that start a new shot (every track ended there)
    flashes: list[int] = field(default_factory=list)  # frames that start a flash or cutaway (the picture came back)
    pauses: list[int] = field(default_factory=list)  # frames after a pause in the source longer than --max-age


def collect_tracks(raw_path: Path, fps: float, tracker_config: TrackerConfig, detector: str) -> Collected:
    """Track the raw file's boxes; an input whose shots are all shorter than ``--min-track``
    keeps its tracks (the longest shot's length is the least kept).

    ``fps``: the nominal processed frame rate (frames per second), for repairing times. With
    ``tracker_config.drop_static`` (default), kept tracks judged static false positives
    (:mod:`wbcap.track.static_filter`: long, low mean score, never moving) are removed from
    ``kept`` and listed in ``static``; boxes the user gave (``detector`` ``boxes:FILE`` or
    ``full``) are not judged. Every track ends at a cut between shots (records' ``change``,
    ``back``, ``back_to`` by ``tracker_config.cut_threshold``: :func:`~wbcap.track.cuts.find_cuts`),
    listed in ``cuts``; where the picture comes back after a flash or cutaway (``flashes``), the
    tracks that began during it end and the older ones go on. Every track also ends after a pause
    in the source's timestamps longer than a missed track lives
    (:class:`~wbcap.track.iou_tracker.PauseFinder`), listed in
    ``pauses``.

    Raises:
        InputError: a damaged record (:func:`wbcap.io.raw_records.read_checked_raw`).
    """
    from wbcap.track.cuts import find_cuts
    from wbcap.track.iou_tracker import IoUTracker
    from wbcap.track.static_filter import static_false_positives

    frames, changes = frames_of_raw(raw_path, fps)
    found = find_cuts([(f, t, c) for (f, t), c in zip(frames.items(), changes)], tracker_config.cut_threshold)
    cuts = set(found.cuts)
    # A pause in the source (a camera stopped and started again, a motion-triggered recording: its
    # timestamps jump) longer than a missed track lives ends every track, as a cut does, also where
    # a flash ends there (as pass 1's PeopleLimit decides): the tracker counts frames, so across it
    # a track would match whoever stands where its box was (an HCI trial: an id on another man 38 s later).
    finder = PauseFinder(tracker_config.max_age)
    pauses, first_limit = [], 0.0
    for frame, t in frames.items():
        limit = finder.limit
        if finder(t):
            pauses.append(frame)
            first_limit = first_limit or limit
    ends = cuts | set(pauses)
    # A photo or a 2-frame clip cannot hold a 3-frame track, nor can shots of 2 frames (a 2-frame
    # GIF with a cut between its frames lost both people: a break-it trial): keep whatever the
    # input's longest shot allows.
    min_length = min(tracker_config.min_length, max(1, _longest_shot(list(frames), ends)))
    # without --max-people's limit: pass 1 applied it, and every box it kept is a person regressed
    # (its rule again here, whose cuts see flashes that pass 1 took for cuts, left kept boxes without
    # a track: a review)
    tracker = IoUTracker(dataclasses.replace(tracker_config, min_length=min_length, max_people=None))
    col = Collected(frames=frames, per_track={}, kept=set(), min_length=min_length,
                    frame_stride=tracker_config.frame_stride)
    col.cuts, col.flashes, col.pauses = found.cuts, found.flashes, pauses
    with_people = without_looks = 0
    for rec in read_checked_raw(raw_path):
        people = rec["people"]
        frame = int(rec["frame"])
        if frame in ends:
            tracker.end_tracks()
        elif frame in found.returns:  # (a flash or cutaway ended: the tracks it began end, the older go on)
            tracker.end_tracks(born_after=found.returns[frame])
        # (as --max-people's choice saw the frame: the boxes it left out are tracked unseen here too,
        # so a kept box does not take the id of a followed person hidden there: a review)
        boxes, scores, left_out, at = choice_boxes(rec)
        looks = detected_looks(rec)  # (choice_boxes' rows)
        if len(boxes):
            with_people += 1
            without_looks += looks is None
        every_id = tracker.update(rec["frame"], boxes, scores, left_out, looks=looks, size=record_size(rec))
        ids = [every_id[k] for k in at]
        col.detections += len(people)
        for pid, person in zip(ids, people):  # (every kept box gets one: no limit here, none of them left out)
            col.per_track.setdefault(pid, Track()).append(rec["frame"], frames[int(rec["frame"])], person)
    if without_looks and tracker_config.appearance:
        log.warning("%d of %d frames with people in %s have no looks (a run made before wbcap recorded them): their boxes "
                    "are tracked by overlap alone", without_looks, with_people, raw_path)
    col.kept = tracker.finalize()
    col.dropped = {tid: len(tr.frame) for tid, tr in col.per_track.items() if tid not in col.kept}
    user_boxes = detector.startswith("boxes:") or detector == "full"
    if tracker_config.drop_static and not user_boxes:
        static = static_false_positives({
            tid: (np.asarray(tr.time), np.asarray(tr.box, np.float64).reshape(-1, 4), np.asarray(tr.score))
            for tid, tr in col.per_track.items() if tid in col.kept
        })
        for tid, st in sorted(static.items()):
            log.info("track %d dropped as static: %d detections over %.1f s, mean score %.2f, centre moved %.3f "
                     "and size changed %.3f box heights (%.0f px)",
                     tid, st.frames, st.duration, st.mean_score, st.motion, st.resize, st.height)
        col.static = {tid: st.frames for tid, st in static.items()}
        col.kept -= set(static)
        _cut_static_tails(col, static)
    if col.flashes:
        shown = ", ".join(f"{frames[f]:.2f} s" for f in col.flashes[:10]) + (", ..." if len(col.flashes) > 10 else "")
        log.info("%d flash(es) or cutaway(s) shorter than %g s (at %s): not cuts; the people from before each go on "
                 "with their ids after it", len(col.flashes), FLASH_SECONDS, shown)
    if col.pauses:
        shown = ", ".join(f"{frames[f]:.2f} s" for f in col.pauses[:10]) + (", ..." if len(col.pauses) > 10 else "")
        log.info("%d pause(s) in the source longer than %s allows a missed track (over %s + %g frame intervals and %g: "
                 "%.2g s at the first; before %s): every track ends there and the people after it get new ids "
                 "(raise %s to keep ids across them)", len(col.pauses), setting("max_age"), setting("max_age"),
                 PAUSE_SLACK, PAUSE_LEAST_FRAMES, first_limit, shown, setting("max_age"))
    if col.cuts:
        shown = ", ".join(f"{frames[f]:.2f} s" for f in col.cuts[:10]) + (", ..." if len(col.cuts) > 10 else "")
        log.info("%d cut(s) between shots (at %s): every track ends there and the next shot's people get new ids "
                 "(%s keeps ids across them)", len(col.cuts), shown, setting("no_cuts", api="cut_threshold=None"))
    return col


def _cut_static_tails(col: Collected, static: dict) -> None:
    """Cut from the kept tracks the detections at their end that sit on a static object's place
    after the object's own track ended (:func:`wbcap.track.static_filter.static_tails`); a track
    all of them is dropped as static, one left shorter than ``min_length`` as short."""
    from wbcap.track.static_filter import static_tails

    def arrays(tr: Track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.asarray(tr.time), np.asarray(tr.box, np.float64).reshape(-1, 4), np.asarray(tr.score)

    tails = static_tails({tid: arrays(col.per_track[tid]) for tid in col.kept | set(static)}, static,
                         min_frames=max(col.min_length, 1))
    for tid, (k, sid) in sorted(tails.items()):
        tr = col.per_track[tid]
        log.info("track %d: its last %d detections (from %.2f s) are on the place of static track %d, which ended "
                 "before them (the object's, taken over as the person passed it): %s", tid, len(tr.frame) - k,
                 tr.time[k], sid, "dropped as static" if k == 0 else "cut off")
        if k == 0:
            col.static[tid] = len(tr.frame)
            col.kept.discard(tid)
            continue
        tr.cut(k)
        if k < col.min_length:
            col.dropped[tid] = k
            col.kept.discard(tid)


def _longest_shot(frames: list[int], cuts: set[int]) -> int:
    """The most frames of ``frames`` (in order) between two cuts (``cuts``: the frames that begin a shot)."""
    longest = run = 0
    for f in frames:
        run = 1 if f in cuts else run + 1
        longest = max(longest, run)
    return longest


def report_losses(col: Collected, n_tracks: int, source: str, detector: str, small_people: str = "") -> None:
    """One warning per kind of dropped data, with counts and advice true for the flags used
    (``source`` as given, ``detector`` the ``--detector`` value; ``n_tracks`` tracks kept;
    ``small_people``: advice, where the frames show people smaller than the source does, that
    the no-detection warning adds: a calibrated very wide lens's undistortion)."""
    if col.dropped:
        # (--every 5 of walking people: boxes no longer overlap from one processed frame to the next,
        # and tracks break into pieces, which a lower --min-track only keeps: an HCI trial)
        sparse = (f", or pass a smaller {setting('every')} than {col.frame_stride} (tracks follow boxes that overlap "
                  f"from one processed frame to the next, and break where people move further)"
                  if col.frame_stride > 1 else "")
        ids = sorted(col.dropped)  # (named: a user looked for a missing id in the files, in vain: an HCI trial)
        named = ", ".join(map(str, ids[:10])) + (", ..." if len(ids) > 10 else "")
        log.warning(
            "dropped %d short track(s) (%d person-frames; id %s) seen in fewer than %d frames (%s); lower it to keep "
            "them%s", len(col.dropped), sum(col.dropped.values()), named, col.min_length, setting("min_length"), sparse,
        )
    if col.static:
        from wbcap.track.static_filter import StaticFilterConfig

        cfg = StaticFilterConfig()
        log.warning(
            "dropped %d static track(s) (%d person-frames) that never moved (box within %.0f%% of its height for "
            "%g s or more) and scored below %.2f on average: likely objects detected as people; "
            "pass %s to keep them",
            len(col.static), sum(col.static.values()), 100 * cfg.max_motion, cfg.min_duration, cfg.max_mean_score,
            setting("keep_static", api="drop_static=False"),
        )
    if n_tracks:
        return
    if col.detections == 0:
        if detector.startswith("boxes:"):
            # (no key for these frames, or boxes that all fell outside the image: both leave no detection)
            advice = (f"the box file {detector[len('boxes:'):]} gives no box inside the image for the processed "
                      "frames; check its keys, and that its boxes are (x, y, w, h) in these frames' pixels")
        elif detector == "full":
            advice = f"check {setting('start')}/{setting('end')}"
        else:
            advice = ((f"{small_people}; or " if small_people else "") + f"try {setting('detector')} full if one person "
                      "fills the frame"
                      + (f", or a lower {setting('score_threshold')}" if detector in ("auto", "hog", "torchvision") else ""))
        log.warning("%s: no person was detected in any of the %d processed frames by the %s detector; %s",
                    source, len(col.frames), detector, advice)
    else:
        log.warning("%s: %d person detection(s) but no track was kept; see the warnings above", source, col.detections)

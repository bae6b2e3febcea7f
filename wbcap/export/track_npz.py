"""A smoothed track of ``wbcap run`` written as AMASS files: ``track_<id>.npz``, or
``track_<id>_part<k>.npz`` when the person was missed for longer than ``--max-gap`` seconds (format:
:mod:`wbcap.export.amass`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wbcap.errors import setting
from wbcap.smooth.track import ROT_KEYS, SmoothedTrack

if TYPE_CHECKING:
    from wbcap.camera import ImageCamera
    from wbcap.world.estimate import WorldFrame

log = logging.getLogger(__name__)


def track_segments(tid: int, tr: SmoothedTrack, body: Any, device: Any, rate: float, max_gap: float,
                   gender: str, world: WorldFrame | None = None,
                   contact: np.ndarray | None = None,
                   frame_step: int | None = None,
                   camera: ImageCamera | None = None) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Track ``tid`` laid on a regular clock as AMASS arrays: ``[(name, arrays), ...]``, one per
    piece, named ``track_<id>`` or ``track_<id>_part<k>`` when the person was missed for longer
    than ``max_gap`` seconds.

    The clock has ``rate`` rows per second (:func:`~wbcap.export.amass.regular_clock`; rotations
    slerped, translation and expression lerped over filled rows); ``max_gap``: seconds missed
    (the time between two observations' rows less one period, so a track seen in every
    processed frame is never split, see :func:`~wbcap.export.amass.regular_clock`);
    ``frame_step``: the run's step between processed frames (``--every``), for that rule on a
    variable frame rate (default: this track's own);
    ``body``: the :class:`~wbcap.body.smplx_layer.SMPLXLayer` (rest pelvis, hand mean) on
    ``device``; ``gender``: written into the arrays. The animation writers
    (:mod:`wbcap.export.clip`) read the same arrays, so every format shows the same motion.
    ``world``: the ground's world of ``wbcap run --world`` (``tr`` is then the corrected track,
    :func:`wbcap.world.estimate.ground_tracks`) or None (the camera's frame); ``contact``:
    ``(N, 2)`` bool planted (left, right) foot per row of ``tr`` (with ``world``), laid on the
    clock like the rest (a filled row is planted when the rows on both sides are); ``camera``:
    the video camera, whose intrinsics the arrays record (:func:`~wbcap.export.amass.amass_arrays`).
    """
    import torch

    from wbcap.export.amass import amass_arrays, lerp_rows, regular_clock, slerp_rows

    with torch.no_grad():
        rest = body.rest_root(torch.as_tensor(tr.betas[None], device=device)).cpu().numpy()[0]
    hands_mean = body.hands_mean()
    segments = regular_clock(tr.time, rate, max_gap, frames=tr.frame, frame_step=frame_step)
    pieces = []
    for k, seg in enumerate(segments):
        rot = {key: slerp_rows(tr.param(key).reshape(len(tr.time), -1, 3), seg).reshape(len(seg.times), -1)
               for key in ROT_KEYS}
        planted = None if contact is None else np.asarray(contact, bool)[seg.lo] & np.asarray(contact, bool)[seg.hi]
        arrays = amass_arrays(
            **rot, transl=lerp_rows(tr.transl, seg), betas=tr.betas, expression=lerp_rows(tr.expression, seg),
            hands_mean=hands_mean, rest_root=rest, fps=rate, times=seg.times,
            frame_indices=np.where(seg.valid, tr.frame[np.where(seg.weight <= 0.5, seg.lo, seg.hi)], -1),
            valid=seg.valid, gender=gender,
            world=world, contact=planted, camera=camera,
        )
        pieces.append((f"track_{tid}" if len(segments) == 1 else f"track_{tid}_part{k + 1}", arrays))
    if len(segments) > 1:
        log.info("track %d was missed, or the source had no frame, for longer than %s %g s: written as %d pieces (track_%d_part*)",
                 tid, setting("max_gap"), max_gap, len(segments), tid)
    return pieces


def write_track_npz(out: Path, pieces: list[tuple[str, dict[str, np.ndarray]]]) -> list[Path]:
    """Write the pieces of :func:`track_segments` into the folder ``out`` as ``<name>.npz``;
    returns the files written."""
    from wbcap.export.amass import write_amass_npz

    return [write_amass_npz(out / f"{name}.npz", arrays) for name, arrays in pieces]

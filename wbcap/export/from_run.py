"""``wbcap export RUN``: rebuild a finished run's per-track files from its ``params.jsonl``.

No video is decoded and no network runs: the smoothed parameters of ``params.jsonl``
(:func:`wbcap.export.params_jsonl.read_params_jsonl`), the clock and camera of ``meta.json``
(:func:`wbcap.io.run_folder.read_meta`) and the SMPL-X model file are all it reads. The files
are the ones ``wbcap run`` writes with the same settings (``track_<id>.npz`` byte for byte), laid
on the same regular clock (:func:`wbcap.export.track_npz.track_segments`). With ``--world`` the
ground is estimated from all the run's tracks, as ``wbcap run --world`` does, so a run made
without it can be grounded afterwards (and a run made with it, on the CPU, gives the same files again); each
file says its frame itself (the npz's ``frame`` and camera pose, the GLB's extras and camera node),
``meta.json`` is not changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wbcap.errors import InputError, setting
from wbcap.export.animation import AnimationExport

if TYPE_CHECKING:
    from wbcap.world.estimate import WorldConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportJob:
    """What ``wbcap export`` was asked to do (built once by the CLI).

    Attributes:
        run: a finished ``wbcap run`` folder (holds ``params.jsonl``).
        export: formats and the exact option.
        body_models: SMPL-X file or folder (None: the usual places, :func:`wbcap.body.model_files.find_body_model`).
        gender: None = the run's (``meta.json``).
        allow_pickle: also accept a ``.pkl`` model file.
        dest: where to write (default: the run folder).
        max_gap: seconds; None = the run's.
        tracks: only these track ids (None = all).
        world: estimate the ground from all the run's tracks and write the files in its world
            (:func:`wbcap.world.estimate.ground_tracks`), or None for the camera's frame.
    """

    run: str
    export: AnimationExport
    body_models: str | None = None
    gender: str | None = None
    allow_pickle: bool = False
    dest: str | None = None
    max_gap: float | None = None
    tracks: tuple[int, ...] | None = None
    world: WorldConfig | None = None


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
        InputError: not a run folder, an empty ``params.jsonl``, an unknown track id, a missing
            SMPL-X model (each one line naming the file and the fix).
    """
    import torch

    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.export.animation import write_track_files
    from wbcap.export.params_jsonl import read_params_jsonl
    from wbcap.io.run_folder import PARAMS_FILE, read_meta

    job.export.check_available()
    run = Path(job.run).expanduser()
    if not run.is_dir():
        raise InputError(f"{run}: no such folder; pass the output folder of a finished `wbcap run`")
    meta = read_meta(run)
    frames, tracks, camera = read_params_jsonl(run / PARAMS_FILE)
    if not tracks:
        raise InputError(f"{run / PARAMS_FILE}: holds no person; nothing to export")
    if job.tracks is not None:
        unknown = sorted(set(job.tracks) - set(tracks))
        if unknown:
            raise InputError(f"track {unknown[0]}: not in {run}, which has tracks {', '.join(map(str, tracks))}")
    gender = job.gender or (meta or {}).get("gender", "neutral")
    max_gap = job.max_gap if job.max_gap is not None else float((meta or {}).get("max_gap", 1.0))
    body = SMPLXLayer.from_file(find_body_model(gender, job.body_models, allow_pickle=job.allow_pickle),
                                allow_pickle=job.allow_pickle)
    dest = Path(job.dest).expanduser() if job.dest else run
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{dest}: cannot create the folder ({exc.strerror or exc}); choose another destination") from None
    rate = _clock_rate(meta, frames)
    frame = contacts = None
    if job.world is not None:  # the ground from every track of the run, as `wbcap run --world` found it
        from wbcap.world.estimate import ground_tracks

        if camera is None:
            raise InputError(f"{run / PARAMS_FILE}: its lines hold no camera, which {setting('world')} needs; "
                             f"rewrite it with a current `wbcap run --resume`")

        grounded = ground_tracks(tracks, body, torch.device("cpu"), camera, job.world)
        frame, contacts, tracks = grounded.frame, grounded.contacts, grounded.tracks
    if job.tracks is not None:
        tracks = {t: tracks[t] for t in job.tracks}
    with torch.no_grad():
        written = write_track_files(dest, tracks, body, torch.device("cpu"), rate, max_gap, gender, job.export, camera,
                                    world=frame, contacts=contacts)
    log.info("wrote %d file(s) for %d track(s) to %s", len(written), len(tracks), dest)
    return sorted(written)

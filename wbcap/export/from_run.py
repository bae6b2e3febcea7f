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
    from wbcap.export.params_jsonl import camera_from_dict, read_params_jsonl
    from wbcap.io.run_folder import META_FILE, PARAMS_FILE, read_meta

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
    if camera is None and meta and "camera" in meta:  # lines of older runs carry none; meta.json does
        try:
            camera = camera_from_dict(meta["camera"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{run / META_FILE}: a damaged camera ({exc}); resume its run to rewrite it") from None
    if job.world is not None and camera is None:
        raise InputError(f"{run / PARAMS_FILE}: neither its lines nor meta.json hold the video camera, which "
                         f"{setting('world')} needs; rewrite them with a current `wbcap run --resume`")
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

        grounded = ground_tracks(tracks, body, torch.device("cpu"), camera, job.world)
        frame, contacts, tracks = grounded.frame, grounded.contacts, grounded.tracks
    if job.tracks is not None:
        tracks = {t: tracks[t] for t in job.tracks}
    with torch.no_grad():
        written = write_track_files(dest, tracks, body, torch.device("cpu"), rate, max_gap, gender, job.export, camera,
                                    world=frame, contacts=contacts)
    if dest.resolve() == run.resolve() and meta is not None:
        _update_meta(run, meta, grounded if job.world is not None else None, all_tracks=job.tracks is None)
    log.info("wrote %d file(s) for %d track(s) to %s", len(written), len(tracks), dest)
    return sorted(written)


def _update_meta(run: Path, meta: dict, grounded, all_tracks: bool) -> None:
    """Files rewritten in the run folder: ``meta.json``'s ``frame`` (and ``world``) follow them
    (``grounded``: the :class:`~wbcap.world.estimate.WorldResult`, None without ``--world``).
    When only some tracks were rewritten into another frame, meta.json is left and a warning
    says so (each npz and GLB names its own frame)."""
    from wbcap.io.run_folder import write_meta

    frame = "world" if grounded is not None and grounded.frame is not None else "camera"
    if not all_tracks:
        if meta.get("frame", "camera") != frame:
            log.warning("%s: the rewritten tracks are in the %s frame, the others in the %s frame; each track's npz "
                        "and GLB say which", run, frame, meta.get("frame", "camera"))
        return
    meta = {**meta, "frame": frame}
    if grounded is not None:
        meta["world"] = grounded.to_meta()
    else:
        meta.pop("world", None)
    write_meta(run, meta)

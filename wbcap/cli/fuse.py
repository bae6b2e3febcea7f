"""``wbcap fuse``: parse options, build a FuseJob, call :func:`wbcap.fuse_app.fuse_runs`."""

from __future__ import annotations

import click

from wbcap.cli.common import (
    FiniteFloatRange,
    NonEmptyPath,
    allow_pickle_option,
    body_models_option,
    echo_result,
    is_quiet,
    root_bone_option,
)


def _offsets(ctx, param, value):
    """``--offsets`` as numbers (their range is :func:`wbcap.fuse_app.fuse_runs`'s to check), ``auto`` or ``audio``."""
    if value is None:
        return None
    if value.strip().lower() in ("auto", "audio"):
        return value.strip().lower()
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: seconds, one a run, comma-separated (e.g. 0,0.033), auto or audio") from None


@click.command("fuse")
@click.argument("runs", nargs=-1, required=True, type=NonEmptyPath(file_okay=False))
@click.option("-o", "--out", required=True, type=NonEmptyPath(file_okay=False),
              help="Folder for the fused files (created when missing; not a run's folder).")
@click.option("--format", "--export", "formats", default="npz,glb", show_default=True,
              metavar="glb,bvh,fbx,npz,csv,angles,trc,c3d",
              help="Files to write per person (comma-separated), as wbcap export's --format.")
@click.option("--exact", is_flag=True, help="GLB/FBX: per-frame morph targets so the mesh equals SMPL-X's.")
@root_bone_option
@click.option("--max-distance", type=FiniteFloatRange(min=0.01, max=10.0), default=0.5, show_default=True,
              metavar="METRES",
              help="Two cameras' tracks whose pelvises lie further apart (median over the times both saw them) are "
                   "two people.")
@click.option("--max-handover", type=FiniteFloatRange(min=0.0, max=10.0), default=1.0, show_default=True,
              metavar="SECONDS",
              help="A person who leaves one camera's view and enters another's within this many seconds, where the "
                   "two tracks meet (each carried on at its own speed, within --max-distance), is one person, the "
                   "time between filled; 0: two people.")
@click.option("--units-per-metre", type=FiniteFloatRange(min=1e-9, max=1e9), default=None, metavar="N",
              help="A calibration without a scale (COLMAP's reconstruction): its units in a metre, from a length "
                   "you measured (two cameras' distance in the reconstruction over the same in metres). Default: "
                   "found where two cameras' rays to a person meet, which trusts the network's depths.")
@click.option("--offsets", callback=_offsets, default=None, metavar="S1,S2,...|auto|audio",
              help="Seconds added to each run's clock, one a run in their order: a camera that started recording "
                   "0.5 s after the first gets 0.5 (default all 0: the videos start together, as synchronised "
                   "cameras' do). auto: found from the people's motion (their paths, then their poses to part of a "
                   "frame), within 30 s; someone must walk or move while two cameras see them. audio: found from "
                   "the sound the videos recorded (a clap, steps, voices), within 30 s.")
@body_models_option
@allow_pickle_option
@click.option("--overwrite", is_flag=True, help="Replace an earlier fusion's files in OUT.")
@click.pass_context
def fuse(ctx, runs, out, formats, exact, root_bone, max_distance, max_handover, units_per_metre, offsets, body_models,
         allow_pickle, overwrite):
    """Fuse the runs of several calibrated cameras (RUNS: `wbcap run --world --calibration` folders,
    one a camera, of synchronised videos, or one folder holding them) into one motion per person, in
    the calibration's world (where it is not z up, as Anipose's first-camera frames: that frame
    levelled by the fused people's feet; a COLMAP reconstruction's, without a scale, first scaled
    by the people the cameras saw):
    each person's tracks found across the cameras (a person walking from one camera's view into
    another's too: --max-handover), the pelvis triangulated from the cameras' rays, the rotations
    and shape averaged. Writes OUT/track_<k>.<format> per person and OUT/fuse.json
    (which tracks each person holds)."""
    from wbcap.export.animation import AnimationExport
    from wbcap.fuse.views import FuseConfig
    from wbcap.fuse_app import FuseJob, fuse_runs

    export = AnimationExport.parse(formats, exact=exact, option="--format", none_alone=False, root_bone=root_bone)
    if not export.formats:
        raise click.UsageError("--format: give at least one format (glb, bvh, fbx, npz, csv, angles, trc, c3d)")
    job = FuseJob(runs=tuple(runs), out=out, export=export,
                  config=FuseConfig(max_distance=max_distance, max_handover_s=max_handover,
                                    units_per_metre=units_per_metre), offsets=offsets,
                  body_models=body_models, allow_pickle=allow_pickle, overwrite=overwrite)
    result = fuse_runs(job)
    if not is_quiet(ctx):
        people = f"{result.people} {'person' if result.people == 1 else 'people'}"
        files = f"{result.tracks} track file{'' if result.tracks == 1 else 's'}"
        cameras = f"{result.cameras} camera{'' if result.cameras == 1 else 's'}"
        echo_result(f"{people} from {files} of {cameras} -> {result.out}")

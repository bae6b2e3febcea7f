"""``wbcap export``: parse options, build an ExportJob, call :func:`wbcap.export.from_run.export_run`."""

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


@click.command("export")
@click.argument("run", type=NonEmptyPath(file_okay=False))
@click.option("--format", "--export", "formats", default="glb", show_default=True, metavar="glb,bvh,fbx,npz,csv,angles,trc,c3d",
              help="Files to write per track (comma-separated, at least one; --export as wbcap run spells it): glb (glTF 2.0, skinned and animated), "
                   "bvh (centimetres), fbx (through Blender: pip install \"wbcap[blender]\"), npz (AMASS), csv (3D "
                   "positions of 76 joints per row, metres), angles (a CSV of joint angles in degrees, named after their "
                   "movements: head_yaw_left, left_knee_flexion...), trc (OpenSim markers, named as Pose2Sim's; y up, "
                   "metres), c3d (the same markers; z up, millimetres).")
@click.option("--exact", is_flag=True,
              help="GLB/FBX: per-frame morph targets so the mesh equals SMPL-X's (bigger files).")
@root_bone_option
@click.option("--dest", type=NonEmptyPath(file_okay=False), default=None,
              help="Write here instead of RUN (created when missing; not another run's folder, nor a folder inside "
                   "RUN or another run). The exported tracks' "
                   "files of these formats replace those already there, stale pieces removed.")
@click.option("--start-at-zero", is_flag=True,
              help="GLB/FBX: keys from 0 s at each clip's first row (for game engines' timelines), not at its time "
                   "in the video (the GLB's asset.extras.source_start_s keeps it); needs --dest.")
@click.option("--track", "tracks", type=int, multiple=True, help="Only this track id (repeatable).")
@click.option("--max-gap", type=FiniteFloatRange(min=0), default=None,
              help="Seconds a track may be missed (the filled rows: time between two detections less one frame "
                   "interval of the clock) and stay one file (default: the run's); longer misses split it into "
                   "track_<id>_part<k> files. A track seen in every frame is never split, unless the source itself has "
                   "no frame for over 2 s. In RUN itself, meta.json "
                   "records it.")
@click.option("--world", is_flag=True, default=False,
              help="Estimate the ground from the feet of all tracks (static camera) and write the files in its "
                   "world, planted feet kept still (as `wbcap run --world`); falls back to the camera frame with a "
                   "warning. Default (neither --world nor --camera): the run's frame (meta.json). Into RUN itself, a "
                   "change of frame rewrites the tracks' files of every format there, so all stay in one frame.")
@click.option("--camera", is_flag=True, default=False, help="Write the files in the camera's frame (not with --world).")
@click.option("--trust-calibration", is_flag=True,
              help="With --world, for a run made with a --calibration holding the camera's pose: take its world "
                   "unchecked (as wbcap run --trust-calibration).")
@body_models_option
@click.option("--gender", type=click.Choice(["neutral", "male", "female"]), default=None,
              help="SMPL-X model to use (default: the run's).")
@allow_pickle_option
@click.pass_context
def export_cmd(ctx, run, formats, exact, root_bone, dest, start_at_zero, tracks, max_gap, world, camera,
               trust_calibration, body_models, gender, allow_pickle):
    """Write the animation files of a finished `wbcap run` folder (RUN) again, from its params.jsonl:
    no video is decoded and no network runs. Prints the files written, one a line (not with `wbcap -q`)."""
    from wbcap.export.animation import AnimationExport
    from wbcap.export.from_run import ExportJob, export_run
    from wbcap.world.estimate import WorldConfig

    if world and camera:  # (one switch pair took the last of the two silently: a researcher's trial)
        raise click.UsageError("use either --world or --camera")
    if trust_calibration and not world:
        raise click.UsageError("--trust-calibration goes with --world")

    job = ExportJob(
        run=run, export=AnimationExport.parse(formats, exact=exact, option="--format", none_alone=False,
                                                root_bone=root_bone, start_at_zero=start_at_zero), dest=dest,
        max_gap=max_gap, tracks=tuple(tracks) or None, body_models=body_models, gender=gender, allow_pickle=allow_pickle,
        frame="world" if world else "camera" if camera else None,
        world=WorldConfig(check_calibration=False) if trust_calibration else None,
    )
    written = export_run(job)
    if not is_quiet(ctx):
        from wbcap.console import printable

        for path in written:
            echo_result(printable(str(path), one_line=True))  # (one file a line, whatever its folder's name holds)

"""``wbcap run``: parse options, build a VideoJob, call :func:`wbcap.video_app.run_video`."""

from __future__ import annotations

from pathlib import Path

import click

from wbcap.cli.common import (
    FIX_LEFT_HAND_FLIP_HELP,
    FiniteFloatRange,
    IntRange,
    NonEmptyPath,
    allow_pickle_option,
    body_models_option,
    calibration_options,
    checkpoint_option,
    detector_options,
    device_option,
    echo_result,
    export_options,
    gender_option,
    is_quiet,
    parse_export,
    precision_option,
    progress_display,
    read_calibration_option,
    stderr_is_terminal,
    view_hint,
)
from wbcap.console import printable
from wbcap.io.frame_times import MAX_FPS
from wbcap.io.video_reader import MIN_IMAGE_FPS
from wbcap.limits import CUT_THRESHOLD, DEFAULT_IMAGE_FPS, MAX_FOCAL, MAX_SIGMA, MIN_FOCAL


def _principal_point(ctx, param, value):
    """``--principal-point CX,CY`` as two finite pixel coordinates within :data:`MAX_FOCAL` of the
    picture's corner; a bad one is a usage error naming the option."""
    if value is None:
        return None
    import math

    try:
        cx, cy = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value}: two numbers of pixels, CX,CY (e.g. 640,360)") from None
    if not all(math.isfinite(v) and abs(v) <= MAX_FOCAL for v in (cx, cy)):
        raise click.BadParameter(f"{value}: two finite numbers of pixels within {MAX_FOCAL:g} of the picture's corner")
    return cx, cy


@click.command()
@click.argument("source", type=NonEmptyPath())
@click.option("-o", "--out", type=NonEmptyPath(file_okay=False), default="wbcap_run", show_default=True, help="Output folder.")
@click.option("--start", type=float, default=0.0, show_default=True,
              help="First second of the source to process (0 to 1e7).")
@click.option("--end", type=float, default=None, help="Stop before this second of the source: frames at START <= t < END (at most 1e7).")
@click.option("--every", type=IntRange(min=1), default=1, show_default=True,
              help="Process every N-th frame (at most 1000000).")
@click.option("--max-frames", type=IntRange(min=1), default=None, help="Stop after this many processed frames.")
@click.option("--fps", "image_fps", type=FiniteFloatRange(MIN_IMAGE_FPS, MAX_FPS), default=DEFAULT_IMAGE_FPS, show_default=True,
              help="Frame rate of an image folder or glob (image k is at k / FPS seconds: --start/--end, times, the "
                   "AMASS rate and animation keys follow it); a video keeps its own.")
@detector_options(video=True)
@click.option("--iou-threshold", type=FiniteFloatRange(0, 1), default=0.3, show_default=True, help="Tracker: minimum box IoU to continue a track.")
@click.option("--max-age", type=IntRange(min=0), default=5, show_default=True, help="Tracker: processed frames a person may be missed (with --every N, N source frames each).")
@click.option("--reid-age", type=IntRange(min=0), default=30, show_default=True,
              help="Tracker: a person missed for longer than --max-age (hidden behind another) can still be found again "
                   "by the colours of their clothes, keeping their id, when missed for up to this many processed frames "
                   "(a 2 s occlusion at 30 fps: 60; 0: off, e.g. participants dressed alike taking turns).")
@click.option("--no-appearance", is_flag=True,
              help="Tracker: boxes' overlap alone, without the colours of the clothes (which keep apart people who meet, "
                   "stop or turn back, and find again people hidden for longer than --max-age; people dressed alike get "
                   "no help from them).")
@click.option("--min-track", "min_length", type=IntRange(min=1), default=3, show_default=True, help="Tracker: drop tracks shorter than this.")
@click.option("--keep-static", is_flag=True,
              help="Keep tracks that never move and score low for 10 s or more (dropped by default as objects detected as people).")
@click.option("--cut-threshold", type=FiniteFloatRange(0, 255, min_open=True), default=CUT_THRESHOLD, show_default=True,
              help="Tracker: a frame whose mean HSV change from the frame before reaches this (0-255) is a cut between "
                   "shots, where every track ends (people of the next shot get new ids), unless the picture comes back "
                   "within 0.5 s (a flash or cutaway: the ids from before it go on); lower finds softer cuts. The "
                   "changes are in OUT/.wbcap/raw.jsonl (change).")
@click.option("--no-cuts", is_flag=True, help="Tracker: one continuous shot; keep ids across sudden changes of the picture.")
@click.option("--smooth", type=click.Choice(["oneeuro", "gaussian", "none"]), default="oneeuro", show_default=True,
              help="Temporal smoothing of rotations (in 6D), translation and expression; shape is held per track.")
@click.option("--min-cutoff", type=FiniteFloatRange(min=0, min_open=True), default=None, help="One-Euro: minimum cutoff frequency in Hz (lower = smoother; default 2.0, which keeps ~75 % of a 1 Hz motion at 30 fps: for measuring movement use 8 or --smooth none; README, 'What the smoothing keeps').")
@click.option("--beta", type=FiniteFloatRange(min=0), default=None, help="One-Euro: speed coefficient (higher = less lag on fast motion; default 0.5).")
@click.option("--sigma", type=FiniteFloatRange(0, MAX_SIGMA), default=None,
              help="Gaussian: standard deviation in frames (default 2.0).")
@click.option("--focal", type=FiniteFloatRange(MIN_FOCAL, MAX_FOCAL), default=None,
              help="Focal length (pixels) of the output camera; default sqrt(W^2+H^2). With --principal-point, a "
                   "calibrated camera's fx (= fy), in pixels of the picture as wbcap reads it (upright, square pixels; "
                   "scaled with the video if it was resized; a lens with distortion: --calibration).")
@click.option("--principal-point", callback=_principal_point, default=None, metavar="CX,CY",
              help="Principal point (pixels) of the output camera; default the picture's centre (a cropped video's "
                   "lies off it: give the calibration's, minus the crop's corner).")
@calibration_options(video=True)
@click.option("--max-gap", type=FiniteFloatRange(min=0), default=1.0, show_default=True,
              help="Seconds a track may be missed and stay one track_<id>.npz (gap interpolated, valid=False); longer gaps split it "
                   "(the time between two detections less one frame interval: a track seen in every frame is never split, "
                   "unless the source itself has no frame for over 2 s). "
                   "Gaps longer than --max-age frames end the track first, unless the person is found again by their looks "
                   "(--reid-age): the same id then goes on, past --max-gap in track_<id>_part2.npz.")
@export_options(default="glb")
@click.option("--world", is_flag=True,
              help="Static camera: estimate the ground from the feet and write the track files in its world (gravity "
                   "down, ground at height 0, planted feet kept still on it); falls back to the camera frame, with a "
                   "warning, when the camera moves or no feet are seen. With a --calibration holding the camera's "
                   "pose: its world (its axes and origin, z = 0 the floor), where the feet's ground agrees.")
@click.option("--trust-calibration", is_flag=True,
              help="With --world and a --calibration holding the camera's pose: take its world (z up, z = 0 the "
                   "floor) without checking it against the people (the feet's ground, their trunks), for a lab that "
                   "knows its calibration; its units the nearest of m, cm, mm to the people's height (metres where "
                   "none), the tracks placed rigidly where the feet cannot stand on its floor.")
@click.option("--obj", "write_obj", is_flag=True, help="Also write meshes/<track>/<frame>.obj.")
@click.option("--openpose", "write_openpose", is_flag=True,
              help="Also write openpose/<video>_<frame>_keypoints.json: every processed frame's people as 2D "
                   "keypoints in OpenPose's JSON (BODY_25, 21 per hand, 70 face points; person_id the track), "
                   "projected from the smoothed SMPL-X bodies.")
@click.option("--no-render", is_flag=True, help="Skip render.mp4.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in OUT (or redo its outputs with new smoothing).")
@click.option("--overwrite", is_flag=True, help="Replace a previous run in OUT.")
@checkpoint_option
@body_models_option
@gender_option
@allow_pickle_option
@device_option
@click.option("--batch-size", type=IntRange(min=1), default=None, help="Person crops per network call (default 8 on CPU, 32 on CUDA).")
@precision_option
@click.option("--fix-left-hand-flip", is_flag=True, help=FIX_LEFT_HAND_FLIP_HELP)
@click.pass_context
def run(ctx, source, out, start, end, every, max_frames, image_fps, detector, detector_model, score_threshold, min_height_frac,
        max_people, offline,
        iou_threshold, max_age, reid_age, no_appearance, min_length, keep_static, cut_threshold, no_cuts, smooth, min_cutoff, beta, sigma, focal, principal_point, calibration, calibration_camera, undistort_scale, max_gap, export, exact, root_bone,
        world, trust_calibration,
        write_obj, write_openpose, no_render, resume, overwrite,
        checkpoint, body_models, gender, allow_pickle, device, batch_size, precision, fix_left_hand_flip):
    """Track and reconstruct every person in a video, image folder or glob (SOURCE).

    Writes OUT/params.jsonl (one line per person-frame), OUT/track_<id>.npz (an AMASS file: z-up,
    absolute hand poses, regular clock; for AMASS tools and the SMPL-X Blender add-on), the animation
    files of --export (OUT/track_<id>.glb by default; .bvh, .fbx), OUT/render.mp4 (overlay, source
    audio kept), OUT/meta.json, with --obj OUT/meshes/<track>/<frame>.obj and with --openpose
    OUT/openpose/<video>_<frame>_keypoints.json (2D keypoints, OpenPose's JSON). With --world the track
    files are in the world of the estimated ground (meta.json: ground and camera pose; params.jsonl: planted
    feet). `wbcap export OUT` writes the animation files again with other options.
    """
    import dataclasses

    from wbcap.config import BodyModelConfig, ModelConfig, PipelineConfig
    from wbcap.model.device import resolve_device
    from wbcap.smooth.sequence import SmoothConfig
    from wbcap.track.iou_tracker import TrackerConfig
    from wbcap.video_app import VideoJob
    from wbcap.world.estimate import WorldConfig

    if resume and overwrite:
        raise click.UsageError("use either --resume or --overwrite")
    if no_cuts and ctx.get_parameter_source("cut_threshold") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--no-cuts turns the search for cuts off and --cut-threshold sets it: drop one of them")
    animation = parse_export(export, exact, root_bone)
    if calibration is not None and (focal is not None or principal_point is not None):
        given = " and ".join(flag for flag, v in (("--focal", focal), ("--principal-point", principal_point))
                             if v is not None)
        raise click.UsageError(f"--calibration sets the camera's focal length and principal point: drop {given}")
    lens = read_calibration_option(calibration, calibration_camera, source, undistort_scale)
    if trust_calibration and (not world or lens is None or lens.pose is None):
        raise click.UsageError("--trust-calibration goes with --world and a --calibration holding the camera's pose "
                               "(rotation and translation)" + (f": {calibration} holds none" if lens is not None else ""))
    dev = resolve_device(device)
    for flag, value, method in (("--min-cutoff", min_cutoff, "oneeuro"), ("--beta", beta, "oneeuro"),
                                ("--sigma", sigma, "gaussian")):
        if value is not None and smooth != method:  # (it would be ignored without a word)
            raise click.UsageError(f"{flag} sets the {method} smoothing, and --smooth is {smooth}: drop {flag}, or "
                                   f"pass --smooth {method}")
    smooth_cfg = SmoothConfig(method=smooth)
    overrides = {k: v for k, v in (("min_cutoff", min_cutoff), ("beta", beta), ("sigma", sigma)) if v is not None}
    smooth_cfg = dataclasses.replace(smooth_cfg, **overrides)
    cfg = PipelineConfig(
        model=ModelConfig(fix_left_hand_flip=fix_left_hand_flip),
        body=BodyModelConfig.given_with_checkpoint(body_models, gender, allow_pickle, checkpoint),
        checkpoint=checkpoint, device=str(dev), batch_size=batch_size,
        precision=precision,
    )
    job = VideoJob(
        source=source, out=out, pipeline=cfg, start=start, end=end, every=every, max_frames=max_frames, image_fps=image_fps,
        detector=detector, detector_model=detector_model, score_threshold=score_threshold, min_height_frac=min_height_frac,
        max_people=max_people, offline=offline,
        tracker=TrackerConfig(iou_threshold=iou_threshold, max_age=max_age, reid_age=reid_age,
                              appearance=not no_appearance, min_length=min_length,
                              drop_static=not keep_static, cut_threshold=None if no_cuts else cut_threshold),
        smooth=smooth_cfg, focal=focal, principal_point=principal_point, calibration=lens, max_gap=max_gap, export=animation, world=WorldConfig(check_calibration=not trust_calibration) if world else None,
        write_obj=write_obj, write_openpose=write_openpose, render=not no_render, resume=resume, overwrite=overwrite,
        command=tuple(ctx.meta.get("wbcap.args", ())),
    )
    result = execute(ctx, job)
    if not is_quiet(ctx):
        echo_result(f"{result.frames} frames, {len(result.tracks)} track(s), {result.person_frames} person-frames -> "
                    f"{result.out}")
        if result.tracks:  # (nothing to view otherwise: `wbcap view` says so; a break-it trial)
            view_hint(ctx, result.out)


def execute(ctx, job, pipeline=None, resume_hint: bool = True):
    """Run ``job`` with a rich progress bar (items/s, :func:`~wbcap.io.progress.stage_unit`, and
    ETA) unless --quiet, or where stderr is no terminal a progress line a minute
    (:class:`~wbcap.io.progress.ProgressLines`); on Ctrl-C, SIGTERM or SIGHUP
    (:func:`wbcap.stop_signals.stop_as_ctrl_c`), with ``resume_hint``, say how to continue (the
    command has --resume)."""
    import logging

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    from wbcap.io.progress import ProgressLines, stage_unit
    from wbcap.video_app import run_video

    display, _ = progress_display(ctx, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                        TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    # no bar on a log file or a pipe: a line now and then instead (not with -q)
    lines = None if stderr_is_terminal() or is_quiet(ctx) else ProgressLines(logging.getLogger(__name__))
    with display as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            if lines is not None:
                lines(stage, done, total)
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, rate="")
            task = bar.tasks[tasks[stage]]
            speed = task.speed
            bar.update(tasks[stage], completed=done, total=total, rate=f"{speed:.2f} {stage_unit(stage)}/s" if speed else "")

        from wbcap.io.run_folder import raw_stamp

        out = Path(job.out).expanduser()
        before = raw_stamp(out)
        # --resume and --overwrite do not go together: after --overwrite, --resume replaces it; a
        # stopped --resume is run again as it was (it said to add the --resume it had: a user trial)
        add = ("run the same command again" if job.resume else "add --resume to the same command in place of "
               "--overwrite" if job.overwrite else "add --resume to the same command")
        try:
            return run_video(job, pipeline=pipeline, progress=progress)
        except OSError as exc:
            from wbcap.cli import DISK_FULL
            from wbcap.video_app import resumable

            if exc.errno in DISK_FULL and resume_hint and resumable(job):  # (a user trial: the line said nothing of it)
                exc.wbcap_next_step = f"then {add} to finish the run (the frames done so far are kept)"  # type: ignore[attr-defined]
            raise
        except KeyboardInterrupt:  # (also SIGTERM and SIGHUP: see wbcap.cli)
            from wbcap.video_app import previous_run_kept, resumable

            hint = resume_hint and resumable(job)
            if job.overwrite and previous_run_kept(job) and raw_stamp(out) == before:  # (put back as it was)
                fits = f" (its frames fit this command: {add} to use them)" if hint else ""
                click.echo(printable(f"stopped before the first frames: the previous run in {job.out} is left as it "
                                     f"was{fits}", one_line=True), err=True)
            elif hint:
                click.echo(printable(f"the frames done so far are kept in {job.out}: {add} to continue", one_line=True), err=True)
            raise


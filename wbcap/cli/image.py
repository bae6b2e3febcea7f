"""``wbcap image``: parse options, build an ImageJob, call :func:`wbcap.image_app.run_images`."""

from __future__ import annotations

import sys

import click

from wbcap.cli.common import (
    FIX_LEFT_HAND_FLIP_HELP,
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
    image_result_line,
    is_quiet,
    parse_export,
    precision_option,
    progress_display,
    read_calibration_option,
    stderr_is_terminal,
    view_hint,
)
from wbcap.console import printable


def _parse_bboxes(ctx, param, values):
    """``--bbox`` values as boxes (:func:`wbcap.detect.boxes.parse_bbox`: its rules, the range
    included, are those of every box a user gives); a bad one is a usage error naming --bbox."""
    if not values:
        return None
    from wbcap.detect.boxes import parse_bbox
    from wbcap.errors import InputError

    try:
        return tuple(tuple(parse_bbox(v)) for v in values)
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("paths", nargs=-1, required=True, type=NonEmptyPath())
@click.option("-o", "--out", type=NonEmptyPath(file_okay=False), default="wbcap_out", show_default=True,
              help="Output folder; results go to OUT/<name>/person_<k>/ (<name>: see above).")
@click.option("--bbox", "boxes", multiple=True, callback=_parse_bboxes, metavar="X,Y,W,H",
              help="Person box in pixels (repeat for several people); used for every image, no detector.")
@click.option("--boxes", "boxes_file", type=NonEmptyPath(dir_okay=False), default=None,
              help='JSON file of boxes per image name: {"img.jpg": [[x, y, w, h], ...]}.')
@click.option("--full-image", is_flag=True, help="Treat the whole image as one person's box (no detector).")
@detector_options(video=False)
@checkpoint_option
@body_models_option
@gender_option
@allow_pickle_option
@device_option
@precision_option
@click.option("--batch-size", type=IntRange(min=1), default=None,
              help="Person crops per network call (default 8 on CPU, 32 on CUDA).")
@click.option("--no-render", is_flag=True, help="Skip the two rendered JPEGs (faster; no GL needed).")
@export_options(default="none", photos=True)
@click.option("--openpose", "write_openpose", is_flag=True,
              help="Also write person_<k>/output_keypoints.json: the person's 2D keypoints in OpenPose's JSON "
                   "(BODY_25, 21 per hand, 70 face points), projected from the SMPL-X body.")
@click.option("--skip-done", is_flag=True,
              help="Leave a photo whose output folder already holds a whole result of that same picture (its "
                   "SHA-256), with the files this command writes, as it is: finishes an interrupted batch (the "
                   "other settings it was made with are not compared).")
@calibration_options(video=False)
@click.option("--fix-left-hand-flip", is_flag=True, help=FIX_LEFT_HAND_FLIP_HELP)
@click.pass_context
def image(ctx, paths, out, boxes, boxes_file, full_image, detector, detector_model, score_threshold, min_height_frac,
          max_people, offline, checkpoint, body_models, gender,
          allow_pickle, device, precision, batch_size, no_render, export, exact, root_bone, write_openpose,
          skip_done, calibration, calibration_camera, undistort_scale, fix_left_hand_flip):
    """Recover every person's SMPL-X body, hands and face in PATHS (image files, folders or globs).

    For each image and person writes OUT/<name>/person_<k>/ with output.obj, smplx_param.json,
    render_original_img.jpg and render_cropped_img.jpg, and with --export output.glb (a
    rigged character in the photo's pose, with the camera), output.bvh, output.fbx, output.npz,
    output.csv (the 3D joints), output_angles.csv (joint angles, degrees), output.trc and
    output.c3d (markers: a static trial).

    \b
    <name> is the image's file stem (photos/a.jpg -> a). When two inputs share a stem:
      - every image is named by its path under the inputs' common folder, without the
        extension (cam1/0001.jpg, cam2/0001.jpg -> OUT/cam1/0001/, OUT/cam2/0001/);
      - files that differ only in the extension keep it (a.jpg, a.png -> OUT/a.jpg/, OUT/a.png/);
      - a clash that remains is refused before any work.
    An earlier result in OUT/<name>/ is replaced; an image that fails leaves it as it was (its
    error line says so); a folder there that wbcap did not write is refused, never deleted.
    """
    from wbcap.config import BodyModelConfig, ModelConfig, PipelineConfig
    from wbcap.image_app import ImageJob

    given = [flag for flag, on in (("--bbox", bool(boxes)), ("--boxes", boxes_file is not None),
                                   ("--detector boxes:FILE", detector.startswith("boxes:")), ("--full-image", full_image))
             if on]
    if len(given) > 1:
        raise click.UsageError("use only one of --bbox, --boxes, --detector boxes:FILE and --full-image")
    if given:  # (boxes given: no detector runs, so a detector's flag would be ignored without a word)
        from click.core import ParameterSource

        tuned = [flag for name, flag in (("detector", "--detector"), ("detector_model", "--detector-model"),
                                         ("score_threshold", "--score-threshold"), ("min_height_frac", "--min-height"))
                 if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)
                 and not (name == "detector" and detector.startswith("boxes:"))]
        if tuned:
            raise click.UsageError(f"{tuned[0]} chooses or tunes the person detector, and {given[0]} gives the boxes "
                                   f"instead of one (no detector runs): use one of them")
    cfg = PipelineConfig(
        model=ModelConfig(fix_left_hand_flip=fix_left_hand_flip),
        body=BodyModelConfig.given_with_checkpoint(body_models, gender, allow_pickle, checkpoint),
        checkpoint=checkpoint,
        device=device,
        batch_size=batch_size,
        precision=precision,
    )
    job = ImageJob(
        paths=tuple(paths), out=out, pipeline=cfg, boxes=boxes, boxes_file=boxes_file,
        detector="full" if full_image else detector, detector_model=detector_model, score_threshold=score_threshold,
        min_height_frac=min_height_frac, max_people=max_people, offline=offline, render=not no_render,
        export=parse_export(export, exact, root_bone), write_openpose=write_openpose, skip_done=skip_done,
        calibration=read_calibration_option(calibration, calibration_camera, paths[0] if len(paths) == 1 else None,
                                            undistort_scale),
    )
    _run(ctx, job)


def _run(ctx, job, pipeline=None) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    from wbcap.image_app import run_images
    from wbcap.io.images import iter_image_paths

    quiet = is_quiet(ctx)
    paths = iter_image_paths(job.paths)  # expanded once, here and for the run
    failed, written = [], []
    # Shown even for one image: loading the model and one photo take 15-30 s on a CPU.
    display, console = progress_display(ctx, SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                        MofNCompleteColumn(), TimeRemainingColumn())
    with display as progress:
        task = progress.add_task("checking inputs", total=len(paths))

        def stage(name, path):
            progress.update(task, description=name if path is None else printable(f"{path.name}: {name}"))

        def report(result):
            progress.advance(task)
            if result.error:
                failed.append(result)
                if progress.live.is_started:  # (above the bar: written past it, the line began where the bar ended)
                    console.print(printable(f"error: {result.error}", one_line=True), markup=False, highlight=False,
                                  soft_wrap=True)
                else:
                    click.echo(printable(f"error: {result.error}", one_line=True), err=True)
                return
            if result.out_dir is not None:
                written.append(result)
            if not quiet:
                line = image_result_line(result)
                if progress.live.is_started and sys.stdout.isatty() and stderr_is_terminal():
                    console.print(line, markup=False, highlight=False, soft_wrap=True)  # the same screen: above the bar
                else:
                    echo_result(line)  # results on stdout (`wbcap image ... > list.txt`)

        try:
            run_images(job, pipeline=pipeline, on_progress=report, on_stage=stage, paths=paths)
        except KeyboardInterrupt:  # (also SIGTERM and SIGHUP: see wbcap.cli; a user trial: no word of what was done)
            finished = int(progress.tasks[0].completed)  # (written, failed, or with nobody in it)
            if len(paths) > 1 and finished:
                progress.stop()  # (the bar cleared first)
                said = ([f"the results of {len(written)} are in {job.out}"] if written else []) + (
                    [f"{len(failed)} failed"] if failed else [])
                click.echo(printable(f"stopped after {finished} of {len(paths)} photos"
                                     + (f" ({', '.join(said)})" if said else "")
                                     + "; the same command with --skip-done finishes the others",
                                     one_line=True), err=True)
            raise
    if failed and len(paths) > 1:  # (a batch's errors lie among hundreds of lines: a batch trial looked for a count)
        names = ", ".join(str(r.path) for r in failed[:3]) + (", ..." if len(failed) > 3 else "")
        new = [r for r in written if not r.skipped]  # (those done before: counted apart, a break-it review)
        before = len(written) - len(new)
        click.echo(printable(f"{len(failed)} of {len(paths)} photos failed ({names}: each said above)"
                             + (f"; {len(new)} written to {job.out}" if new else "")
                             + (f"; {before} done before" if before else ""), one_line=True), err=True)
    if written:  # (some results written: how to look at them, also when others failed)
        view_hint(ctx, job.out)
    if failed:
        ctx.exit(2)

"""``wbcap demo``: pipeline check on a bundled example, no licensed files needed."""

from __future__ import annotations

import click

from wbcap.cli.common import IntRange, NonEmptyPath, device_option, echo_result, image_result_line, is_quiet
from wbcap.console import printable


@click.command()
@click.option("-o", "--out", type=NonEmptyPath(file_okay=False), default="wbcap_demo", show_default=True, help="Output folder.")
@click.option("--image", type=NonEmptyPath(dir_okay=False), default=None, help="Use this image instead of the bundled example.")
@click.option("--video", metavar="SOURCE", type=NonEmptyPath(), default=None,
              help="Run the video pipeline (as `wbcap run`: tracks, params.jsonl, GLB animation, render.mp4) on this "
                   "video, image folder or glob (what `wbcap run` takes) instead, with the same synthetic body model "
                   "and untrained weights; into OUT/video-<name>/.")
@click.option("--max-frames", type=IntRange(min=1), default=None,
              help="With --video: frames to process (default 60).")
@click.option("--offline", is_flag=True, envvar="WBCAP_OFFLINE",
              help="Never download the detector model (also WBCAP_OFFLINE=1); HOG is used when it is absent.")
@device_option
@click.pass_context
def demo(ctx, out, image, video, max_frames, offline, device):
    """Run the whole image pipeline on a bundled example with a synthetic body model and
    untrained weights: a check that wbcap works here, not a real estimate. With --video, the
    whole video pipeline on the first frames of that video."""
    from wbcap.cli import option_spelling
    from wbcap.demo import DEMO_VIDEO_FRAMES, next_steps, run_demo, video_demo
    from wbcap.errors import InputError, spelling

    if video is not None:
        if image is not None:
            raise InputError("--image and --video exclude each other; pass one")
        from wbcap.cli.run import execute

        job, pipeline, detector = video_demo(video, out, device=device, offline=offline,
                                             max_frames=max_frames or DEMO_VIDEO_FRAMES)
        with spelling(lambda name: option_spelling(ctx, name, first="run")):  # (advice names `wbcap run`'s flags)
            result = execute(ctx, job, pipeline=pipeline, resume_hint=False)  # (demo has no --resume: it starts over)
        if not is_quiet(ctx):
            echo_result(_detector_line(detector))
            echo_result(f"{result.frames} frames, {len(result.tracks)} track(s), {result.person_frames} person-frames "
                        f"-> {result.out}")
            echo_result(next_steps("wbcap run your_video.mp4 -o out/"))
        return
    if max_frames is not None:
        raise InputError("--max-frames applies to --video; pass a video or drop it")
    from pathlib import Path

    from wbcap.io.images import file_video_container, is_animated_gif, is_moving_picture_name

    # (a new user's trial was sent to `wbcap run`; a video named .jpg too: a break-it trial)
    if image is not None and (is_moving_picture_name(image) or is_animated_gif(image)
                              or file_video_container(Path(image).expanduser())):
        raise InputError(f"{image}: --image takes a photo; for a video or GIF use --video {image}")

    with spelling(lambda name: option_spelling(ctx, name, first="image")):
        results, detector = run_demo(out, device=device, image=image, offline=offline)
    quiet = is_quiet(ctx)
    failed = [r for r in results if r.error]
    if not quiet and not failed:  # (after a failure the error line is the news)
        echo_result(_detector_line(detector))
    for r in results:
        if r.error:
            click.echo(printable(f"error: {r.error}", one_line=True), err=True)
        elif not quiet:
            echo_result(image_result_line(r))
    if not quiet and not failed:  # (after a failure the error line is the news)
        echo_result(next_steps())
    if failed:
        raise click.exceptions.Exit(2)


def _detector_line(detector: str) -> str:
    """The demo's detector line; HOG's names how to get YOLOX-nano: fetching it, or, after a
    download that failed (offline: the fetch it named had just failed, a new user's trial),
    importing a copy."""
    if detector.startswith("yolox"):
        return f"detector: {detector}"
    from wbcap.weights import recent_auto_failure

    how = ("its download failed: `wbcap weights import yolox-nano FILE` with a copy from a machine with internet, "
           "or `wbcap weights fetch yolox-nano` once online" if recent_auto_failure("yolox-nano") is not None
           else "`wbcap weights fetch yolox-nano`")
    return f"detector: {detector} (the better YOLOX-nano is not installed: {how})"

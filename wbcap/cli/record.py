"""``wbcap record``: parse options, build a RecordJob, record (:mod:`wbcap.io.record`), report."""

from __future__ import annotations

import re

import click

from wbcap.cli.common import FiniteFloatRange, NonEmptyPath, echo_result, is_quiet, progress_display

_SIZE = re.compile(r"(\d+)x(\d+)")


def _options(ctx, param, values):
    pairs = []
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key.strip() or not re.fullmatch(r"[A-Za-z0-9_]+", key.strip()):
            raise click.BadParameter(f"{value!r}: give it as KEY=VALUE, e.g. rtsp_transport=tcp", ctx, param)
        pairs.append((key.strip(), setting))
    return tuple(pairs)


def _size(ctx, param, value):
    if value is not None and not _SIZE.fullmatch(value):
        raise click.BadParameter(f"{value!r}: give it as WIDTHxHEIGHT, e.g. 1280x720", ctx, param)
    return value


@click.command("record")
@click.argument("source")
@click.option("-o", "--out", type=NonEmptyPath(dir_okay=False), required=True,
              help="The Matroska file to write (.mkv; its folder is created when missing).")
@click.option("--seconds", type=FiniteFloatRange(min=0.001, max=1e7), default=None,
              help="Stop after this many seconds of the source's video (default: at its end, or Ctrl-C).")
@click.option("--input-format", "input_format", metavar="NAME", default=None,
              help="FFmpeg's input format or device (ffmpeg -f): v4l2 (the default for /dev/video*), avfoundation "
                   "(macOS: SOURCE 0), dshow (Windows: SOURCE video=NAME), lavfi (test pictures).")
@click.option("--size", callback=_size, default=None, metavar="WxH",
              help="A camera's picture size to ask for (its video_size), e.g. 1280x720.")
@click.option("--fps", type=FiniteFloatRange(min=0.1, max=1000), default=None,
              help="A camera's frame rate to ask for (its framerate).")
@click.option("--option", "extra", metavar="KEY=VALUE", multiple=True, callback=_options,
              help="An FFmpeg input option for the source, again for each: rtsp_transport=tcp (RTSP over TCP, "
                   "where UDP loses packets), input_format=mjpeg (a webcam's MJPEG mode, which reaches 720p at 30 "
                   "a second where raw pictures do not), probesize=..., ...")
@click.option("--timeout", "timeout_s", type=FiniteFloatRange(min=0.1, max=3600), default=10.0, show_default=True,
              help="Seconds the source may take to open, and may then send nothing, before the recording ends "
                   "(what came before is kept).")
@click.option("--overwrite", is_flag=True, help="Replace the file OUT.")
@click.pass_context
def record_cmd(ctx, source, out, seconds, input_format, size, fps, extra, timeout_s, overwrite):
    """Record a live stream or a camera (SOURCE: rtsp://, rtmp://, udp://, tcp://, http(s):// live
    streams, /dev/video0, or a device of --input-format) into a Matroska file that `wbcap run` reads:
    compressed video and audio copied as they are, a camera's raw pictures encoded as H.264 (visually
    lossless), from the first keyframe, its time 0. Stops after --seconds, at the source's end, on
    Ctrl-C or when the source sends nothing for --timeout, the file finished each time. Prints the
    file (not with `wbcap -q`)."""
    from rich.progress import TextColumn, TimeElapsedColumn

    from wbcap.console import printable, shell_word
    from wbcap.io.record import RecordJob, record

    options = tuple((k, v) for k, v in (("video_size", size), ("framerate", None if fps is None else f"{fps:g}"))
                    if v is not None) + extra
    job = RecordJob(source=source, out=out, seconds=seconds, input_format=input_format, options=options,
                    timeout_s=timeout_s, overwrite=overwrite)
    display, _ = progress_display(ctx, TextColumn("{task.description}"), TextColumn("{task.completed:.0f} s"),
                                  TextColumn("{task.fields[limit]}"), TimeElapsedColumn())
    with display as bar:
        task = None

        def progress(stage: str, done: int, total: int | None) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task(f"recording {source}", total=total, limit=f"of {total} s" if total else "(Ctrl-C stops)")
            bar.update(task, completed=done)

        result = record(job, progress=progress)
    if not is_quiet(ctx):
        echo_result(str(result.out))
        click.echo(printable(f"recorded {result.seconds:.2f} s, {result.frames} frames ({result.video}"
                             f"{', audio ' + result.audio if result.audio else ', no audio'}); next: wbcap run "
                             f"{shell_word(str(result.out), option_safe=True)} -o OUT", one_line=True), err=True)

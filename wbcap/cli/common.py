"""Options shared by several subcommands (click only: importing this loads no torch)."""

from __future__ import annotations

import math
import os
import re

import click

from wbcap.console import stderr_is_terminal  # (the commands take it from here)


class NonEmptyPath(click.Path):
    """``click.Path`` refusing an empty value in one line: ``wbcap run ""`` read the current
    folder as SOURCE, ``-o ""`` wrote into it (a user trial). The type of every file or folder
    argument and option of the CLI."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path; name a file or folder", param, ctx)
        if isinstance(value, str) and value in _STANDARD_STREAMS and not os.path.exists(value):
            # (a streaming trial: `cat clip | wbcap run -` said "-: no such file or folder")
            self.fail(f"{value}: standard input or output; wbcap reads and writes files and folders only: name one "
                      "(a stream is saved to a file first, e.g. ... | wbcap record pipe:0 -o clip.mkv)", param, ctx)
        url = _URL.match(value) if isinstance(value, str) and not os.path.exists(value) else None
        if url is not None:  # (a user trial: `wbcap run http://host/x.mp4` said "http:/host/x.mp4: no such file")
            scheme = url.group(1).lower()
            if scheme == "file":
                self.fail(f"{value}: a file address; give its path ({value[len(url.group(0)):] or '/'})", param, ctx)
            # (a camera's or a live stream's: curl does not record them, a streaming trial)
            from wbcap.io.video_probe import record_clip_hint

            fetch = (record_clip_hint(value) if scheme in _LIVE
                     else "download an input first, e.g. with curl -LO, and name the file")
            self.fail(f"{value}: an address, not a path; wbcap reads and writes local files and folders only ({fetch})",
                      param, ctx)
        # (click's own words contradict themselves, "Directory 'x' is a file", and name no fix: a user trial)
        if isinstance(value, str) and not self.file_okay and os.path.isfile(value):
            self.fail(f"{value}: is a file; name a folder", param, ctx)
        if isinstance(value, str) and not self.dir_okay and os.path.isdir(value):
            self.fail(f"{value}: is a folder; name a file", param, ctx)
        return super().convert(value, param, ctx)


#: An address with a scheme of two letters or more (``http://``, ``rtsp://``, ``s3://``, ``file://``...;
#: not a Windows drive, ``C://``), not a path.
_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]+)://")
#: ``--fix-left-hand-flip``'s help (``wbcap image``, ``wbcap run``; a gesture researcher's trial read the
#: old one as a fix of the left hand's finger poses).
FIX_LEFT_HAND_FLIP_HELP = (
    "Mirror the left hand's 2D joints (found on the mirrored left-hand crop) back pixel-exactly instead of by the "
    "released model's formula, which it was trained with. They feed the body's rotations: this moves the arms and "
    "body a little, not the finger poses. Off for the released weights.")
#: The schemes of live streams and cameras (FFmpeg's protocols), which are recorded, not downloaded.
_LIVE = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtp", "srt", "udp", "tcp", "mms", "mmsh", "v4l2"})
#: What FFmpeg and Unix tools name the standard streams by.
_STANDARD_STREAMS = frozenset({"-", "pipe:", "pipe:0", "pipe:1"})


def check_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Callback of every ``--device`` option: a device other than auto and cpu is checked as the
    option is read, before anything else runs (a model, a detector, a download), with
    :func:`wbcap.model.device.resolve_device`'s one line (``--device cuda: CUDA is not available
    on this machine; ...``). Returns ``value`` as given (auto and cpu import no torch here)."""
    if value is None or ctx.resilient_parsing or value.strip().lower() in ("", "auto", "cpu"):
        return value
    from wbcap.model.device import resolve_device

    resolve_device(value)
    return value


device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    callback=check_device,
    help="Where the network runs: auto (CUDA if available), cpu, cuda or cuda:N.",
)
body_models_option = click.option(
    "--body-models",
    type=NonEmptyPath(),
    default=None,
    help="SMPL-X file or folder (default: $WBCAP_BODY_MODELS, then the user data folder; see `wbcap doctor`).",
)
gender_option = click.option(
    "--gender", type=click.Choice(["neutral", "male", "female"]), default=None,
    help="Which SMPL-X model to use (default: the one a --body-models file's name says, else neutral, "
         "which the released network was trained with).",
)
allow_pickle_option = click.option(
    "--allow-pickle",
    is_flag=True,
    help="Also accept .pkl body models (read as plain arrays only: a pickle naming other Python objects is refused).",
)
checkpoint_option = click.option(
    "--checkpoint",
    type=NonEmptyPath(),
    default=None,
    help="Network checkpoint (default: $WBCAP_WEIGHTS, then the user weights folder; see `wbcap weights list`).",
)
precision_option = click.option(
    "--precision",
    type=click.Choice(["exact", "fast", "bf16", "fp16", "fp32"]),
    default="exact",
    show_default=True,
    help="exact: float32, the reference numbers; fast: convolutions in bfloat16 (the ResNets and box "
         "network in int8 where this CPU measured that faster), linear layers, soft-argmax, rotations and SMPL-X "
         "in float32 (2-3x the speed on AVX512 CPUs; a few mm of mesh difference, see the README's "
         "Precision modes); bf16/fp16: "
         "whole-network autocast, for comparison only. fp32 means exact.",
)


class IntRange(click.IntRange):
    """``click.IntRange`` whose refusal of a word that is no number says so: click's reads
    "'abc' is not a valid integer range" (its type's name), as if a range had been asked for."""

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            try:
                int(value)
            except ValueError:
                self.fail(f"{value!r} is not a whole number.", param, ctx)
        return super().convert(value, param, ctx)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (which pass its bounds: a
    comparison with nan is false), as a usage error. Without bounds, ``--help`` shows a plain
    ``FLOAT`` (click's own would say ``FLOAT RANGE [x<=None]``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.min is None and self.max is None:
            self.name = "float"

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return ""  # (click leaves the range out of the help when this is empty)
        return super()._describe_range()

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:  # (click's: "'abc' is not a valid float range")
                self.fail(f"{value!r} is not a number.", param, ctx)
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def is_quiet(ctx: click.Context) -> bool:
    """Whether ``wbcap -q`` was given (only warnings and errors: no progress, no result lines)."""
    return bool((ctx.find_root().obj or {}).get("quiet"))


def image_result_line(result) -> str:
    """The stdout line of one photo's result (:class:`wbcap.image_app.ImageResult`), as ``wbcap
    image`` and ``wbcap demo`` print it: ``<file name>: <n> person(s) -> <its output folder>`` (for
    a box file's entry of no box: ``<file name>: 0 person(s) (... nothing written)``), one
    line whatever the names hold (a newline in a file name is written ``\\n``: a break-it trial's
    split one result over two lines)."""
    from wbcap.console import printable

    if result.out_dir is None:  # (a box file's entry of no box: nothing to write)
        kept = f"; its earlier result in {result.earlier} was left unchanged" if result.earlier is not None else ""
        return printable(f"{result.path.name}: 0 person(s) (its entry in the box file lists none; nothing "
                         f"written{kept})", one_line=True)
    done = " (done before: --skip-done)" if getattr(result, "skipped", False) else ""
    return printable(f"{result.path.name}: {result.people} person(s) -> {result.out_dir}{done}", one_line=True)


def echo_result(line: str) -> None:
    """Write one result line to stdout. A stdout that cannot be written (a full disk:
    ``wbcap image x.jpg > /dev/full``) is the ``wbcap`` group's to report, once the command has
    done its work, repeating the lines (:mod:`wbcap.cli.stdout`); a closed pipe (``| head``)
    is click's quiet exit. Control characters of names in it are escaped
    (:func:`wbcap.console.printable`)."""
    from wbcap.console import printable

    click.echo(printable(line))


def progress_display(ctx: click.Context, *columns):
    """A rich progress display on stderr for a subcommand, with ``columns``.

    Off with ``-q`` and when stderr is not a terminal (:func:`stderr_is_terminal`, whatever
    ``FORCE_COLOR`` says: a log file or a pipe gets the log lines only, not bar redraws or the
    blank line a finished bar leaves), so an error stays one line.
    Standard output is left alone while the bar runs (no rich redirect): result lines go where
    stdout goes (a file, a pipe) through the command's stdout guard (:mod:`wbcap.cli.stdout`),
    not to the bar's terminal.
    Returns ``(progress, console)``; use ``progress`` as a context manager.
    """
    from rich.progress import Progress

    from wbcap.console import stderr_console

    console = stderr_console()  # (the log lines' own: rich prints them above the bar)
    # (stderr itself a terminal: FORCE_COLOR makes rich call a log file one, which then filled with
    # the bar's redraws and took the result lines: a break-it trial)
    disabled = is_quiet(ctx) or not stderr_is_terminal()
    return Progress(*columns, console=console, disable=disabled, transient=True, redirect_stdout=False), console


def view_hint(ctx: click.Context, out: str | os.PathLike[str]) -> None:
    """After a `wbcap run` or `wbcap image` that wrote ``out``, where a person watches (standard
    error a terminal; not with ``-q``): the command that shows the results (a new user's trial
    did not find `wbcap view`). Not on standard output, which holds the result lines alone."""
    if is_quiet(ctx) or not stderr_is_terminal():
        return
    from wbcap.console import printable, shell_word

    click.echo(printable(f"next: wbcap view {shell_word(str(out), option_safe=True)}   (the results in a web browser)",
                         one_line=True), err=True)


_DETECTOR_HELP = (
    "Person detector: auto = YOLOX-nano when installed (downloaded once on first use, 3.7 MB, unless "
    "--offline), else OpenCV HOG with a notice; yolox-nano|yolox-tiny|yolox-s|yolox-m|yolox-l|yolox-x "
    "(`wbcap weights fetch NAME`); hog; torchvision (Faster R-CNN, when torchvision and its weights are "
    "present); full (the whole frame is one person); yolox:FILE (any YOLOX ONNX export)"
)


def detector_options(video: bool):
    """``--detector``, ``--detector-model``, ``--score-threshold``, ``--min-height``,
    ``--max-people`` and ``--offline`` for ``wbcap image`` (``video=False``) and ``wbcap run``.

    The decorated command receives ``detector``, ``detector_model``, ``score_threshold``,
    ``min_height_frac``, ``max_people`` and ``offline`` (``--offline`` or ``$WBCAP_OFFLINE``).
    """
    boxes = ('; boxes:FILE reads {"<frame>": [[x,y,w,h], ...]}, <frame> = frame index ("12" or '
             '"000012") or image file name') if video else '; boxes:FILE: the boxes of --boxes FILE'
    options = [
        click.option("--detector", default="auto", show_default=True,
                     metavar="auto|yolox-nano|…|hog|torchvision|full|yolox:FILE|boxes:FILE",
                     help=_DETECTOR_HELP + boxes + "."),
        click.option("--detector-model", type=NonEmptyPath(dir_okay=False), default=None,
                     help="A YOLOX ONNX export to detect people with (any size; raw or decoded outputs)."),
        click.option("--score-threshold", type=FiniteFloatRange(), default=None,
                     help="Minimum detector score (default: YOLOX 0.3, in [0, 1]; torchvision 0.5, in [0, 1]; HOG 0.0, an "
                          "SVM margin, any number; with auto a probability in [0, 1], which a HOG fallback leaves "
                          "at its default)."),
        click.option("--min-height", "min_height_frac", type=FiniteFloatRange(0, 1), default=None,
                     help="Ignore people shorter than this fraction of the image height."),
        click.option("--max-people", type=IntRange(min=1), default=None,
                     help="Follow at most this many people at a time (a followed person keeps their place while "
                          "tracked, also missed for up to --max-age frames; a free place goes to the longest-tracked "
                          "of the others, then to new ones by score; a video may still hold more tracks in all)." if video
                     else "Keep at most this many people per image: the largest boxes (nearest the camera)."),
        click.option("--offline", is_flag=True, envvar="WBCAP_OFFLINE",
                     help="Never download a detector model (also WBCAP_OFFLINE=1); auto then falls back to HOG."),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def calibration_options(video: bool):
    """``--calibration FILE``, ``--calibration-camera NAME`` and ``--undistort-scale FRACTION`` for
    ``wbcap run`` (``video``) and ``wbcap image``; the command receives ``calibration``,
    ``calibration_camera`` and ``undistort_scale``, which :func:`read_calibration_option` reads."""
    picture, outputs = (("frame", "all results are in (meta.json: camera, calibration); OpenPose keypoints are in the "
                         "source's pixels. Instead of --focal and --principal-point") if video else
                        ("photo", "the --export files are in; OpenPose keypoints are in the photo's own pixels"))
    options = [
        click.option("--calibration", type=NonEmptyPath(), default=None, metavar="FILE",
                     help="The camera's calibration (Pose2Sim's or Anipose's Calib.toml; OpenCV's, ROS's, Kalibr's or "
                          "EasyMocap's YAML or XML; JSON, a Gyroflow lens profile; COLMAP's reconstruction: its "
                          "cameras.txt, images.txt, their .bin or its folder, a camera per image named as the "
                          "video): every "
                          f"{picture} is undistorted (fisheye too) into a pinhole camera of "
                          f"square pixels that keeps every pixel, which {outputs}."
                          + (" With --world, the camera's pose in it (Pose2Sim's, Anipose's, FreeMoCap's, EasyMocap's "
                             "extrinsics) places the tracks in its world: z up, z = 0 the floor, checked against the "
                             "feet's ground (its units told from the camera's height); a world without a scale "
                             "(COLMAP's) is found by `wbcap fuse`." if video else "")),
        click.option("--calibration-camera", default=None, metavar="NAME",
                     help="Which camera of a --calibration file holding several (default: the one named as the "
                          + ("video's file, e.g. cam01 for cam01.mp4)." if video else "photo's file, for one photo).")),
        click.option("--undistort-scale", type=FiniteFloatRange(0.05, 4.0), default=None, metavar="FRACTION",
                     help="With --calibration: the undistorted picture's scale as a fraction of the lens's (default: "
                          "the largest that keeps every source pixel; for a very wide lens, such as a GoPro's fisheye "
                          "modes, 1 shows people as large as the source's middle does, 0.5 halfway, leaving the far "
                          "edges out)."),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def read_calibration_option(calibration: str | None, camera: str | None, source: str | None,
                            scale: float | None = None):
    """The :class:`~wbcap.camera.LensCalibration` of ``--calibration`` (camera ``camera``, else the
    one named as ``source``; ``--undistort-scale`` ``scale``), or None without it.

    Raises:
        click.UsageError: ``--calibration-camera`` or ``--undistort-scale`` without ``--calibration``.
        InputError: the file's (:func:`wbcap.io.calibration.read_calibration`).
    """
    if calibration is None:
        for flag, value in (("--calibration-camera", camera), ("--undistort-scale", scale)):
            if value is not None:
                raise click.UsageError(f"{flag} goes with --calibration FILE: give the file too")
        return None
    import dataclasses

    from wbcap.io.calibration import read_calibration

    return dataclasses.replace(read_calibration(calibration, camera=camera, source=source), scale=scale)


#: ``--root-bone`` (``wbcap run``, ``wbcap export``, ``wbcap fuse``).
root_bone_option = click.option(
    "--root-bone", is_flag=True,
    help="GLB/FBX: add a bone `root` above the pelvis, on the ground under it (y = 0 of the file's frame: the "
         "ground with --world), keyed with the pelvis's horizontal motion, for root motion in Unreal or Unity; the "
         "rest pose stands on it (soles at y = 0); the posed mesh is the same. The BVH keeps the pelvis as its root.")

#: ``--root-bone`` of ``wbcap image`` (a still pose in the photo's camera frame: no ground, no motion).
_photo_root_bone_option = click.option(
    "--root-bone", is_flag=True,
    help="GLB/FBX: add a bone `root` above the pelvis, under it at y = 0 of the camera's frame (a photo has no "
         "ground), as rigs for Unreal or Unity have; the rest pose stands on it (soles at y = 0); the posed mesh is "
         "the same. The BVH keeps the pelvis as its root.")


def export_options(default: str, photos: bool = False):
    """``--export FORMATS`` (default ``default``), ``--exact`` and ``--root-bone`` (``wbcap run``,
    ``wbcap image`` with ``photos``: its help says a photo's files); the command receives
    ``export`` (the text), ``exact`` and ``root_bone``; :func:`parse_export` reads them."""
    return lambda f: (_photo_root_bone_option if photos else root_bone_option)(_export_options(f, default, photos))


def parse_export(text: str, exact: bool, root_bone: bool = False):
    """``--export``, ``--exact`` and ``--root-bone`` (:func:`export_options`) as an
    :class:`~wbcap.export.animation.AnimationExport`: its ``parse``, whose messages name ``--export``.

    Raises:
        InputError: an unknown format, ``none`` with formats, or no name at all (``--export ''``,
            taken for none without a word before).
    """
    from wbcap.errors import InputError
    from wbcap.export.animation import FORMATS, AnimationExport

    if not text.replace(",", "").strip():
        raise InputError(f"--export {text!r}: names no format; give formats ({', '.join(FORMATS)}, comma-separated) "
                         "or none")
    return AnimationExport.parse(text, exact=exact, option="--export", root_bone=root_bone)


def _export_options(f, default: str, photos: bool):
    f = click.option(
        "--exact", is_flag=True,
        help="GLB/FBX: add the pose-corrective and expression-joint part of SMPL-X as per-frame morph targets, so "
             "the mesh equals wbcap's SMPL-X mesh (bigger files; see the README's animation section).",
    )(f)
    # The metavar names wbcap.export.animation.FORMATS, which its errors list (not imported here: --help
    # loads no numpy; tests/test_export.py keeps the two the same).
    return click.option(
        "--export", "export", default=default, show_default=True, metavar="npz,glb,bvh,fbx,csv,angles,trc,c3d|none",
        help=("Animation files per person: npz (AMASS SMPL-X, z up; always written), glb (glTF 2.0, skinned, "
              "animated, with the source camera), " if not photos else
              "Files per person, in the photo's pose: npz (AMASS SMPL-X, z up, one row), glb (glTF 2.0, skinned, "
              "with the photo's camera), ") + "bvh (skeleton, centimetres), fbx (Unity/Unreal, through "
             "Blender: pip install \"wbcap[blender]\"), csv (3D positions of 76 joints per row, metres, the npz's "
             "frame), angles (a CSV of joint angles in degrees, each named after its movement: head_yaw_left, "
             "left_knee_flexion, right_index1_flexion...), trc (OpenSim markers: BODY_25 and hand points named as Pose2Sim's, y up, metres), c3d (the same "
             "markers for Vicon, Visual3D, Mokka: z up, millimetres); "
             "comma-separated, or none alone.",
    )(f)

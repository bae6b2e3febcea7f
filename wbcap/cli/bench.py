"""``wbcap bench``: parse options, call :func:`wbcap.bench.stages.run_bench`, print a table or JSON."""

from __future__ import annotations

import click

from wbcap.cli.common import (
    IntRange,
    NonEmptyPath,
    allow_pickle_option,
    body_models_option,
    checkpoint_option,
    device_option,
    gender_option,
    is_quiet,
)


def _batch_sizes(ctx, param, value):
    if value is None:
        return None
    from wbcap.bench.options import parse_batch_sizes

    try:
        return parse_batch_sizes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _precisions(ctx, param, value):
    from wbcap.bench.options import parse_precisions

    try:
        return parse_precisions(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _frame_size(ctx, param, value):
    """``WxH`` of the synthetic clip: 16 to 4096 pixels a side (a clip is made in memory and
    encoded to H.264, whose encoder takes at most 16384 a side; 4096 is past any camera's frames
    wbcap's network crops from, and keeps the clip's frames at most 50 MB each)."""
    try:
        w, h = (int(v) for v in value.lower().split("x"))
        if not (16 <= w <= MAX_FRAME_SIDE and 16 <= h <= MAX_FRAME_SIDE):
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r}: use WIDTHxHEIGHT, e.g. 320x240 (16 to {MAX_FRAME_SIDE} each)") from None
    return w, h


#: The largest side of ``--frame-size`` (:func:`_frame_size`).
MAX_FRAME_SIDE = 4096


@click.command()
@checkpoint_option
@click.option("--config", "config_name", type=click.Choice(["full", "small"]), default=None,
              help="Benchmark a named architecture with random weights instead of a checkpoint "
                   "(small = all ResNet-18).")
@body_models_option
@gender_option
@allow_pickle_option
@device_option
@click.option("--precision", "precisions", callback=_precisions, default="exact,fast", show_default=True,
              metavar="P,P,...", help="Network precisions to time, comma-separated: exact, fast, bf16, fp16 "
                                     "(see `wbcap run --help`); with exact and another, their output difference is reported.")
@click.option("--batch-sizes", callback=_batch_sizes, default=None, metavar="N,N,...",
              help="Regressor batch sizes [default: 1,2 on CPU, 1,2,4,8,16 on CUDA].")
@click.option("--repeats", type=IntRange(min=1), default=None,
              help="Timed runs per measurement; medians are reported [default: 3 on CPU, 10 on CUDA].")
@click.option("--warmup", type=IntRange(min=0), default=None,
              help="Untimed runs before each measurement [default: 1 on CPU, 3 on CUDA].")
@click.option("--video", type=NonEmptyPath(exists=True, dir_okay=False), default=None,
              help="Video to decode, detect and render on [default: a generated synthetic clip].")
@click.option("--frames", type=IntRange(min=1), default=16, show_default=True,
              help="Frames decoded and encoded per run.")
@click.option("--frame-size", callback=_frame_size, default="320x240", show_default=True, metavar="WxH",
              help="Size of the synthetic clip (not with --video, timed at its own size).")
@click.option("--matmul-size", type=IntRange(min=64), default=2048, show_default=True,
              help="Square matmul size for the device's FLOP/s ceiling.")
@click.option("--detector-model", type=NonEmptyPath(exists=True, dir_okay=False), default=None,
              help="A YOLOX ONNX export to time beside HOG [default: the installed yolox-nano, if any; "
                   "the benchmark never downloads: `wbcap weights fetch yolox-nano` installs it].")
@click.option("--detect-only", is_flag=True,
              help="Time only the person detectors (HOG and YOLOX) on the first frame: no network, no ceiling.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON on stdout instead of tables.")
@click.option("--json-out", type=NonEmptyPath(dir_okay=False, writable=True), default=None,
              help="Also write the JSON report to this file.")
@click.pass_context
def bench(ctx, checkpoint, config_name, body_models, gender, allow_pickle, device, precisions, batch_sizes, repeats,
          warmup, video, frames, frame_size, matmul_size, detector_model, detect_only, as_json, json_out):
    """Time every stage (decode, detect, crop, regressor per batch size, SMPL-X, render, encode),
    count the regressor's FLOPs and compare the achieved FLOP/s with this device's matmul ceiling.

    Detection is timed for every available detector on the same frame: HOG, and YOLOX when a
    model is installed or given (--detector-model); the report says how to get YOLOX when it is
    absent. --detect-only times just the detectors.

    Uses the checkpoint `wbcap image` would use (or --checkpoint), or --config full|small with
    random weights; a synthetic SMPL-X model stands in when the real one is missing. The report
    says which. Progress goes to stderr; tables (or --json) to stdout.

    The first run on a machine measures its CPU inference form first (10-30 s with 2 cores, once:
    kept in the user cache); WBCAP_CPU_STRATEGY=fused times the default form without measuring.
    """
    import contextlib
    import json

    from wbcap.bench.options import BenchOptions
    from wbcap.bench.report import print_report, write_report
    from wbcap.bench.stages import run_bench
    from wbcap.console import stderr_console

    if checkpoint is not None and config_name is not None:
        raise click.UsageError("--config (random weights) and --checkpoint exclude each other; pass one")
    if video is not None and ctx.get_parameter_source("frame_size") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--frame-size sets the synthetic clip's size, and --video is timed at its own: drop one")
    opts = BenchOptions(
        checkpoint=checkpoint, config=config_name, body_models=body_models, gender=gender, allow_pickle=allow_pickle,
        device=device, precisions=precisions, batch_sizes=batch_sizes, repeats=repeats, warmup=warmup, video=video,
        frames=frames, frame_size=frame_size, matmul_size=matmul_size, detector_model=detector_model,
        detect_only=detect_only,
    )
    if json_out is not None:
        from wbcap.atomic import check_writable_file
        from wbcap.bench.stages import bench_inputs

        # (one line now, not after minutes of timing; never one of the files the bench reads)
        check_writable_file(json_out, inputs=bench_inputs(opts))
    quiet = is_quiet(ctx)
    err = stderr_console()  # (the log lines' own: rich prints them above the spinner)
    live = not quiet and err.is_terminal
    with err.status("benchmarking", spinner="dots") if live else contextlib.nullcontext() as status:

        def progress(msg: str) -> None:
            if status is not None:
                status.update(f"benchmarking: {msg}")
            elif not quiet:
                err.print(f"bench: {msg}", markup=False, highlight=False)

        report = run_bench(opts, progress=progress)
    text = json.dumps(report, indent=2)
    # The report first: a --json-out that cannot be written after all (a disk filled meanwhile)
    # does not cost the minutes of timing it holds.
    if as_json:
        click.echo(text)
    else:
        import sys

        from rich.console import Console

        print_report(report, Console(width=None if sys.stdout.isatty() else 120))  # (piped: 120 columns)
    if json_out is not None:
        write_report(report, json_out)


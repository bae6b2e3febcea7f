"""``wbcap demo``: pipeline check on a bundled example, no licensed files needed."""

from __future__ import annotations

import click

from wbcap.cli.common import device_option, echo_result, image_result_line, is_quiet


@click.command()
@click.option("-o", "--out", type=click.Path(file_okay=False), default="wbcap_demo", show_default=True, help="Output folder.")
@click.option("--image", type=click.Path(dir_okay=False), default=None, help="Use this image instead of the bundled example.")
@click.option("--offline", is_flag=True, envvar="WBCAP_OFFLINE",
              help="Never download the detector model (also WBCAP_OFFLINE=1); HOG is used when it is absent.")
@device_option
def demo(out, image, offline, device):
    """Run the whole image pipeline on a bundled example with a synthetic body model and
    untrained weights: a check that wbcap works here, not a real estimate."""
    from wbcap.demo import next_steps, run_demo

    results, detector = run_demo(out, device=device, image=image, offline=offline)
    quiet = is_quiet(click.get_current_context())
    if not quiet:
        echo_result(f"detector: {detector}" + ("" if detector.startswith("yolox") else
                    " (the better YOLOX-nano is not installed: `wbcap weights fetch yolox-nano`)"))
    failed = [r for r in results if r.error]
    for r in results:
        if r.error:
            click.echo(f"error: {r.error}", err=True)
        elif not quiet:
            echo_result(image_result_line(r))
    if not quiet and not failed:  # (after a failure the error line is the news)
        echo_result(next_steps())
    if failed:
        raise click.exceptions.Exit(2)

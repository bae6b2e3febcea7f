"""``wbcap view``: parse options, build a ViewJob, write the page or serve it (:mod:`wbcap.view.site`)."""

from __future__ import annotations

import click

from wbcap.cli.common import IntRange, NonEmptyPath, allow_pickle_option, echo_result, is_quiet
from wbcap.cli.stdout import check_stdout
from wbcap.console import printable, shell_word


@click.command("view")
@click.argument("out", type=NonEmptyPath(file_okay=False))
@click.option("--html", type=NonEmptyPath(dir_okay=False), default=None,
              help="Write the page to this .html file, its files to <name>_files/ beside it (a folder to copy or "
                   "send; open it with python3 <name>_files/serve.py), instead of serving it.")
@click.option("--port", type=IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 to serve on (0: a free one).")
@click.option("--open", "open_browser", is_flag=True, help="Also open the page in the default web browser.")
@click.option("--body-models", type=NonEmptyPath(), default=None,
              help="SMPL-X file or folder; only for a run without GLB files (--export none), whose bodies are then "
                   "made from params.jsonl as `wbcap export` makes them (default: $WBCAP_BODY_MODELS, then the user "
                   "data folder).")
@click.option("--camera", metavar="RUN", default=None,
              help="A `wbcap fuse` folder: show it through this camera (its run's folder name, as fuse.json lists "
                   "the runs), with that run's render.mp4 on the fused clock.")
@allow_pickle_option
@click.pass_context
def view(ctx, out, html, port, open_browser, body_models, allow_pickle, camera):
    """Look at a finished `wbcap run`, `wbcap image` or `wbcap fuse` folder (OUT) in a web browser: the overlay
    video or photo (none for a fusion), every track's body in 3D (in the frame its GLB files are in: the source camera's, or with
    --world the estimated ground's, seen through the source camera where the files place it), the
    tracks and their per-frame parameters. Serves the page on 127.0.0.1 until Ctrl-C (nothing leaves
    this machine), or writes it with --html and prints its path (not with `wbcap -q`; the address
    of a served page is always printed)."""
    import contextlib
    from pathlib import Path

    from wbcap.io.run_folder import reading_folder
    from wbcap.view.site import ViewJob, serve_command, serve_view, write_html

    job = ViewJob(out=out, html=html, port=port, body_models=body_models, allow_pickle=allow_pickle, camera=camera)
    # The page is built holding OUT shared: refused while a `wbcap run` or `wbcap export` writes it (pass 2
    # removes render.mp4 and rewrites the GLBs: a page of missing and mixed files), and none starts meanwhile.
    reading = reading_folder(Path(out).expanduser(), then="view it again")
    if html:
        with reading:
            page = write_html(job)
        if not is_quiet(ctx):
            echo_result(str(page))
            # (the page does not run from a file:// address; how to open it was only in its README.txt: a new user)
            click.echo(printable(f"open it: cd -- {shell_word(str(page.parent))} && {serve_command(page)}, then the "
                                 "address it prints", one_line=True), err=True)
        return
    with contextlib.ExitStack() as serving:  # (SIGTERM and SIGHUP stop it as Ctrl-C: see wbcap.cli)
        with reading:  # (released once built: a served page keeps no later `wbcap run --resume` out)
            server = serving.enter_context(serve_view(job))  # (its temporary folder goes when the block ends)
        try:
            click.echo(f"wbcap view: {server.url}  (Ctrl-C to stop)")
            check_stdout()  # (the address unwritten: stop now, not at Ctrl-C)
            if open_browser:
                _open_browser(server.url)
            server.wait()
        except KeyboardInterrupt:  # (also SIGTERM: kill, systemd; SIGHUP: a closed terminal)
            if not is_quiet(ctx):
                click.echo("stopped", err=True)


def _open_browser(url: str) -> None:
    """Open ``url`` in the default web browser; where none can be (a server without a desktop,
    no browser installed), a one-line warning with the address."""
    import logging
    import webbrowser
    from urllib.parse import urlsplit

    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    if not opened:
        port = urlsplit(url).port
        logging.getLogger(__name__).warning(
            "--open: no web browser could be opened on this machine; open %s in one (from another machine: "
            "ssh -L %d:127.0.0.1:%d <this machine>, then the same address there)", url, port, port)

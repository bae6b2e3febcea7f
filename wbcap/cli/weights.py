"""``wbcap weights list | fetch NAME | import NAME FILE | verify``."""

from __future__ import annotations

import click

from wbcap.cli.common import NonEmptyPath, echo_result
from wbcap.console import printable


@click.group()
def weights():
    """List, download, import and verify network weights: checkpoints and person detectors
    (see wbcap/weights/manifest.toml)."""


@weights.command("list")
def list_cmd():
    """Show every known weights file (checkpoints and person detectors), where it is expected and
    whether it is present: the size of the file present and whether it is the official one.
    The list is printed with `wbcap -q` too (it is what the command is for)."""
    from wbcap.weights import check_weights_env, default_entry, installed, manifest, search_dirs

    check_weights_env()
    for e in manifest().values():
        present = installed(e)
        how = f"`wbcap weights fetch {e.name}`" if e.url else f"`wbcap weights import {e.name} FILE`"
        echo_result(f"{e.name}{' (default)' if e.default else ''}: {e.description}")
        if present is None:
            echo_result(f"  file:     {e.file}" + (f" ({e.size:,} bytes)" if e.size else ""))
            echo_result(f"  present:  no — run {how}")
            echo_result(f"  sha256:   {e.sha256 or 'not published (recorded at import or download)'}")
        else:
            what = present.provenance(e.name)
            which = f"; {what}" if what else ""
            echo_result(f"  file:     {e.file}")
            echo_result(f"  present:  {present.path} ({present.size:,} bytes{which})")
            if present.official is False:
                echo_result(f"  sha256:   {present.sha256} (the official file: {e.sha256}"
                           + (f", {e.size:,} bytes)" if e.size else ")"))
            else:
                echo_result(f"  sha256:   {present.sha256 or 'not published; none recorded (`wbcap weights verify` computes it)'}")
        if e.url:
            echo_result(f"  url:      {e.url}")
        echo_result(f"  source:   {e.source}")
        echo_result(f"  licence:  {e.licence}")
    echo_result(f"search order: --checkpoint FILE / --detector-model FILE, $WBCAP_WEIGHTS (a folder; a file is the "
               f"{default_entry().name} checkpoint), " + ", ".join(str(d) for d in search_dirs()))


@weights.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def fetch_cmd(ctx, names):
    """Download NAMES (e.g. yolox-nano) into the user weights folder, checking size and sha256.

    The file is written under a temporary name and renamed only once it checks out; a failed
    or interrupted download leaves nothing behind. $WBCAP_WEIGHTS_MIRROR=URL fetches
    URL/<file> instead of the official address (a site mirror or a file:// folder). A file
    already in place with the published sha256 is not downloaded again. Prints one line per
    file fetched (not with `wbcap -q`); with several NAMES, one that fails gets its error line
    and the others are still fetched (the exit status is the first failure's).
    """
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from wbcap.cli.common import is_quiet, progress_display
    from wbcap.errors import WbcapError
    from wbcap.weight_formats import validator
    from wbcap.weights import check_downloadable, entry, fetch

    for name in names:
        check_downloadable(name)  # unknown names and licensed checkpoints fail before any download
    names = list(dict.fromkeys(names))  # (a name given twice is fetched once)
    failed: list[WbcapError] = []
    for name in names:
        display, _ = progress_display(ctx, TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                      TimeRemainingColumn())
        try:
            with display as bar:
                task = bar.add_task(name, total=None)

                def progress(done, total, task=task, bar=bar):
                    bar.update(task, completed=done, total=total)

                result = fetch(name, validator(entry(name)), progress=progress)
        except WbcapError as exc:
            if len(names) == 1:
                raise
            # (the first failure ended the command: the names after it were not tried, a user trial)
            click.echo(printable(f"error: {exc}", one_line=True), err=True)
            failed.append(exc)
            continue
        if not is_quiet(ctx):
            echo_result(f"{name}: {result.summary} -> {result.path} (sha256 {result.sha256[:12]}…"
                        f"{', matches the published hash' if result.official else ', recorded'}){result.replaced}")
    if failed:
        raise click.exceptions.Exit(failed[0].exit_code)


@weights.command("import")
@click.argument("name")
@click.argument("file", type=NonEmptyPath())
@click.option("--replace", is_flag=True, help="Replace another NAME file already in the weights folder (an earlier import).")
@click.pass_context
def import_cmd(ctx, name, file, replace):
    """Check that FILE is a valid NAME file (checkpoint or detector) and copy it into the user
    weights folder, recording its sha256 (for machines without internet). Another NAME file already
    there is replaced only with --replace. The note that a detector is not the official file goes
    to stderr, also with `wbcap -q`."""
    from pathlib import Path

    from wbcap.cli.common import is_quiet
    from wbcap.weight_formats import validator
    from wbcap.weights import entry, import_weights

    result = import_weights(name, Path(file), validator(entry(name)), replace=replace)
    quiet = is_quiet(ctx)
    if not quiet:
        echo_result(f"imported {name}: {result.summary} -> {result.path}{result.replaced}")
    if result.official is False:
        click.echo(printable(f"note: {Path(file).name} is not the official {name} file (sha256 {result.sha256[:12]}…, "
                   f"official {entry(name).sha256[:12]}…); "
                   "it has the right inputs and outputs and is used as is"), err=True)  # (a note: stderr, as warnings)
    elif result.official is None and not quiet:
        echo_result(f"sha256 {result.sha256} recorded (no published hash to compare)")


@weights.command("verify")
def verify_cmd():
    """Check the sha256 of every present weights file (checkpoints and person detectors) against
    the hash recorded at import or download, else the published one; exit status 1 on a mismatch.
    The report is printed with `wbcap -q` too (it is what the command is for)."""
    from wbcap.weights import check_weights_env, verify

    check_weights_env()
    bad = False
    for r in verify():
        echo_result(f"{r.name:18s} {r.status:10s} {r.path or '-'}  {r.detail}")
        bad |= r.status == "mismatch"
    if bad:
        raise click.exceptions.Exit(1)

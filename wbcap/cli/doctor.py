"""``wbcap doctor``: what is present, what is missing, and the fix for each."""

from __future__ import annotations

import click

from wbcap.cli.common import NonEmptyPath, echo_result


@click.command()
@click.option("--body-models", type=NonEmptyPath(), default=None, help="Also check this SMPL-X file or folder (and the MANO hand model beside it).")
@click.pass_context
def doctor(ctx, body_models):
    """Report body models, checkpoints, rendering backend, CUDA and library versions.

    Exits with status 1 when a required item is missing. With `wbcap -q doctor` only the items
    missing or warned about are printed, with their fixes (nothing when all is well). While the
    SMPL-X model or the checkpoint is missing, the last line says how to try the commands without
    them (README: Quick start).
    """
    from wbcap.cli.common import is_quiet
    from wbcap.demo import try_without_files
    from wbcap.doctor import USER_FOLDERS, run_checks

    quiet = is_quiet(ctx)
    problems = 0
    checks = run_checks(body_models)
    for check in checks:
        if check.ok and quiet:
            continue
        mark = "ok  " if check.ok else ("warn" if check.optional else "MISS")
        echo_result(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok and check.fix:
            echo_result(f"       fix: {check.fix}")
        problems += (not check.ok) and not check.optional
    if problems:
        homeless = any(c.name == USER_FOLDERS and not (c.ok or c.optional) for c in checks)
        click.echo(f"{problems} required item(s) missing; " + ("fix the user folders first: wbcap finds and keeps "
                   "nothing there (weights, models, measurements) and `wbcap demo` does not run without them (other "
                   "commands run with files named or found elsewhere)." if homeless else "`wbcap demo` still runs without them."))
        trying = any(c.stand_in for c in checks)  # (already trying them: the hint would say to do what it did)
        missing = {c.licensed for c in checks if c.licensed and not (c.ok or c.optional)}
        if not homeless and not trying and missing:
            click.echo(try_without_files(body="body" in missing, checkpoint="checkpoint" in missing))
        raise click.exceptions.Exit(1)

"""``wbcap weights list | import NAME FILE | verify``."""

from __future__ import annotations

import click


@click.group()
def weights():
    """List, import and verify network checkpoints (see wbcap/weights/manifest.toml)."""


@weights.command("list")
def list_cmd():
    """Show every known checkpoint, where it is expected and whether it is present."""
    from wbcap.weights import manifest, search_dirs

    for e in manifest().values():
        found = next((d / e.file for d in search_dirs() if (d / e.file).is_file()), None)
        click.echo(f"{e.name}{' (default)' if e.default else ''}: {e.description}")
        click.echo(f"  file:     {e.file}")
        click.echo(f"  present:  {found if found else 'no — run `wbcap weights import ' + e.name + ' FILE`'}")
        click.echo(f"  sha256:   {e.sha256 or 'not published (recorded at import)'}")
        click.echo(f"  source:   {e.source}")
        click.echo(f"  licence:  {e.licence}")
    click.echo("search order: --checkpoint FILE, $WBCAP_WEIGHTS, " + ", ".join(str(d) for d in search_dirs()))


@weights.command("import")
@click.argument("name")
@click.argument("file", type=click.Path())
def import_cmd(name, file):
    """Check that FILE is a valid NAME checkpoint and copy it into the user weights folder."""
    from wbcap.weights import import_checkpoint, validate_checkpoint_file
    from pathlib import Path

    summary = validate_checkpoint_file(name, Path(file))
    dest = import_checkpoint(name, Path(file))
    click.echo(f"imported {name}: {summary} -> {dest}")


@weights.command("verify")
def verify_cmd():
    """Check present checkpoints' sha256 against the published or recorded hashes."""
    from wbcap.weights import verify

    bad = False
    for r in verify():
        click.echo(f"{r.name:18s} {r.status:10s} {r.path or '-'}  {r.detail}")
        bad |= r.status == "mismatch"
    if bad:
        raise click.exceptions.Exit(1)

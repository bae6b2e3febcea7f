"""``wbcap convert``: the licensed releases' pickles, once, into the numpy files wbcap reads."""

from __future__ import annotations

import click

from wbcap.cli.common import NonEmptyPath


@click.command(name="convert")
@click.argument("files", nargs=-1, required=True, type=NonEmptyPath(dir_okay=False))
@click.option("--dest", type=NonEmptyPath(file_okay=False), default=None,
              help="Write the converted files into this existing folder (default: beside each pickle).")
@click.pass_context
def convert(ctx, files, dest):
    """Convert release pickles into the .npz/.npy files wbcap reads without --allow-pickle.

    FILES: MANO_RIGHT.pkl of the MANO release (for `wbcap train hand`: MANO_RIGHT.npz),
    SMPLX_to_J14.pkl, MANO_SMPLX_vertex_ids.pkl or smplx2smpl_deftrafo_setup.pkl (for `wbcap
    eval`). Only plain arrays are read from a pickle: one naming any other Python object is
    refused, never run. Prints each file written (not with `wbcap -q`).
    """
    from wbcap.cli.common import echo_result, is_quiet
    from wbcap.pickles import convert_release_pickles

    converted = convert_release_pickles(files, dest)  # (all or none: one refused, nothing is written)
    if not is_quiet(ctx):
        for file, written in zip(files, (w for _, w in converted)):
            echo_result(f"{file} -> {written}")

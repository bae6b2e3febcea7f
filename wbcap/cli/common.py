"""Options shared by several subcommands (click only: importing this loads no torch)."""

from __future__ import annotations

import click

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where the network runs: auto (CUDA if available), cpu, cuda or cuda:N.",
)
body_models_option = click.option(
    "--body-models",
    type=click.Path(),
    default=None,
    help="SMPL-X file or folder (default: $WBCAP_BODY_MODELS, then the user data folder; see `wbcap doctor`).",
)
gender_option = click.option(
    "--gender", type=click.Choice(["neutral", "male", "female"]), default="neutral", show_default=True,
    help="Which SMPL-X model to use (the released network was trained with the neutral one).",
)
allow_pickle_option = click.option(
    "--allow-pickle",
    is_flag=True,
    help="Also accept .pkl body models. Pickles can run code when loaded: only for files you trust.",
)
checkpoint_option = click.option(
    "--checkpoint",
    type=click.Path(),
    default=None,
    help="Network checkpoint (default: $WBCAP_WEIGHTS, then the user weights folder; see `wbcap weights list`).",
)
precision_option = click.option(
    "--precision",
    type=click.Choice(["exact", "fast", "bf16", "fp16", "fp32"]),
    default="exact",
    show_default=True,
    help="exact: float32, the reference numbers; fast: convolutions in bfloat16, linear layers, "
         "soft-argmax, rotations and SMPL-X in float32 (about 2x the speed on AVX512-BF16 CPUs; "
         "about 1 mm of mesh difference, see the README's performance section); bf16/fp16: "
         "whole-network autocast, for comparison only. fp32 means exact.",
)


def progress_display(ctx: click.Context, *columns):
    """A rich progress display on stderr for a subcommand, with ``columns``.

    Off with ``-q`` and when stderr is not a terminal (a log file or a pipe gets the log lines
    only, not bar redraws or the blank line a finished bar leaves), so an error stays one line.
    Returns ``(progress, console)``; use ``progress`` as a context manager.
    """
    from rich.console import Console
    from rich.progress import Progress

    root = ctx.find_root().obj or {}
    console = Console(stderr=True, soft_wrap=True)
    disabled = bool(root.get("quiet")) or not console.is_terminal
    return Progress(*columns, console=console, disable=disabled, transient=True), console

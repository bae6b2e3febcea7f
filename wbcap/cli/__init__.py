"""The ``wbcap`` command. Subcommands load lazily so ``wbcap --help`` imports neither torch nor av.

Every subcommand module only parses options, builds a config and calls one library function.
A :class:`~wbcap.errors.WbcapError` becomes one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

SUBCOMMANDS = {
    "image": ("wbcap.cli.image", "image", "Recover SMPL-X bodies of the people in images."),
    "run": ("wbcap.cli.run", "run", "Track and reconstruct every person in a video or image sequence."),
    "train": ("wbcap.cli.train", "train", "Train: body | hand | merge | finetune (the Hand4Whole recipe)."),
    "eval": ("wbcap.cli.eval", "eval_cmd", "Evaluate on EHF, 3DPW or Human3.6M with the standard protocols."),
    "bench": ("wbcap.cli.bench", "bench", "Time every stage, FLOPs and memory on this device."),
    "demo": ("wbcap.cli.demo", "demo", "Run the image pipeline on a bundled example (pipeline check)."),
    "weights": ("wbcap.cli.weights", "weights", "List, import and verify network checkpoints."),
    "doctor": ("wbcap.cli.doctor", "doctor", "Report what is installed and what is missing, with fixes."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attr, _ = SUBCOMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        from wbcap.errors import WbcapError

        try:
            return super().invoke(ctx)
        except WbcapError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    try:
        from rich.console import Console
        from rich.logging import RichHandler

        # Logs go to stderr: stdout stays clean for results (e.g. `wbcap bench --json > out.json`).
        handler: logging.Handler = RichHandler(
            console=Console(stderr=True), show_time=False, show_path=False, markup=False
        )
        fmt = "%(message)s"
    except ImportError:  # pragma: no cover - rich is a dependency
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(levelname)s %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)
    if verbose < 2:
        for noisy in ("PIL", "matplotlib", "trimesh", "OpenGL"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wbcap")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """wbcap: whole-body motion capture (SMPL-X body, hands and face) from images.

    Start with `wbcap demo`, then `wbcap doctor` to see which files are missing.
    """
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    _setup_logging(verbose, quiet)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="wbcap")

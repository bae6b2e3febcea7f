"""``wbcap train body | hand | merge | finetune``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

from wbcap.cli.common import IntRange, NonEmptyPath, check_device
from wbcap.console import printable

STAGE_HELP = "Settings: the stage's built-in recipe, then --config TOML, then these flags."

#: What each stage's --datasets and --data-root take (wbcap.train.stages.STAGE_DATASETS, which a
#: test keeps equal to these; spelled out here so that `--help` imports no training code).
DATASETS_HELP = {
    "body": "Comma-separated training sets: Human36M,MSCOCO,MPII (the default) or some of them, AGORA, or synthetic (no data "
            "needed).",
    "hand": "Comma-separated training sets: FreiHAND,InterHand26M,MSCOCO (the default; MSCOCO here means COCO-WholeBody's "
            "hand crops with MANO NeuralAnnot fits) or some of them.",
    "finetune": "Comma-separated training sets: Human36M,MSCOCO,MPII (the default) or some of them, AGORA (the recipe "
                "--config agora: upstream's AGORA fine-tuning), or synthetic (no data needed).",
}
DATA_ROOT_HELP = {
    "body": "Folder holding Human36M/, MSCOCO/ and MPII/ (and AGORA/ for --datasets AGORA).",
    "hand": "Folder holding FreiHAND/, InterHand26M/ and MSCOCO/ (COCO-WholeBody, with MSCOCO_train_MANO_NeuralAnnot.json).",
    "finetune": "Folder holding Human36M/, MSCOCO/ and MPII/ (AGORA/ for the AGORA recipe).",
}
INIT_HELP = {
    "body": "Start from this whole-body checkpoint.",
    "hand": "Not for this stage (the hand model starts from --imagenet-weights or at random).",
    "finetune": "The whole-body checkpoint to fine-tune (required): the merged one of `wbcap train merge` (the AGORA "
                "recipe: the finetune stage's last snapshot).",
}

BODY_MODELS_HELP = {
    "body": "SMPL-X file or folder.",
    "hand": "Folder holding mano/MANO_RIGHT.npz, the MANO hand model of the MANO loss terms (default: where SMPL-X is "
            "looked for).",
    "finetune": "SMPL-X file or folder.",
}

POSE_BACKBONE_HELP = {
    "body": "SimpleBaseline's COCO 2D-pose ResNet (pose_resnet_50_256x192.pth.tar) to start the body backbone from, "
            "as upstream's first stage (after --imagenet-weights).",
    "hand": "Not for this stage (the body stage's start).",
    "finetune": "Not for this stage (it starts from --init; the body stage's start).",
}


#: Environment variables torchrun (torch.distributed.run) sets in the processes it starts.
_LAUNCHER_VARIABLES = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK", "GROUP_RANK")


def _refuse_an_outer_launcher() -> None:
    """``wbcap train`` started by torchrun: one line at once. Each process took the command for
    its own, so the second found -o held by the first and the first waited for it, 30 s, and left
    its settings file behind (a training trial). wbcap starts its worker processes itself."""
    import os

    from wbcap.errors import InputError

    found = [name for name in _LAUNCHER_VARIABLES if name in os.environ]
    if found:
        raise InputError(f"wbcap train was started by torchrun or another launcher ({found[0]} is set): run it "
                         "directly; it starts one process per GPU itself (--gpus 0,1,...; several machines: --nnodes, "
                         "--node-rank, --master-addr on each)")


@contextlib.contextmanager
def _resume_hint(out: str, resume: bool, overwrite: bool) -> Iterator[None]:
    """A run stopped (Ctrl-C, SIGTERM, SIGHUP) or out of disk space after it wrote a snapshot
    (or, resumed, with one) says how to go on from it (it said only "interrupted": a training
    trial)."""
    from pathlib import Path

    from wbcap.cli import DISK_FULL
    from wbcap.train.trainer import latest_checkpoint, settled_run_folder

    def stamp(folder: Path) -> tuple[str, int] | None:
        newest = latest_checkpoint(folder)
        try:
            return None if newest is None else (newest.name, newest.stat().st_mtime_ns)
        except OSError:
            return None

    # (an --overwrite stopped before its first snapshot puts the previous run back, also one an earlier
    # --overwrite killed left set aside: no hint to resume that; the rename keeps the file's time)
    before = stamp(settled_run_folder(Path(out).expanduser()))

    def hint() -> str | None:
        now = stamp(Path(out).expanduser())
        if now is None or (not resume and now == before):
            return None
        newest = Path(now[0])
        add = ("run the same command again" if resume else "add --resume to the same command in place of --overwrite"
               if overwrite else "add --resume to the same command")
        return f"{add} to continue from {newest.name}"

    try:
        yield
    except OSError as exc:
        then = hint() if exc.errno in DISK_FULL else None
        if then is not None:
            exc.wbcap_next_step = f"then {then}"  # type: ignore[attr-defined]
        raise
    except KeyboardInterrupt:
        then = hint()
        if then is not None:
            click.echo(printable(f"the snapshots so far are kept in {out}: {then}"), err=True)
        raise


def _stage_command(stage: str, doc: str):
    @click.command(name=stage, help=doc + "\n\n" + STAGE_HELP)
    @click.option("--config", "config_file", type=NonEmptyPath(), default=None, help="TOML recipe file, or the name of one wbcap holds: body, hand, finetune (the stages' own "
                       "values, to copy and edit: wbcap/train/configs/) and agora.")
    @click.option("--data-root", type=NonEmptyPath(file_okay=False), default=None, help=DATA_ROOT_HELP[stage])
    @click.option("--datasets", default=None, help=DATASETS_HELP[stage])
    @click.option("-o", "--out", type=NonEmptyPath(file_okay=False), required=True,
                  help="Run folder (snapshots, scalars): a new or empty one, unless --resume or --overwrite.")
    @click.option("--lr", type=float, default=None, help="Base learning rate.")
    @click.option("--epochs", type=IntRange(min=1), default=None, help="Number of epochs.")
    @click.option("--batch-size", type=IntRange(min=1), default=None, help="Batch size per GPU/process.")
    @click.option("--workers", "num_workers", type=IntRange(min=0), default=None,
                  help="Data-loading workers per process (default: the recipe's 4, at most the CPUs available).")
    @click.option("--max-steps", "max_steps_per_epoch", type=IntRange(min=1), default=None, help="Stop each epoch after this many steps.")
    @click.option("--seed", type=int, default=None, help="Random seed.")
    @click.option("--init", "init_checkpoint", type=NonEmptyPath(dir_okay=False), default=None, help=INIT_HELP[stage])
    @click.option("--imagenet-weights", type=NonEmptyPath(file_okay=False), default=None,
                  help="Folder with torchvision resnet18/50 ImageNet .pth files to initialise the backbones.")
    @click.option("--pose-backbone", type=NonEmptyPath(dir_okay=False), default=None, help=POSE_BACKBONE_HELP[stage])
    @click.option("--gpus", default=None, help="GPU ids for this node, e.g. 0,1,2,3 (several -> torchrun, one process per GPU).")
    @click.option("--nnodes", type=IntRange(min=1), default=1, show_default=True, help="Number of machines.")
    @click.option("--node-rank", type=IntRange(min=0), default=0, show_default=True, help="This machine's rank.")
    @click.option("--master-addr", default="127.0.0.1", show_default=True, help="Address of node 0.")
    @click.option("--master-port", type=int, default=29500, show_default=True, help="Port on node 0.")
    @click.option("--resume", is_flag=True,
                  help="Continue from the newest snapshot in OUT, with the run's recorded settings as the defaults.")
    @click.option("--overwrite", is_flag=True, help="Replace a previous training run in OUT.")
    @click.option("--keep-last", type=IntRange(min=1), default=None, help="Keep only the newest N snapshots (default: all).")
    @click.option("--body-models", type=NonEmptyPath(), default=None, help=BODY_MODELS_HELP[stage])
    @click.option("--device", default="auto", show_default=True, callback=check_device,
                  help="auto, cpu, cuda (single process).")
    @click.pass_context
    def command(ctx, config_file, data_root, datasets, out, gpus, nnodes, node_rank, master_addr, master_port, resume,
                overwrite, keep_last, body_models, device, **overrides):
        from wbcap.cli.common import echo_result, is_quiet
        from wbcap.train.launch import run_stage

        if resume and overwrite:
            raise click.UsageError("use either --resume or --overwrite")
        _refuse_an_outer_launcher()
        if datasets:
            overrides["datasets"] = tuple(x.strip() for x in datasets.split(",") if x.strip())
        # (SIGTERM and SIGHUP clean up as Ctrl-C does, see wbcap.cli: a run stopped before its first
        # snapshot leaves -o as it found it)
        with _resume_hint(out, resume, overwrite):
            run_stage(stage, config_file, overrides, out=out, data_root=data_root, body_models=body_models,
                      device=device, resume=resume, overwrite=overwrite, keep_last=keep_last, gpus=gpus, nnodes=nnodes,
                      node_rank=node_rank, master_addr=master_addr, master_port=master_port, quiet=is_quiet(ctx))
        if node_rank == 0 and not is_quiet(ctx):  # (the result, on stdout, as the other commands print theirs)
            from pathlib import Path

            from wbcap.train.trainer import latest_checkpoint

            newest = latest_checkpoint(Path(out).expanduser())
            if newest is not None:
                echo_result(f"trained -> {newest}")

    if stage == "hand":
        command = click.option(
            "--no-mano-losses", "mano_losses", flag_value=False, default=None,
            help="Train without the loss terms upstream computes through the MANO hand model (mano_joint_img, "
                 "joint_proj, joint_cam, mano_joint_cam), which need MANO_RIGHT.npz: `wbcap convert MANO_RIGHT.pkl` "
                 "converts the release's file (https://mano.is.tue.mpg.de), looked for in --body-models/mano/.")(command)
    return command


@click.group()
def train():
    """The Hand4Whole recipe: body -> hand -> merge -> finetune (--gpus: one process per GPU, started by wbcap itself; not under torchrun)."""


train.add_command(_stage_command("body", "Train the whole-body model (Human3.6M + COCO-WholeBody + MPII)."))
train.add_command(_stage_command("hand", "Train the hand-only model (FreiHAND + InterHand2.6M + COCO-WholeBody hands)."))
train.add_command(_stage_command("finetune", "Fine-tune the merged whole-body model (lr 1e-5); needs --init. "
                                              "--config agora: upstream's fine-tuning on AGORA."))


@train.command()
@click.option("--body", "body_ckpt", type=NonEmptyPath(dir_okay=False), required=True, help="Whole-body checkpoint.")
@click.option("--hand", "hand_ckpt", type=NonEmptyPath(dir_okay=False), default=None,
              help="Hand-only checkpoint (default: the released one, hand4whole_hand, where `wbcap weights list` "
                   "shows it installed).")
@click.option("-o", "--out", type=NonEmptyPath(dir_okay=False), required=True,
              help="Merged checkpoint to write (a new file, unless --overwrite).")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT file.")
@click.pass_context
def merge(ctx, body_ckpt, hand_ckpt, out, overwrite):
    """Copy the hand model's backbone into the whole-body model; re-initialise the hand heads.
    Prints the merged file's path (not with `wbcap -q`)."""
    from wbcap.cli.common import echo_result, is_quiet
    from wbcap.train.merge import merge_hand_into_body

    path = merge_hand_into_body(body_ckpt, hand_ckpt, out, overwrite=overwrite)
    if not is_quiet(ctx):
        echo_result(f"merged -> {path}")

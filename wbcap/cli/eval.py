"""``wbcap eval``: score a checkpoint on EHF, 3DPW, Human3.6M or AGORA's validation set (Hand4Whole's protocols)."""

from __future__ import annotations

import click

from wbcap.cli.common import (
    IntRange,
    NonEmptyPath,
    allow_pickle_option,
    body_models_option,
    checkpoint_option,
    device_option,
    is_quiet,
    precision_option,
    progress_display,
)

_DATASET_CHOICES = ["EHF", "PW3D", "3DPW", "Human36M", "H36M", "AGORA"]


@click.command(name="eval")
@click.option(
    "--dataset",
    "dataset",
    type=click.Choice(_DATASET_CHOICES, case_sensitive=False),
    required=True,
    help="EHF (all frames), PW3D/3DPW (test split), Human36M/H36M (test: S9, S11, every 64th frame, camera 4) or AGORA "
         "(validation split: upstream's test_set 'val'; --resolution picks its images).",
)
@click.option(
    "--data-root",
    type=NonEmptyPath(file_okay=False),
    required=True,
    help="Folder holding EHF/, PW3D/, Human36M/ or AGORA/ in the upstream Hand4Whole layout.",
)
@checkpoint_option
@body_models_option
@allow_pickle_option
@device_option
@precision_option
@click.option("--batch-size", type=IntRange(min=1), default=8, show_default=True, help="Crops per network call.")
@click.option(
    "--workers",
    type=IntRange(min=0),
    default=0,
    show_default=True,
    help="DataLoader worker processes (Linux: fork).",
)
@click.option("--limit", type=IntRange(min=1), default=None, help="Evaluate only the first N samples.")
@click.option("--predictions", type=NonEmptyPath(dir_okay=True, file_okay=False), default=None,
              help="AGORA only: also write AGORA's prediction files (one <image>_personId_<k>.pkl per person, the "
                   "format of its evaluation code and test server) into this new folder; zip it as predictions/.")
@click.option("--split", type=click.Choice(["validation", "test"]), default=None,
              help="AGORA only: its validation split (the default: metrics) or its test split (no ground truth: "
                   "the people of AGORA/data/AGORA_test_bbox.json, for --predictions, which it needs).")
@click.option("--resolution", type=click.Choice(["1280x720", "3840x2160"]), default=None,
              help="AGORA only: its 1280x720 images (the default) or upstream's person crops of the 3840x2160 images "
                   "(tool/AGORA/crop_and_resize_4k_images.py; upstream's AGORA.py default).")
@click.option(
    "--out",
    type=NonEmptyPath(dir_okay=False),
    default=None,
    help="Write mean and per-sample errors (mm) to this JSON file.",
)
@click.pass_context
def eval_cmd(
    ctx, dataset, data_root, checkpoint, body_models, allow_pickle, device, precision, batch_size, workers, limit,
    resolution, predictions, split, out
):
    """Evaluate a checkpoint with the standard protocols; prints every metric in mm.

    Extra files are looked for beside the SMPL-X model (--body-models, $WBCAP_BODY_MODELS, the
    user data folder): SMPLX_to_J14.npy, MANO_SMPLX_vertex_ids.npz and SMPL-X__FLAME_vertex_ids.npy
    (EHF, AGORA); J_regressor_h36m_smplx.npy (Human36M, 3DPW); the SMPL model and J_regressor_h36m_smpl.npy
    (3DPW). The two H36M regressors are looked for first in DATA/Human36M/, where upstream keeps them.
    The pickled extra files of the releases need --allow-pickle or, once, `wbcap convert FILE.pkl`;
    a pickled SMPL model needs --allow-pickle. The SMPL-X model must be the neutral one (upstream's).

    --out records what makes the numbers: the checkpoint's SHA-256, the device, the batch size and,
    on a CPU, each part's inference form (exact's errors move by ~1e-4 mm between forms and batch
    sizes; WBCAP_CPU_STRATEGY=fused fixes the form).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from wbcap.errors import setting
    from wbcap.eval.evaluate import EvalJob, canonical_dataset, run_eval

    job = EvalJob(dataset=dataset, data_root=data_root, checkpoint=checkpoint, body_models=body_models,
                  allow_pickle=allow_pickle, device=device, precision=precision, batch_size=batch_size,
                  num_workers=workers, limit=limit, resolution=resolution, predictions=predictions, split=split, out=out)
    name = canonical_dataset(dataset)
    display, err = progress_display(ctx, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn())
    with display as progress:
        task = progress.add_task(f"eval {name}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result, path = run_eval(job, progress=report)

    count = (f"{result.num_samples} of {result.split_samples} samples ({setting('limit')} {result.limit})"
             if result.partial else f"{result.num_samples} sample{'' if result.num_samples == 1 else 's'}")
    table = Table(title=f"{name}: {count}")
    table.add_column("metric")
    table.add_column("mm", justify="right")
    if result.left_out:  # (a mean over fewer samples than the title's: evaluate warned)
        table.add_column("samples", justify="right")
    for key, value in result.metrics.items():
        counted = [str(result.num_samples - result.left_out.get(key, 0))] if result.left_out else []
        table.add_row(key, f"{value:.2f}", *counted)
    Console(soft_wrap=True).print(table)
    if path is not None and not is_quiet(ctx):  # (-q: warnings and errors only; the table is the result, on stdout)
        err.print(f"per-sample errors -> {path}", markup=False, highlight=False, soft_wrap=True)
    if predictions is not None and not is_quiet(ctx):
        from pathlib import Path

        err.print(f"AGORA prediction files ({result.num_samples}) -> {Path(predictions).expanduser()}/ (zip them in a "
                  f"predictions/ folder for AGORA's evaluation)", markup=False, highlight=False, soft_wrap=True)

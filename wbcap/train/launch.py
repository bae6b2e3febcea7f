"""Start a training stage: in this process, or re-launched under ``torchrun`` for several GPUs
or nodes (one process per GPU; ``python -m wbcap.train.launch RUN.json`` is what each runs)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from wbcap.errors import InputError, setting

log = logging.getLogger(__name__)


def run_stage(stage: str, config_file, overrides: dict, *, out: str, data_root, body_models, device, resume: bool,
              keep_last: int | None = None, gpus: str | None, nnodes: int, node_rank: int, master_addr: str, master_port: int) -> None:
    """Resolve the stage config and train, directly or through torchrun."""
    from wbcap.train.stages import load_stage
    from wbcap.train.trainer import RunConfig, train

    cfg = load_stage(stage, config_file, **overrides)
    run = RunConfig(out=out, data_root=data_root, body_models=body_models, device=device, resume=resume, keep_last=keep_last)
    gpu_ids = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else []
    if len(gpu_ids) <= 1 and nnodes == 1:
        if gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids[0]
        with training_progress(cfg) as on_step:
            train(cfg, run, on_step=on_step)
        return
    if not gpu_ids:
        raise InputError(f"multi-node training needs {setting('gpus')} (the GPU ids of this node)")
    Path(out).mkdir(parents=True, exist_ok=True)
    spec = Path(out) / f"launch_node{node_rank}.json"
    spec.write_text(json.dumps({"stage": cfg.to_dict(), "run": asdict(run)}))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={len(gpu_ids)}", f"--nnodes={nnodes}",
           f"--node_rank={node_rank}", f"--master_addr={master_addr}", f"--master_port={master_port}",
           "-m", "wbcap.train.launch", str(spec)]
    log.info("launching: %s", " ".join(cmd))
    rc = subprocess.call(cmd, env=env)
    if rc != 0:
        raise InputError(f"torchrun exited with status {rc}; see the log above")


@contextlib.contextmanager
def training_progress(cfg, disable: bool = False):
    """A rich progress bar over all steps of the stage (loss and steps/s); yields ``on_step``."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("step {task.completed:.0f}"),
                  TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), console=Console(stderr=True),
                  disable=disable, transient=True) as bar:
        task = bar.add_task("train", total=None, epoch=0, loss="-")

        def on_step(epoch: int, step: int, loss: float) -> None:
            bar.update(task, advance=1, epoch=f"{epoch + 1}/{cfg.epochs}", loss=f"{loss:.4f}")

        yield on_step


def main(argv: list[str] | None = None) -> None:
    """Entry point of each torchrun worker: read the run spec and train."""
    from wbcap.train.stages import StageConfig
    from wbcap.train.trainer import RunConfig, train

    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    logging.basicConfig(level=logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)
    cfg = StageConfig.from_dict(spec["stage"])
    with training_progress(cfg, disable=os.environ.get("RANK", "0") != "0") as on_step:
        train(cfg, RunConfig(**spec["run"]), on_step=on_step)


if __name__ == "__main__":
    main()

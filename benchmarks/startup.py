"""Start-up benchmark: `wbcap --help`, imports, model build + load, and the memory it takes.

    python benchmarks/startup.py [--precision exact|fast] [--repeats 5] [--json out.json]

Writes a checkpoint in the released file's layout (full-size network, deterministic values, like
the tests' fixture) and a synthetic SMPL-X model of the real size to a temporary folder first
(not timed), then measures, each in a fresh process:

* ``help_s``: wall time of ``wbcap --help`` (the installed console script; median of ``--repeats``);
* ``import_s``: importing torch and the pipeline;
* ``load_s``: building the network from the checkpoint (meta device, memory-mapped tensors), the
  SMPL-X layer from its .npz, and the Pipeline (conversion to the inference form: BatchNorm
  folded, weights packed), i.e. everything before the first frame;
* ``start_rss_mb``: the process's peak RSS at that point; ``rss_after_start_mb``: its RSS then
  (Linux), i.e. what the loaded pipeline keeps.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    import torch

    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.pipeline import Pipeline

    t1 = time.perf_counter()
    pipe = Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path=args.body_models), checkpoint=args.checkpoint,
                                               device="cpu", precision=args.precision))
    t2 = time.perf_counter()
    rss_now = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    print(json.dumps({"rss_after_start_mb": rss_now,
        "import_s": t1 - t0, "load_s": t2 - t1, "start_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "precision": pipe.precision.value, "threads": torch.get_num_threads(), "torch": torch.__version__,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="exact", choices=["exact", "fast"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--body-models", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    from wbcap.testing.checkpoints import write_official_checkpoint
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    script = Path(sys.executable).with_name("wbcap")
    if not script.is_file():
        sys.exit(f"error: {script} not found; install wbcap (pip install -e .) in this Python's environment")
    helps = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        subprocess.run([str(script), "--help"], check=True, capture_output=True)
        helps.append(time.perf_counter() - t)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_official_checkpoint(Path(tmp) / "snapshot_6.pth.tar", seed=0)
        body = write_synthetic_smplx(Path(tmp) / "body")
        for _ in range(args.repeats):
            res = subprocess.run([sys.executable, __file__, "--child", "--checkpoint", str(ckpt), "--body-models", str(body),
                                  "--precision", args.precision], capture_output=True, text=True)
            if res.returncode != 0:
                sys.exit(f"error: start-up child failed:\n{res.stderr[-2000:]}")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(r[k] for r in rows) for k in ("import_s", "load_s", "start_rss_mb", "rss_after_start_mb")}
    report = {"help_s": statistics.median(helps), **med, "precision": args.precision, "repeats": args.repeats,
              "torch": rows[0]["torch"], "threads": rows[0]["threads"], "runs": rows}
    print(f"wbcap --help {report['help_s']:.2f} s; import torch + wbcap {med['import_s']:.2f} s; build + load "
          f"(full-size network from an official-layout checkpoint, SMPL-X, {args.precision} inference form) "
          f"{med['load_s']:.2f} s; peak RSS at start {med['start_rss_mb']:.0f} MB, RSS after start "
          f"{med['rss_after_start_mb']:.0f} MB (medians of {args.repeats}, "
          f"torch {report['torch']}, {report['threads']} threads)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

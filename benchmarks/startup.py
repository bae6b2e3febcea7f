"""Start-up benchmark: `wbcap --help`, imports, model build + load, the memory it takes, and one
photo end to end (`wbcap image`, rendering included) against the regressor's per-crop time.

    python benchmarks/startup.py [--precision exact|fast] [--repeats 5] [--image-repeats 3]
        [--image PHOTO] [--detector-model YOLOX.onnx] [--no-image] [--json out.json]

Writes a checkpoint in the released file's layout (full-size network, deterministic values, like
the tests' fixture) and a synthetic SMPL-X model of the real size to a temporary folder first
(not timed), then measures, each in a fresh process:

* ``help_s``: wall time of ``wbcap --help`` (the installed console script; median of ``--repeats``);
* ``import_s``: importing torch and the pipeline;
* ``load_s``: building the network from the checkpoint (meta device, memory-mapped tensors), the
  SMPL-X layer from its .npz, and the Pipeline (conversion to the inference form: BatchNorm
  folded, weights packed), i.e. everything before the first frame (built for many calls, as
  `wbcap run` builds it; `wbcap image` of a few photos builds for a few calls,
  :meth:`~wbcap.model.strategy.PartChoice.for_few_calls`: the stamped child's ``load`` below);
* ``start_rss_mb``: the process's peak RSS at that point; ``rss_after_start_mb``: its RSS then
  (Linux), i.e. what the loaded pipeline keeps.

One photo (unless ``--no-image``), ``--image-repeats`` times each, alternating:

* ``image_s``: wall time of the installed ``wbcap image PHOTO -o OUT --max-people 1 --device cpu
  --precision P`` with that checkpoint and SMPL-X model, rendering included (the two JPEGs), warm
  disk cache, median over fresh processes after ``--image-warmup`` untimed runs (which also
  compile the bytecode, kept in the temporary folder through ``PYTHONPYCACHEPREFIX`` as an
  installed package keeps it, and on a machine seen for the first time find and cache its
  OpenGL platform); OUT is replaced by each run, as a user's rerun would. PHOTO: ``--image``, default
  ``../shared/media/messi5.jpg`` beside the checkout, else the package's example photo; detector:
  YOLOX from ``--detector-model`` (default ``../shared/models/yolox_nano.onnx`` when present),
  else ``--detector auto`` offline.
* the same work in a child that calls :func:`wbcap.image_app.run_images` (what the command runs,
  without click and the progress display, ending the process as the console script does) and
  stamps each stage: ``python`` (interpreter start and exit: the parent's wall time minus the
  child's own), ``imports`` (wbcap, the render process started, torch), then per stage of
  :data:`wbcap.image_app.STAGES`: ``read`` (the photo, before the model), ``load`` (the
  detector's ONNX session, then, after ``detect``, :meth:`Pipeline.from_config`), ``detect``, ``regress`` (crop, network at batch 1
  for the first time in the process, SMPL-X, results to numpy), ``render`` (both JPEGs: waiting
  for the render process, rendering, encoding) and ``write`` (OBJ, JSON, files moved into place);
* ``per_crop_s``: in that child afterwards (with a pipeline built again), the bench's regressor time (``wbcap bench``'s
  ``regressor`` stage: network + SMPL-X on a device tensor of one crop, median of 5 after 2
  warm-ups), so ``image_over_crop`` = ``image_s`` / ``per_crop_s`` says how many regressor calls
  one photo costs on this machine, whatever its speed.

Every figure is a median over the repeats; ``runs`` keeps each child's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
#: Breakdown of one photo, in the order the work happens.
IMAGE_PARTS = ("python", "imports", "read", "load", "detect", "regress", "render", "write")
_STAGE_PART = {"imports": "imports", "loading detector": "load", "loading model": "load", "reading": "read",
               "detecting": "detect", "regressing": "regress", "rendering": "render", "writing": "write"}


def child(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    import torch

    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.model.strategy import cpu_model
    from wbcap.pipeline import Pipeline

    t1 = time.perf_counter()
    pipe = Pipeline.from_config(PipelineConfig(body=BodyModelConfig(path=args.body_models), checkpoint=args.checkpoint,
                                               device="cpu", precision=args.precision))
    t2 = time.perf_counter()
    rss_now = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    strategy = getattr(getattr(pipe.regressor, "net", None), "cpu_strategy", None)
    print(json.dumps({"rss_after_start_mb": rss_now,
        "import_s": t1 - t0, "load_s": t2 - t1, "start_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "precision": pipe.precision.value, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": cpu_model(),
        # (a load on a machine seen for the first time measures the CPU strategy: selection_s of it)
        "strategy_source": getattr(strategy, "source", None), "strategy_selection_s": getattr(strategy, "selection_s", 0.0),
    }))


def image_child(args: argparse.Namespace) -> None:
    """One photo through run_images with every stage stamped, then the per-crop regressor time."""
    t0 = time.perf_counter()
    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.image_app import ImageJob, run_images

    cfg = PipelineConfig(body=BodyModelConfig(path=args.body_models), checkpoint=args.checkpoint, device="cpu",
                         precision=args.precision)
    job = ImageJob(paths=(args.image,), out=args.out, pipeline=cfg, max_people=1, offline=True,
                   detector_model=args.detector_model)
    stamps: list[tuple[str, float]] = [("imports", t0)]
    # As the command: run_images starts the render process, reads the photo, imports torch, builds
    # the detector, detects, builds the pipeline ("loading model"), then regresses, renders, writes.
    results = run_images(job, on_stage=lambda name, _path: stamps.append((name, time.perf_counter())))
    t3 = time.perf_counter()
    if not results or results[0].error or results[0].people != 1:
        sys.exit(f"error: the photo gave {results}")
    parts: dict[str, float] = {}
    for (name, start), (_, end) in zip(stamps, [*stamps[1:], ("end", t3)]):
        parts[_STAGE_PART[name]] = parts.get(_STAGE_PART[name], 0.0) + end - start
    from wbcap.pipeline import Pipeline

    per_crop = _per_crop_s(Pipeline.from_config(cfg), args.image)
    print(json.dumps({"parts": parts, "child_s": t3 - t0, "per_crop_s": per_crop,
                      "per_crop_total_s": time.perf_counter() - t3}))
    from wbcap.cli import exit_without_finalising

    exit_without_finalising(0)  # as the console script ends


def _per_crop_s(pipe, image_path: str) -> float:
    """``wbcap bench``'s regressor stage on one crop of the photo: median of 5 after 2 warm-ups."""
    import torch

    from wbcap.crop.bbox import crops_to_tensor
    from wbcap.detect.base import Detection
    from wbcap.io.images import load_image

    image = load_image(Path(image_path))
    h, w = image.shape[:2]
    patch = pipe.crop(image, [Detection((0.0, 0.0, float(w), float(h)), 1.0)])[0].patch
    x = crops_to_tensor([patch]).to(pipe.device).contiguous(memory_format=pipe.memory_format)
    times = []
    for i in range(7):
        t = time.perf_counter()
        with torch.inference_mode(), pipe.inference_context():
            pipe.regressor(x)
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _default_image() -> str:
    shared = SHARED / "media" / "messi5.jpg"
    if shared.is_file():
        return str(shared)
    from importlib import resources

    return str(resources.files("wbcap.testing").joinpath("data/example.jpg"))


def _image_runs(args: argparse.Namespace, script: Path, ckpt: Path, body: Path, tmp: str) -> dict:
    """``--image-repeats`` pairs of (the CLI command, the stamped child), alternating."""
    detector_model = args.detector_model
    if detector_model is None and (SHARED / "models" / "yolox_nano.onnx").is_file():
        detector_model = str(SHARED / "models" / "yolox_nano.onnx")
    out = str(Path(tmp) / "out")
    cli = [str(script), "-q", "image", args.image, "-o", out, "--max-people", "1", "--checkpoint", str(ckpt),
           "--body-models", str(body), "--device", "cpu", "--precision", args.precision, "--offline"]
    cli += ["--detector-model", detector_model] if detector_model else []
    stamped = [sys.executable, __file__, "--image-child", "--checkpoint", str(ckpt), "--body-models", str(body),
               "--precision", args.precision, "--image", args.image, "--out", out]
    stamped += ["--detector-model", detector_model] if detector_model else []
    # Bytecode cached as an installed package has it (pip compiles on install): a folder of the
    # temporary one, filled by the untimed warm-up run, which also warms the disk cache and, on a
    # machine seen for the first time, finds the OpenGL platform (cached per machine).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(WBCAP_OFFLINE="1", PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"))
    for _ in range(args.image_warmup):
        res = subprocess.run(cli, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            sys.exit(f"error: wbcap image failed:\n{res.stderr[-2000:]}")
    walls, rows = [], []
    for _ in range(args.image_repeats):
        t = time.perf_counter()
        res = subprocess.run(cli, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - t)
        if res.returncode != 0:
            sys.exit(f"error: wbcap image failed:\n{res.stderr[-2000:]}")
        t = time.perf_counter()
        res = subprocess.run(stamped, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            sys.exit(f"error: image child failed:\n{res.stderr[-2000:]}")
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["parts"]["python"] = wall - row["child_s"] - row["per_crop_total_s"]  # interpreter start-up and exit
        row["wall_s"] = wall - row["per_crop_total_s"]  # the photo's share of the child's wall time
        rows.append(row)
    image_s = statistics.median(walls)
    per_crop = statistics.median(r["per_crop_s"] for r in rows)
    parts = {p: statistics.median(r["parts"].get(p, 0.0) for r in rows) for p in IMAGE_PARTS}
    return {"image_s": image_s, "image_runs_s": walls, "per_crop_s": per_crop, "image_over_crop": image_s / per_crop,
            "image_parts_s": parts, "image_child_wall_s": statistics.median(r["wall_s"] for r in rows),
            "image": args.image, "detector_model": detector_model, "image_repeats": args.image_repeats,
            "image_child_runs": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="exact", choices=["exact", "fast"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--image-repeats", type=int, default=3, help="fresh `wbcap image` processes (and as many stamped children)")
    ap.add_argument("--image-warmup", type=int, default=1, help="untimed `wbcap image` runs first")
    ap.add_argument("--image", default=None, help="photo of one person (default: ../shared/media/messi5.jpg, else the example photo)")
    ap.add_argument("--detector-model", default=None, help="YOLOX ONNX file (default: ../shared/models/yolox_nano.onnx if present)")
    ap.add_argument("--no-image", action="store_true", help="skip the one-photo measurement")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--image-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--body-models", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeats < 1 or args.image_repeats < 1 or args.image_warmup < 0:
        ap.error("--repeats and --image-repeats must be at least 1 and --image-warmup at least 0 "
                 "(--no-image skips the photo)")
    if args.child:
        child(args)
        return
    if args.image_child:
        image_child(args)
        return
    from wbcap.testing.checkpoints import write_official_checkpoint
    from wbcap.testing.synthetic_body import write_synthetic_smplx

    script = Path(sys.executable).with_name("wbcap")
    if not script.is_file():
        sys.exit(f"error: {script} not found; install wbcap (pip install -e .) in this Python's environment")
    args.image = str(Path(args.image).expanduser().resolve()) if args.image else _default_image()
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
        image = None if args.no_image else _image_runs(args, script, ckpt, body, tmp)
    med = {k: statistics.median(r[k] for r in rows) for k in ("import_s", "load_s", "start_rss_mb", "rss_after_start_mb")}
    report = {"help_s": statistics.median(helps), **med, "precision": args.precision, "repeats": args.repeats,
              "torch": rows[0]["torch"], "threads": rows[0]["threads"], "cpu": rows[0]["cpu"], "runs": rows, **(image or {})}
    print(f"CPU {report['cpu']}")  # (the README keys its figures on the CPU: a performance audit found none printed)
    print(f"wbcap --help {report['help_s']:.2f} s; import torch + wbcap {med['import_s']:.2f} s; build + load "
          f"(full-size network from an official-layout checkpoint, SMPL-X, {args.precision} inference form) "
          f"{med['load_s']:.2f} s; peak RSS at start {med['start_rss_mb']:.0f} MB, RSS after start "
          f"{med['rss_after_start_mb']:.0f} MB (medians of {args.repeats}, "
          f"torch {report['torch']}, {report['threads']} threads)")
    measured = [r for r in rows if "measured" in (r.get("strategy_source") or "")]
    if measured:
        print(f"  ({len(measured)} of those loads measured the CPU inference strategy for this machine, "
              f"{max(r['strategy_selection_s'] for r in measured):.1f} s at most, once per machine and wbcap; "
              "the others read it from the user cache)")
    if image is not None:
        parts = ", ".join(f"{p} {s:.2f}" for p, s in image["image_parts_s"].items())
        print(f"wbcap image, one person, rendering included: {image['image_s']:.2f} s wall = "
              f"{image['image_over_crop']:.1f} x the regressor's per-crop time ({image['per_crop_s']:.3f} s, batch 1) "
              f"(median of {args.image_repeats}: {', '.join(f'{s:.2f}' for s in image['image_runs_s'])} s; "
              f"{Path(args.image).name}, detector {'YOLOX ' + Path(image['detector_model']).name if image['detector_model'] else 'auto'})")
        print(f"  break-down (s, stamped child, {image['image_child_wall_s']:.2f} s wall): {parts}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()

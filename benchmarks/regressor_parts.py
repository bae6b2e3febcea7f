"""Where one regressor call's time goes: milliseconds per crop in each part of the network.

    python benchmarks/regressor_parts.py [--precision exact|fast] [--batch-size 8] [--calls 10]
        [--json out.json]

The full-size network with random weights (``wbcap bench --config full``'s, in the inference form
this machine's strategy chooses) and a synthetic SMPL-X model of the real size; ``--batch-size``
random 512x384 crops. After three untimed calls, ``--calls`` calls are timed with a forward
pre-hook and hook on each top-level part of the network (``backbone`` is the body ResNet,
``hand_roi_net`` / ``face_roi_net`` are the crops plus their ResNets, shown apart as
``.backbone``), on SMPL-X (``smplx_body``) and on the whole regressor (``TOTAL``); the parts
do not overlap except those ``.backbone`` rows, and what TOTAL has beyond their sum is the
glue between them (rotation conversions, box restoring, projection). Hooks cost a few
microseconds each, so the figures are for finding the large items, not for ratios; `wbcap
bench` times whole calls.
"""

from __future__ import annotations

import argparse
import collections
import json
import time


def main() -> None:
    import numpy as np
    import torch

    from wbcap.bench.options import BenchOptions
    from wbcap.bench.stages import bench_pipeline
    from wbcap.crop.bbox import crops_to_tensor
    from wbcap.model.precision import Precision

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="fast", choices=["exact", "fast"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.batch_size < 1 or args.calls < 1:
        ap.error("--batch-size and --calls must be at least 1")

    precision, bs = Precision(args.precision), args.batch_size
    opts = BenchOptions(config="full", batch_sizes=(bs,), precisions=(precision,))
    pipe, _, _ = bench_pipeline(opts, torch.device("cpu"), precision)
    regressor = pipe.regressor
    rng = np.random.default_rng(0)
    x = crops_to_tensor([(rng.random((512, 384, 3)) * 255).astype(np.uint8) for _ in range(bs)])
    x = x.contiguous(memory_format=pipe.memory_format)

    seconds: dict[str, float] = collections.defaultdict(float)
    started: dict[str, float] = {}

    def timed(name: str, module: torch.nn.Module) -> None:
        module.register_forward_pre_hook(lambda m, inputs: started.__setitem__(name, time.perf_counter()))
        module.register_forward_hook(
            lambda m, inputs, out: seconds.__setitem__(name, seconds[name] + time.perf_counter() - started[name]))

    net = regressor.net
    for name, module in net.named_children():
        timed(name, module)
    for name in ("hand_roi_net", "face_roi_net"):
        timed(f"{name}.backbone", getattr(net, name).backbone)
    timed("smplx_body", regressor.body)
    timed("TOTAL", regressor)

    def call() -> None:
        with torch.inference_mode(), pipe.inference_context():
            regressor(x)

    for _ in range(3):
        call()
    seconds.clear()
    for _ in range(args.calls):
        call()
    per_crop = {name: s / args.calls / bs * 1e3 for name, s in seconds.items()}
    print(f"{precision.value}, batch {bs}, {args.calls} calls, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; ms per crop:")
    for name, ms in sorted(per_crop.items(), key=lambda kv: -kv[1]):
        print(f"  {name:24s} {ms:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(precision=precision.value, batch_size=bs, calls=args.calls, ms_per_crop=per_crop), f, indent=1)


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()

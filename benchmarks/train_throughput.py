"""Training throughput: samples/s of the full-size Hand4Whole model on the synthetic set.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--batch-size 4] [--steps 5]
        [--small] [--no-amp]

Forward + losses + backward + Adam step, after one warm-up step; CUDA is synchronised before
timing. On CUDA the step runs as training does: bf16 autocast (unless --no-amp), channels-last memory,
cudnn.benchmark.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="all-ResNet-18 backbones instead of the released sizes")
    ap.add_argument("--no-amp", action="store_true")
    args = ap.parse_args()

    import torch
    from torch.utils.data import default_collate

    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.config import ModelConfig
    from wbcap.model.device import resolve_device
    from wbcap.model.strategy import cpu_model
    from wbcap.testing.synthetic_body import write_synthetic_smplx
    from wbcap.train.data.synthetic import SyntheticWholeBody
    from wbcap.train.losses import hand4whole_losses
    from wbcap.train.stages import StageConfig
    from wbcap.train.trainer import _channels_last, _cuda_training_settings, _to_tensors, adam, build_model

    dev = resolve_device(args.device)
    cfg = ModelConfig(backbone_depth=18, hand_backbone_depth=18, face_backbone_depth=18) if args.small else ModelConfig()
    folder = Path(tempfile.mkdtemp())
    write_synthetic_smplx(folder)
    body = SMPLXLayer.from_file(folder / "smplx" / "SMPLX_NEUTRAL.npz")
    data = SyntheticWholeBody(body, args.batch_size, seed=0, config=cfg)
    batch = _to_tensors(default_collate([data[i] for i in range(args.batch_size)]), dev)
    model = build_model(StageConfig(model=cfg), body, dev).train()
    opt = adam([p for m in model.net.trainable_modules() for p in m.parameters()], 1e-4, dev)
    amp = dev.type == "cuda" and not args.no_amp
    if _channels_last(dev):  # as training does on CUDA
        model.net.to(memory_format=torch.channels_last)
        batch[0]["img"] = batch[0]["img"].contiguous(memory_format=torch.channels_last)

    def step():
        inputs, targets, meta = batch
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = model(inputs["img"])
        loss = sum(hand4whole_losses(out, targets, meta, cfg).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with _cuda_training_settings(dev):  # cudnn.benchmark on CUDA, as training
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    res = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "cpu": cpu_model(),  # (the README keys its figures on the CPU)
        "architecture": "ResNet-18 x3" if args.small else "released (ResNet-50/50/18)", "batch_size": args.batch_size,
        "amp_bf16": amp, "steps": args.steps, "seconds_per_step": dt / args.steps,
        "samples_per_s": args.batch_size * args.steps / dt, "torch": torch.__version__,
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages("train")  # (as `wbcap train` does, before torch is imported: it asks for none)
    main()

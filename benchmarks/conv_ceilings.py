"""How fast this CPU convolves in float32, int8 and bfloat16: the most the fast mode's int8 (or
bfloat16) ResNets can gain over exact's float32 ones here.

    python benchmarks/conv_ceilings.py [--repeats 7] [--json out.json]

Times, interleaved in one process (the least time of ``--repeats`` rounds, calls the other processes
did not interrupt only, as the CPU strategy times its candidates:
``wbcap.model.strategy.time_interleaved``), the
convolution forms the regressor's ResNets run, on compute-bound ResNet-50 layer shapes at batch 4:
float32 through oneDNN's fused, pre-packed primitive (``wbcap.model.fused.FusedConv``, exact's
form), int8 through oneDNN's int8 convolution (``wbcap.model.int8``'s, fast's form where the
strategy picks int8: uint8 activations, int8 weights per output channel, ReLU fused), and, where
the CPU has bfloat16 instructions, the fused form in bfloat16; and the float32 matmul ceiling
``wbcap bench`` measures (2048 x 2048, the faster of MKL's ``a @ b`` and oneDNN's inner
product). Each rate counts a multiply-add as two operations. The int8 / float32 quotient bounds fast's speed-up over exact on a CPU whose fast mode runs int8
ResNets and float32 elsewhere (with no bfloat16 instructions, such as AVX2-only ones): the
ResNets can gain at most that, the rest of the network (box network, heads, SMPL-X) nothing.
"""

from __future__ import annotations

import argparse
import json

#: (name, C_in, C_out, kernel, H = W): ResNet-50 layer shapes that keep the cores busy at batch 4.
SHAPES = (("1x1 1024->256, 16x16", 1024, 256, 1, 16), ("1x1 256->1024, 16x16", 256, 1024, 1, 16),
          ("3x3 128->128, 32x32", 128, 128, 3, 32), ("3x3 256->256, 16x16", 256, 256, 3, 16))


def main() -> None:
    import torch
    from torch import nn

    from wbcap.bench.ceiling import CeilingProbe
    from wbcap.model.fused import FusedConv, bf16_supported
    from wbcap.model.int8 import _Int8Conv, int8_usable
    from wbcap.model.strategy import time_interleaved

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.repeats < 1 or args.batch < 1:
        ap.error("--repeats and --batch must be at least 1")
    torch.manual_seed(0)

    probe = CeilingProbe(torch.device("cpu"), "fp32", 2048)  # wbcap bench's ceiling (its GEMM library)
    kernel = probe.kernel
    with torch.inference_mode():
        matmul = probe.flops / time_interleaved({"mm": probe.gemm}, args.repeats)["mm"]
    rows = []
    with torch.inference_mode():
        for name, cin, cout, k, hw in SHAPES:
            conv = nn.Conv2d(cin, cout, k, padding=k // 2).eval()
            shape = (args.batch, cin, hw, hw)
            x = torch.rand(shape).contiguous(memory_format=torch.channels_last)
            fns = {"fp32": lambda c=FusedConv(conv, None, True, torch.float32, shape, True), x=x: c(x)}
            if int8_usable():
                q = _Int8Conv(conv, None, 1 / 255)
                xq = torch.randint(0, 256, shape, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
                fns["int8"] = lambda q=q, xq=xq: q(xq, 0.05, 0, torch.uint8, True)
            if bf16_supported():
                xb = x.to(torch.bfloat16)
                fns["bf16"] = lambda c=FusedConv(conv, None, True, torch.bfloat16, shape, True), xb=xb: c(xb)
            ops = 2 * args.batch * cin * cout * k * k * hw * hw
            for fn in fns.values():  # (first calls pack the weights)
                fn()
            rate = {kind: ops / s for kind, s in time_interleaved(fns, args.repeats).items()}
            rows.append({"shape": name, "ops_per_s": rate})
            print(f"{name}: " + ", ".join(f"{kind} {r / 1e9:.0f} G/s" for kind, r in rate.items())
                  + (f"; int8 / fp32 {rate['int8'] / rate['fp32']:.2f}" if "int8" in rate else "")
                  + (f"; bf16 / fp32 {rate['bf16'] / rate['fp32']:.2f}" if "bf16" in rate else ""))
    best = {kind: max(r["ops_per_s"][kind] for r in rows) for kind in rows[0]["ops_per_s"]}
    print(f"fp32 matmul ceiling (2048, {kernel}) {matmul / 1e9:.0f} GFLOP/s; best convolution rates: "
          + ", ".join(f"{kind} {r / 1e9:.0f} G/s ({r / matmul:.2f}x the matmul ceiling)" for kind, r in best.items())
          + f"; {torch.get_num_threads()} threads, torch {torch.__version__}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"matmul_fp32_flops_per_s": matmul, "matmul_kernel": kernel, "batch": args.batch,
                       "rows": rows, "best": best, "threads": torch.get_num_threads(), "torch": torch.__version__},
                      f, indent=1)


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()

"""RoIAlign as the regressor calls it: each box's extent (the CPU's default) against the
whole-image products (the GPUs' form), on Hand4Whole-sized crops.

    python benchmarks/roi_align.py [--images 8] [--repeats 15] [--json out.json]

Per call of ``wbcap.crop.roi_align.roi_align``: ``--images`` random 512x384 RGB images
(channels_last, as the regressor gets them), two hand boxes per image (60-100 pixels, the left
ones mirrored) cropped to 256x256 and one face box (70-110 pixels) to 192x192, in float32
(exact) and with bfloat16 products (fast), ``box_extent`` False and None (the default: True on
the CPU). The forms are timed interleaved, median of ``--repeats`` calls after two untimed ones,
in one process; the largest difference between the two forms' crops is printed too (it must be
float rounding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    import torch

    from wbcap.crop.roi_align import roi_align

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.images < 1 or args.repeats < 1:
        ap.error("--images and --repeats must be at least 1")

    g = torch.Generator().manual_seed(0)
    n = args.images
    img = torch.rand(n, 3, 512, 384, generator=g).contiguous(memory_format=torch.channels_last)

    def boxes(k: int, low: float, high: float) -> torch.Tensor:
        size = low + (high - low) * torch.rand(k, 1, generator=g)
        xy = torch.rand(k, 2, generator=g) * (torch.tensor([384.0, 512.0]) - size)
        return torch.cat([(torch.arange(k) % n).float()[:, None], xy, xy + size], 1)

    cases = {
        "hands": dict(boxes=boxes(2 * n, 60.0, 100.0), output_size=(256, 256), mirror=torch.arange(2 * n) < n,
                      image_blocks=2),
        "face": dict(boxes=boxes(n, 70.0, 110.0), output_size=(192, 192), mirror=None, image_blocks=1),
    }
    rows = []
    with torch.inference_mode():
        for name, case in cases.items():
            for dtype in (None, torch.bfloat16):
                calls = {extent: (lambda extent=extent, dtype=dtype, case=case:
                                  roi_align(img, compute_dtype=dtype, box_extent=extent, **case))
                         for extent in (False, None)}
                outs = {extent: fn() for extent, fn in calls.items()}
                for fn in calls.values():
                    fn()
                times: dict = {extent: [] for extent in calls}
                for _ in range(args.repeats):
                    for extent, fn in calls.items():
                        t = time.perf_counter()
                        fn()
                        times[extent].append(time.perf_counter() - t)
                whole, boxed = (statistics.median(times[e]) for e in (False, None))
                rows.append(dict(crops=name, boxes=len(case["boxes"]), compute=str(dtype or torch.float32).split(".")[-1],
                                 whole_image_ms=whole * 1e3, box_extent_ms=boxed * 1e3,
                                 max_difference=float((outs[False] - outs[None]).abs().max())))
    print(f"{n} images 512x384, torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.repeats}")
    print(f"{'crops':6} {'boxes':>5} {'compute':>9} {'whole image':>12} {'box extent':>11} {'max diff':>9}")
    for r in rows:
        print(f"{r['crops']:6} {r['boxes']:5d} {r['compute']:>9} {r['whole_image_ms']:9.2f} ms {r['box_extent_ms']:8.2f} ms "
              f"{r['max_difference']:9.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(images=n, torch=torch.__version__, threads=torch.get_num_threads(), rows=rows), f, indent=1)


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()

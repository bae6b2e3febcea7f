"""What reading a photo tagged with a wide-gamut colour profile costs: `wbcap.io.images.load_image`
of one picture saved untagged and tagged Display P3 (wbcap.testing.icc's profile: converted to
sRGB as it is read), the conversion in strips side by side (as wbcap does) and in one strip.

    python benchmarks/photo_colour.py [--width 4000] [--height 3000] [--repeats 7] [--json out.json]

Prints the CPU model and each median wall time in seconds; the pictures are written to a
temporary folder first (not timed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _median_load(path: Path, repeats: int) -> float:
    from wbcap.io.images import load_image

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        load_image(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    import wbcap.limits
    from wbcap.model.strategy import cpu_model
    from wbcap.testing.icc import rgb_matrix_profile

    rng = np.random.default_rng(0)
    picture = Image.fromarray(np.clip(rng.normal(128, 60, (args.height, args.width, 3)), 0, 255).astype(np.uint8))
    with tempfile.TemporaryDirectory() as folder:
        plain, tagged = Path(folder) / "plain.jpg", Path(folder) / "p3.jpg"
        picture.save(plain, quality=90)
        picture.save(tagged, quality=90, icc_profile=rgb_matrix_profile())
        result = {"cpu": cpu_model(), "pixels": args.width * args.height,
                  "untagged_s": _median_load(plain, args.repeats), "p3_s": _median_load(tagged, args.repeats)}
        cpus = wbcap.limits.available_cpus
        wbcap.limits.available_cpus = lambda: 1  # (one strip)
        try:
            result["p3_one_strip_s"] = _median_load(tagged, args.repeats)
        finally:
            wbcap.limits.available_cpus = cpus
    for key, value in result.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

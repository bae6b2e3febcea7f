"""How far each precision plan moves the outputs from exact mode, on the tests' fixed input.

    python benchmarks/precision_error.py

Full-size network with the official key layout and deterministic values (heads as drawn, the
tests' ``official_ckpt_raw``), the bundled example image with four person boxes (the input of
``tests/test_fused.py``), a synthetic SMPL-X model. For whole-network bf16 autocast, the
``fast`` mode (its ResNets in bfloat16, and its ResNets and box network in int8: :mod:`wbcap.model.int8`) and a few alternative per-part plans it prints the largest vertex distance, hand /
face box-corner distance (image pixels) and camera-translation difference from ``exact``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    import torch

    from wbcap.config import BodyModelConfig, PipelineConfig
    from wbcap.io.images import load_image
    from wbcap.paths import example_image_path
    from wbcap.pipeline import Pipeline, synthetic_body_models_dir
    from wbcap.testing.checkpoints import write_official_checkpoint

    f32 = torch.float32
    # (name -> precision, per-part dtypes, CPU strategy forced for the row: "fused" everywhere but
    # the int8 row, so that each row is the computation it names whatever this machine measured)
    plans = {
        "fast (bf16 ResNets)": ("fast", None),
        "fast, int8 ResNets + box net": ("fast", None, "int8"),
        "fast, box net fp32": ("fast", {"box_net": f32}),
        "fast, box net + heads fp32": ("fast", {"box_net": f32, "heads": f32}),
        "fast, body ResNet + box net + heads fp32": ("fast", {"body_backbone": f32, "box_net": f32, "heads": f32}),
        "bf16 autocast (whole network)": ("bf16", None),
    }
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_official_checkpoint(Path(tmp) / "snapshot_6.pth.tar", seed=0)
        body = BodyModelConfig(path=str(synthetic_body_models_dir()))
        img = load_image(example_image_path())
        h, w = img.shape[:2]
        boxes = [(0, 0, w, h), (w * 0.1, h * 0.05, w * 0.5, h * 0.8), (w * 0.4, h * 0.2, w * 0.55, h * 0.7),
                 (w * 0.2, h * 0.3, w * 0.3, h * 0.4)]

        def run(precision: str, plan=None, form: str = "fused"):
            os.environ["WBCAP_CPU_STRATEGY"] = form
            pipe = Pipeline.from_config(PipelineConfig(body=body, checkpoint=str(ckpt), device="cpu", precision=precision),
                                        optimize=False)
            pipe.optimize(plan=plan)
            people = pipe(img, boxes)
            return (np.stack([p.vertices for p in people]),
                    np.stack([np.stack((p.lhand_box, p.rhand_box, p.face_box)) for p in people]),
                    np.stack([p.params["transl"][0].numpy() for p in people]))

        exact = run("exact")
        print(f"{'plan (vs exact)':44s} {'max vertex':>11s} {'max box corner':>15s} {'cam_trans':>10s}")
        for name, (precision, plan, *form) in plans.items():
            v, b, t = run(precision, plan, *form)
            dv = np.linalg.norm(v - exact[0], axis=-1).max() * 1000
            db = np.linalg.norm((b - exact[1]).reshape(-1, 2), axis=-1).max()
            dt = np.abs(t - exact[2]).max() * 1000
            print(f"{name:44s} {dv:8.2f} mm {db:11.4f} px {dt:7.2f} mm")


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()

"""How far a plain (linear blend skinning) GLB/FBX is from the SMPL-X mesh, and why.

    python benchmarks/animation_lbs_error.py                          # synthetic model, synthetic motion
    python benchmarks/animation_lbs_error.py --body-models ~/models   # your SMPL-X release
    python benchmarks/animation_lbs_error.py --body-models ~/models --npz OUT/track_0.npz

An animation file skins the shaped rest mesh with 4 joints per vertex and carries expression as
morph targets (:mod:`wbcap.export.rig`, :mod:`wbcap.export.gltf`). SMPL-X adds two things
skinning cannot hold: pose-corrective blend shapes and expression-dependent joints. This prints,
over every row of the motion, the vertex distance (mm; max, mean, 99th percentile) between

* ``file vs SMPL-X``: what a plain file shows against wbcap's own SMPL-X mesh (``--exact`` removes it);
* ``4 weights vs all``: what keeping each vertex's 4 largest skinning weights costs;
* ``correctives + expression joints``: the rest (full-weight LBS vs SMPL-X).

The motion is a ``track_<id>.npz`` of ``wbcap run`` (``--npz``), or a synthetic one: a smooth walk-like
sequence of 60 rows with joint angles up to 0.8 rad, expression up to 1.5. No licensed file is
needed without ``--body-models`` (a synthetic SMPL-X model of the real size, whose correctives are
stand-ins: use your release for real numbers).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np


def synthetic_amass(seed: int = 0, rows: int = 60, fps: float = 30.0) -> dict[str, np.ndarray]:
    """A smooth synthetic motion as AMASS arrays (z up, hands absolute)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows) / fps
    amp = rng.uniform(0.1, 0.8, (55, 3)) * rng.choice([-1, 1], (55, 3))
    freq = rng.uniform(0.3, 1.5, (55, 3))
    poses = amp[None] * np.sin(2 * np.pi * freq[None] * t[:, None, None] + rng.uniform(0, 6, (55, 3)))
    poses[:, 0] = [np.pi / 2, 0, 0]  # upright in the z-up world
    trans = np.stack([0.3 * t, 2.0 + 0.1 * t, 0.02 * np.sin(4 * t)], 1)
    expression = 1.5 * np.sin(2 * np.pi * 0.5 * t[:, None] + rng.uniform(0, 6, 10))
    return {
        "poses": poses.reshape(rows, 165), "trans": trans, "betas": rng.normal(0, 1, 10),
        "expression": expression, "mocap_framerate": np.array(fps), "times": t, "valid": np.ones(rows, bool),
        "frame_indices": np.arange(rows), "up_axis": np.array("z"), "flat_hand_mean": np.array(True),
    }


def _stats(d: np.ndarray) -> str:
    mm = 1000 * np.linalg.norm(d, axis=-1)
    return f"max {mm.max():7.2f}  mean {mm.mean():6.2f}  p99 {np.percentile(mm, 99):6.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--body-models", help="SMPL-X file or folder (default: a synthetic model)")
    ap.add_argument("--gender", default="neutral")
    ap.add_argument("--npz", help="a track_<id>.npz of wbcap run (default: a synthetic motion)")
    args = ap.parse_args()

    import torch

    from wbcap.body.model_files import find_body_model, is_demo_body_model
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.export.clip import clip_from_amass, smplx_rows
    from wbcap.export.rig import build_rig, lbs_vertices, top_k_weights

    with tempfile.TemporaryDirectory() as tmp:
        if args.body_models:
            path = find_body_model(args.gender, args.body_models)
        else:
            from wbcap.testing.synthetic_body import write_synthetic_smplx

            path = find_body_model("neutral", write_synthetic_smplx(Path(tmp)))
        body = SMPLXLayer.from_file(path, dtype=torch.float64)
    arrays = dict(np.load(args.npz)) if args.npz else synthetic_amass()
    rig = build_rig(body, arrays["betas"])
    clip = clip_from_amass(arrays, rig.rest_joints[0], "motion", up="y")
    all_j, all_w, _ = top_k_weights(body.lbs_weights.double().numpy(), k=body.lbs_weights.shape[1])
    rig_all = replace(rig, skin_joints=all_j, skin_weights=all_w)

    exact = smplx_rows(body, clip)
    file_v = lbs_vertices(rig, clip.poses, clip.transl, clip.expression)
    full_w = lbs_vertices(rig_all, clip.poses, clip.transl, clip.expression)
    kind = "synthetic" if not args.body_models or is_demo_body_model(path) else "yours"
    print(f"model {path.name} ({kind}), motion "
          f"{args.npz or 'synthetic'}: {len(clip)} rows, dropped skin weight per vertex up to {rig.dropped_weight:.3f}")
    print(f"  file vs SMPL-X                    {_stats(file_v - exact)} mm")
    print(f"  4 weights vs all                  {_stats(file_v - full_w)} mm")
    print(f"  correctives + expression joints   {_stats(full_w - exact)} mm")


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()

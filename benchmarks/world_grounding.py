"""World grounding (``wbcap run --world``) on synthetic people with a known camera and ground.

    python benchmarks/world_grounding.py                 # the synthetic SMPL-X model
    python benchmarks/world_grounding.py --body-models ~/models   # your SMPL-X release
    python benchmarks/world_grounding.py --seeds 5       # more noise draws per scene

Each scene (:mod:`wbcap.testing.world_scenes`): SMPL-X people walking (feet planted while in
stance, swinging between) and standing (knees bending), 1280x720, 30 fps, 5 s, seen by a static
camera 1.4 m above the ground, pitched 12 degrees down and rolled 4 degrees. Their camera-frame
tracks get the network's kind of translation error (per frame: 1.5 % of the distance along the
camera ray, white; a drift of 3 % along it at 0.23 and 0.61 Hz; 4 mm across it) and then wbcap's
default smoothing of the translation, as ``wbcap run`` would pass them on. The world stage
(:func:`wbcap.world.estimate.ground_tracks`, default :class:`~wbcap.world.estimate.WorldConfig`)
sees only those tracks and the image size.

Printed per scene (mean over the noise draws; ``before`` = the smoothed camera-frame track put
in the *true* world, ``after`` = wbcap's world-frame track in its own estimated world):

* ground: the normal's angle to the truth (deg), the camera height's error (cm), the mean
  distance between the estimated and the true ground under the planted feet (cm);
* slide: foot sliding of the heel and toe vertices in true contact (mm/frame), and the ratio;
* pen: ground penetration of the lowest foot vertex (mm, mean over frames / worst frame);
* px: the largest change of the pelvis's pixel; contact: per-foot label accuracy;
* W-MPJPE100, WA-MPJPE100 (mm), RTE (%), jitter (m/s^3; in brackets the true motion's) of the
  22 body joints, before -> after; and the world stage's own time per scene (CPU).

Then the same with wbcap's smoothing applied to the exact poses as well (``wbcap run`` smooths
every parameter; on this synthetic gait it rounds the legs' motion, which no translation can
undo), and the fallbacks: a camera that tilts or bobs, feet never still, feet out of the image,
two ground levels: the reason each gives.

Last, a calibrated camera (``wbcap run --world --calibration``): the same camera's pose given in a
lab's frame (the world turned 30 degrees and shifted along the floor, in millimetres,
:class:`wbcap.testing.world_scenes.LabCalibration`), with the network's depths right and 8 % too
far (a scale error, ``TrackNoise.depth_bias``): W-MPJPE100 and RTE of the 22 body joints in the
true world with the feet's ground and on the calibration's floor, the camera's position error and
the units found.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

SCENES = {
    "walk across": lambda w: [w.Walk(start=(-2.0, 5.0), heading_deg=10, speed=0.8)],
    "walk away (diagonal)": lambda w: [w.Walk(start=(-1.0, 3.8), heading_deg=45)],
    "walk towards the camera": lambda w: [w.Walk(start=(0.3, 8.0), heading_deg=-95)],
    "stand (knees bending)": lambda w: [w.Stand(position=(0.4, 4.5))],
    "walk + stand": lambda w: [w.Walk(start=(-1.0, 3.8), heading_deg=45), w.Stand(position=(1.0, 5.5))],
}


def fallbacks(w) -> dict[str, tuple[list, object]]:
    """Scenes the world stage must refuse: ``{name: (people, camera)}``."""
    return {
        "camera tilting 3 deg/s": ([w.Walk(start=(-1.0, 3.8), heading_deg=45), w.Stand(position=(1.0, 5.5))],
                                   w.SceneCamera(tilt_deg_s=3.0)),
        "camera bobbing 6 cm": ([w.Stand(position=(0.4, 4.5))], w.SceneCamera(bob_m=0.06)),
        "feet never still (gliding)": ([w.Glide(start=(-2.0, 5.0), heading_deg=10)], w.SceneCamera()),
        "feet below the image": ([w.Walk(start=(-0.5, 1.6), heading_deg=5)], w.SceneCamera()),
        "two ground levels": ([w.Stand(position=(-0.8, 5.0)), w.Stand(position=(0.8, 5.0), ground_z=0.5)],
                              w.SceneCamera()),
    }


def _mean(values: list) -> float | tuple:
    if isinstance(values[0], tuple):
        return tuple(float(np.mean([v[i] for v in values])) for i in range(len(values[0])))
    return float(np.mean(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--body-models", help="SMPL-X file or folder (default: a synthetic model)")
    ap.add_argument("--seeds", type=int, default=3, help="noise draws per scene")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")

    import tempfile

    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.testing import world_scenes as w
    from wbcap.world.estimate import WorldConfig, ground_tracks

    with tempfile.TemporaryDirectory() as tmp:
        if args.body_models:
            path = find_body_model("neutral", args.body_models)
        else:
            from wbcap.testing.synthetic_body import write_synthetic_smplx

            path = find_body_model("neutral", write_synthetic_smplx(tmp))
        body = SMPLXLayer.from_file(path)
    config = WorldConfig()
    print(f"{'':24s} {'normal':>6s} {'camera':>6s} {'ground':>6s} {'slide mm/frame':>16s} {'pen mm mean/max':>17s} "
          f"{'px':>5s} {'contact':>7s} {'W-MPJPE100':>11s} {'WA-MPJPE100':>11s} {'RTE %':>11s} {'jitter m/s^3':>16s}")
    print(f"{'scene':24s} {'deg':>6s} {'cm':>6s} {'cm':>6s} {'before after  x':>16s} {'before    after':>17s} "
          f"{'':5s} {'':7s} {'mm':>11s} {'mm':>11s} {'':11s} {'(truth)':>16s}")
    for smooth_poses in (False, True):
        if smooth_poses:
            print("\nthe same, with wbcap's smoothing applied to the (exact) poses too, as `wbcap run` smooths every "
                  "parameter:")
        _table(w, body, config, args.seeds, smooth_poses)
    _calibrated(w, body, config, args.seeds)
    print("\nfallbacks:")
    for name, (people, camera) in fallbacks(w).items():
        scene = w.make_scene(body, people, camera=camera, seconds=5.0)
        result = ground_tracks({k: p.noisy for k, p in scene.people.items()}, body, "cpu", scene.camera, config)
        print(f"  {name:30s} -> {'world frame (not refused)' if result.frame else result.reason}")


def _calibrated(w, body, config, seeds: int) -> None:
    """The calibrated camera's lines (module docstring)."""
    from wbcap.world.estimate import ground_tracks

    print("\na calibrated camera (its pose in a lab's frame, mm): the feet's ground -> the calibration's floor")
    print(f"{'scene':24s} {'depth':>6s} {'W-MPJPE100 mm':>15s} {'RTE %':>13s} {'camera cm':>11s} {'units':>12s}")
    for name in ("walk away (diagonal)", "walk + stand"):
        for bias in (0.0, 0.08):
            w_mpjpe, rte, camera_error, units = [], [], [], set()
            for seed in range(seeds):
                scene = w.make_scene(body, SCENES[name](w), noise=w.TrackNoise(seed=seed, depth_bias=bias), seconds=5.0)
                lab = w.LabCalibration.of(scene.world_from_camera[0], scene.camera_position[0])
                tracks = {k: p.noisy for k, p in scene.people.items()}
                feet = ground_tracks(tracks, body, "cpu", scene.camera, config)
                calibrated = ground_tracks(tracks, body, "cpu", scene.camera, config, pose=lab.pose)
                if feet.frame is None or calibrated.frame is None or calibrated.frame.ground_from != "calibration":
                    print(f"{name:24s} seed {seed}: not grounded on the calibration's floor")
                    continue
                units.add(calibrated.frame.check["units"])
                camera_error.append(float(np.linalg.norm(calibrated.frame.camera_position - lab.centre)))
                reports = (w.evaluate(body, scene, feet), w.evaluate(body, scene, lab.in_true_world(calibrated)))
                w_mpjpe.append(tuple(float(np.mean([p["w_mpjpe"][1] for p in r["people"].values()])) for r in reports))
                moving = [(p["rte"][1], q["rte"][1]) for p, q in zip(*(r["people"].values() for r in reports))
                          if p["rte"] is not None]
                rte += moving
            if not w_mpjpe:
                continue
            wm, rt = _mean(w_mpjpe), _mean(rte) if rte else None
            rte_text = f"{rt[0]:5.2f}->{rt[1]:<5.2f}" if rt else "-"
            print(f"{name:24s} {100 * bias:5.0f}% {wm[0]:6.0f}->{wm[1]:<6.0f} {rte_text:>13s} "
                  f"{100 * max(camera_error):11.1e} {','.join(sorted(units)):>12s}")


def _table(w, body, config, seeds: int, smooth_poses: bool) -> None:
    """One line per scene of :data:`SCENES` (module docstring)."""
    from wbcap.world.estimate import ground_tracks

    for name, people in SCENES.items():
        ground, people_stats, seconds = [], [], 0.0
        for seed in range(seeds):
            scene = w.make_scene(body, people(w), noise=w.TrackNoise(seed=seed, smooth_poses=smooth_poses), seconds=5.0)
            t0 = time.perf_counter()
            result = ground_tracks({k: p.noisy for k, p in scene.people.items()}, body, "cpu", scene.camera, config)
            seconds += time.perf_counter() - t0
            rep = w.evaluate(body, scene, result)
            if result.frame is None:
                print(f"{name:24s} fell back: {result.reason}")
                continue
            ground.append((rep["normal_error_deg"], 100 * abs(rep["height_error_m"]), 100 * rep["ground_offset_m"]))
            people_stats += list(rep["people"].values())
        if not ground:
            continue
        g = _mean(ground)
        s = {k: _mean([p[k] for p in people_stats]) if all(p[k] is not None for p in people_stats) else None
             for k in people_stats[0]}
        ratio = s["slide_before"] / s["slide_after"]
        rte = f"{s['rte'][0]:4.2f}->{s['rte'][1]:4.2f}" if s["rte"] else "-"
        pen_b, pen_a = (1000 * np.asarray(s[k]) for k in ("penetration_before", "penetration_after"))
        print(f"{name:24s} {g[0]:6.2f} {g[1]:6.2f} {g[2]:6.2f} {1000 * s['slide_before']:6.1f} {1000 * s['slide_after']:5.1f} "
              f"{ratio:3.0f} {pen_b[0]:4.1f}/{pen_b[1]:<4.1f} {pen_a[0]:3.1f}/{pen_a[1]:<3.1f} "
              f"{s['reprojection_px']:5.2f} {s['contact_accuracy']:7.3f} {s['w_mpjpe'][0]:5.0f}->{s['w_mpjpe'][1]:<4.0f} "
              f"{s['wa_mpjpe'][0]:5.0f}->{s['wa_mpjpe'][1]:<4.0f} {rte:>11s} "
              f"{s['jitter'][0]:4.0f}->{s['jitter'][1]:<3.0f}({s['jitter'][2]:3.0f})   "
              f"[{seconds / seeds:.2f} s]")


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()

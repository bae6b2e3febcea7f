"""Several calibrated cameras fused (``wbcap fuse``) on synthetic people with a known world.

    python benchmarks/multiview_fusion.py                 # the synthetic SMPL-X model
    python benchmarks/multiview_fusion.py --seeds 5       # more noise draws

The people of ``benchmarks/world_grounding.py``'s "walk + stand" scene (one walking away
diagonally, one standing, 5 s at 30 fps) seen by two or three static cameras around them (1.4 m
up, 12 degrees down, the first in front, the second from their right, the third from behind-left,
2.0 m up), each with the network's kind of translation error (its own noise draw), depths right
or 8 % too far (a scale error, ``TrackNoise.depth_bias``), and poses exact or each body joint off
by 10 degrees (a fixed random turn per camera and joint, ``TrackNoise.pose_deg``: a network's
errors differ from view to view). Each camera's run is written as ``wbcap
run --world --calibration`` writes it (its tracks grounded on the calibration's floor, the
camera's pose in millimetres; :func:`wbcap.testing.world_scenes.write_calibrated_run`), then
``wbcap fuse`` (:func:`wbcap.fuse_app.fuse_runs`) fuses them.

A "colmap" setting is a reconstruction's world (COLMAP's, ``CameraPose.metric`` False): the first
camera's frame at 0.37 of its units a metre; fuse finds the scale (its error printed in place of
the cameras alone: every camera's depths 8 % too far give a world 8 % too large, as the README says).

Printed per setting (mean over people and noise draws): the mean distance of the 22 body joints
from the truth in the world (MPJPE without any alignment, mm) for each camera alone and fused,
whether every person was found as one across the cameras, and the fusion's time.

Then the clocks (``wbcap fuse --offsets auto``): each camera but the first started at a random
moment within a second of it (not a whole number of frames), depths 8 % too far, poses exact or
each body joint 10 degrees off per camera and shaking by 5 degrees per axis a frame (smoothed as
``wbcap run`` smooths them): the offsets found, their error in frames (root mean square and
largest over the cameras and draws) by the pelvises alone and with the poses
(:func:`wbcap.fuse.views.clock_shifts`), and the fused MPJPE with the offsets found against the
true ones.

Last, the cost of the clock search on many tracks (toy tracks, no fusion): three cameras, 60 s
at 30 fps, ``--people`` people walking about, each camera's tracks cut into 6 s pieces: the
seconds :func:`wbcap.fuse.views.clock_shifts` takes over 2 s (the check every fusion makes) and
over 30 s (``--offsets auto``), and :func:`~wbcap.fuse.views.associate`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

#: Units a metre of the "colmap" setting's reconstruction (its world the first camera's frame, of its own scale).
COLMAP_PER_METRE = 0.37


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--body-models", help="SMPL-X file or folder (default: a synthetic model)")
    ap.add_argument("--seeds", type=int, default=3, help="noise draws per setting")
    ap.add_argument("--people", type=int, default=10, help="people of the many-tracks timing")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")

    from wbcap.body.model_files import find_body_model
    from wbcap.body.smplx_layer import SMPLXLayer
    from wbcap.export.animation import AnimationExport
    from wbcap.fuse_app import FuseJob, fuse_runs
    from wbcap.testing import world_scenes as w

    cameras = [w.SceneCamera(), w.SceneCamera(ground_xy=(5.5, 5.0), yaw_deg=90, roll_deg=-2),
               w.SceneCamera(ground_xy=(-4.0, 9.0), yaw_deg=-135, height=2.0, pitch_deg=18)]
    people = [w.Walk(start=(-1.0, 3.8), heading_deg=45), w.Stand(position=(1.0, 5.5))]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.body_models:
            path = find_body_model("neutral", args.body_models)
        else:
            from wbcap.testing.synthetic_body import write_synthetic_smplx

            path = find_body_model("neutral", write_synthetic_smplx(root / "models"))
        body = SMPLXLayer.from_file(path)
        print(f"{'world':>11s} {'cameras':>7s} {'depth':>6s} {'poses':>6s}   {'MPJPE per camera alone (mm)':28s} "
              f"{'fused (mm)':>10s} {'found as one':>12s} {'fuse s':>7s}")
        settings = [("z up", n, bias, pose_deg) for n in (2, 3) for bias, pose_deg in ((0.0, 0.0), (0.08, 0.0),
                                                                                       (0.08, 10.0))]
        settings += [("cam1 frame", n, 0.08, pose_deg) for n in (2, 3) for pose_deg in (0.0, 10.0)]
        settings += [("colmap", n, bias, 0.0) for n in (2, 3) for bias in (0.0, 0.08)]
        for world, n, bias, pose_deg in settings:
            levelled = world != "z up"
            alone, fused, found, seconds, scales = [], [], [], 0.0, []
            for seed in range(args.seeds):
                case = root / f"{world[:4]}_c{n}_b{bias}_p{pose_deg}_s{seed}"
                runs, truth, first = [], None, None
                for i, camera in enumerate(cameras[:n]):
                    scene = w.make_scene(body, people, camera=camera, seconds=5.0,
                                         noise=w.TrackNoise(seed=100 * seed + 7 * i, depth_bias=bias,
                                                            pose_deg=pose_deg))
                    truth = {k: w.true_body_joints(body, p) for k, p in scene.people.items()}
                    pose = (scene.world_from_camera[0], scene.camera_position[0])
                    first = first or pose
                    calibration = (w.LabCalibration.in_camera_frame(*first, *pose, per_metre=COLMAP_PER_METRE)
                                   if world == "colmap" else w.LabCalibration.in_camera_frame(*first, *pose)
                                   if levelled else w.LabCalibration.of(*pose, yaw_deg=0.0, shift=(0.0, 0.0, 0.0)))
                    if world == "colmap":  # (a reconstruction's world: its own scale, no length's)
                        calibration = dataclasses.replace(calibration, pose=dataclasses.replace(calibration.pose,
                                                                                                metric=False))
                    w.write_calibrated_run(case / f"cam{i + 1}", body, scene, calibration)
                    runs.append(case / f"cam{i + 1}")
                if levelled:  # (each camera alone on its own feet's ground: no common world to compare)
                    truth = {k: _levelled(v, *first) for k, v in truth.items()}
                else:
                    alone.append([np.mean([_error(body, run / f"track_{k}.npz", truth[k]) for k in truth])
                                  for run in runs])
                t0 = time.perf_counter()
                fuse_runs(FuseJob(runs=tuple(map(str, runs)), out=str(case / "fused"), body_models=str(path),
                                  export=AnimationExport(formats=("npz",))))
                seconds += time.perf_counter() - t0
                fused.append(np.mean([min(_error(body, f, truth[k]) for f in (case / "fused").glob("track_*.npz"))
                                      for k in truth]))
                found.append(len(list((case / "fused").glob("track_*.npz"))) == len(truth))
                if world == "colmap":
                    record = json.loads((case / "fused" / "fuse.json").read_text())["world"]
                    scales.append(record["per_metre"] / COLMAP_PER_METRE - 1)
            per_camera = " ".join(f"{v:5.1f}" for v in np.mean(alone, axis=0)) if alone else "-"
            if scales:
                per_camera = f"scale {100 * np.mean(scales):+.1f}% (at most {100 * np.abs(scales).max():.1f}%)"
            print(f"{world:>11s} {n:7d} {100 * bias:5.0f}% {pose_deg:5.0f}°   {per_camera:28s} {np.mean(fused):10.1f} "
                  f"{'yes' if all(found) else 'NO':>12s} {seconds / args.seeds:7.2f}")
        _clocks(args.seeds, body, path, root / "clocks", cameras, people)
    _many_tracks(args.people)


def _many_tracks(people: int, cameras: int = 3, seconds: float = 60.0, piece_s: float = 6.0, fps: float = 30.0) -> None:
    """The clock search's and the association's seconds on many toy tracks (module docstring)."""
    from wbcap.fuse.views import ViewTrack, associate, clock_shifts

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * fps)) / fps
    paths = []
    for p in range(people):
        xy = rng.uniform(-4, 4, 2) + np.outer(t, rng.normal(0, 0.5, 2)) + 0.5 * np.sin(np.outer(t, [0.3, 0.2]) + p)
        paths.append(np.column_stack([xy, 0.9 + 0.03 * np.sin(2 * np.pi * 1.8 * t)]))
    tracks = []
    for c in range(cameras):
        camera = np.array([6 * np.cos(2 * np.pi * c / cameras), 6 * np.sin(2 * np.pi * c / cameras), 1.5])
        for p, path in enumerate(paths):
            for k in range(int(seconds / piece_s)):
                rows = np.arange(int(k * piece_s * fps), int((k + 1) * piece_s * fps))
                n = len(rows)
                pelvis = path[rows] + rng.normal(0, 0.02, (n, 3))
                poses = np.zeros((n, 55, 3))
                poses[:, 4, 0] = 0.5 * np.sin(2 * np.pi * 0.9 * t[rows] + p)
                tracks.append(ViewTrack(view=c, label=f"cam{c}/p{p}_{k}", times=t[rows], valid=np.ones(n, bool),
                                        poses=poses, trans=pelvis, betas=np.zeros(10), expression=np.zeros((n, 10)),
                                        frame_indices=rows, pelvis=pelvis, camera_position=camera, fps=fps))
    print()
    print(f"many tracks: {cameras} cameras, {seconds:g} s, {people} people in {piece_s:g} s pieces ({len(tracks)} tracks)")
    for label, call in (("clock check (2 s)", lambda: clock_shifts(tracks)),
                        ("--offsets auto (30 s)", lambda: clock_shifts(tracks, max_shift_s=30.0, min_overlap_s=1.0)),
                        ("association", lambda: associate(tracks))):
        t0 = time.perf_counter()
        call()
        print(f"  {label:22s} {time.perf_counter() - t0:6.2f} s")


def _clocks(seeds: int, body, path: Path, root: Path, cameras, people) -> None:
    """The clocks' table (module docstring)."""
    import json

    from wbcap.export.animation import AnimationExport
    from wbcap.fuse.views import clock_offsets, clock_shifts
    from wbcap.fuse_app import AUTO_MIN_OVERLAP_S, AUTO_SEARCH_S, FuseJob, _read_run, _view_track, fuse_runs
    from wbcap.testing import world_scenes as w

    print()
    print(f"{'cameras':>7s} {'poses':>14s}   {'offset error, frames rms/max: pelvises':38s} {'+ poses':>12s} "
          f"{'MPJPE auto / true (mm)':>23s} {'fuse s':>7s}")
    rng = np.random.default_rng(2026)
    for n in (2, 3):
        for pose_deg, white in ((0.0, 0.0), (10.0, 5.0)):
            coarse, fine, auto_mm, true_mm, seconds = [], [], [], [], 0.0
            for seed in range(seeds):
                case = root / f"c{n}_p{pose_deg}_s{seed}"
                starts = [0.0, *rng.uniform(-1.0, 1.0, n - 1)]
                runs, tracks, truth = [], [], None
                for i, camera in enumerate(cameras[:n]):
                    scene = w.make_scene(body, people, camera=camera, seconds=5.0, start_s=starts[i],
                                         noise=w.TrackNoise(seed=100 * seed + 7 * i, depth_bias=0.08, pose_deg=pose_deg,
                                                            pose_white_deg=white, smooth_poses=True))
                    if i == 0:
                        truth = {k: w.true_body_joints(body, p) for k, p in scene.people.items()}
                    calibration = w.LabCalibration.of(scene.world_from_camera[0], scene.camera_position[0],
                                                      yaw_deg=0.0, shift=(0.0, 0.0, 0.0))
                    w.write_calibrated_run(case / f"cam{i + 1}", body, scene, calibration)
                    runs.append(case / f"cam{i + 1}")
                    tracks += [_view_track(p, f"cam{i + 1}/{p.path.stem}", 0.0, body) for p in _read_run(runs[-1], i)[1]]
                for poses, errors in ((False, coarse), (True, fine)):
                    clocks = clock_offsets(clock_shifts(tracks, max_shift_s=AUTO_SEARCH_S, by_poses=poses,
                                                        min_overlap_s=AUTO_MIN_OVERLAP_S), list(range(n)))
                    errors += [(-clocks[v] - starts[v]) * 30.0 for v in range(1, n)]
                for given, errors in (("auto", auto_mm), (",".join(map(str, starts)), true_mm)):
                    out = case / f"fused_{'auto' if given == 'auto' else 'true'}"
                    t0 = time.perf_counter()
                    fuse_runs(FuseJob(runs=tuple(map(str, runs)), out=str(out), body_models=str(path),
                                      offsets=given if given == "auto" else tuple(starts),
                                      export=AnimationExport(formats=("npz",))))
                    if given == "auto":
                        seconds += time.perf_counter() - t0
                        json.loads((out / "fuse.json").read_text())  # (written whole)
                    errors.append(np.mean([min(_error(body, f, truth[k]) for f in out.glob("track_*.npz"))
                                           for k in truth]))

            def rms_max(e: list[float]) -> str:
                return f"{np.sqrt(np.mean(np.square(e))):5.2f}/{np.max(np.abs(e)):4.2f}"

            label = "exact" if pose_deg == 0 else f"{pose_deg:.0f}° + {white:.0f}°/frame"
            print(f"{n:7d} {label:>14s}   {rms_max(coarse):38s} {rms_max(fine):>12s} "
                  f"{np.mean(auto_mm):11.1f} / {np.mean(true_mm):9.1f} {seconds / seeds:7.2f}")


def _levelled(points: np.ndarray, rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """World points ``(..., 3)`` in the levelled frame of a calibration in the first camera's
    frame (``rotation`` camera -> world, ``centre``): its axes turned z up, x the camera's x laid
    on the floor, its origin dropped onto the floor (:mod:`wbcap.fuse.level`)."""
    up = rotation.T @ np.array([0.0, 0.0, 1.0])
    x = np.array([1.0, 0.0, 0.0]) - up[0] * up
    x /= np.linalg.norm(x)
    turn = np.stack([x, np.cross(up, x), up])
    return (points - centre) @ rotation @ turn.T + np.array([0.0, 0.0, centre[2]])


def _error(body, path: Path, truth: np.ndarray, fps: float = 30.0) -> float:
    """Mean distance (mm) of a track file's body joints from ``truth`` (the first camera's rows, its
    clock from 0 at ``fps``) over the rows whose ``times`` fall on the truth's."""
    from wbcap.testing.world_scenes import amass_body_joints

    with np.load(path) as z:
        joints = amass_body_joints(body, dict(z))
        rows = np.rint(z["times"] * fps).astype(np.int64)
        on = (np.abs(z["times"] * fps - rows) < 1e-6) & (rows >= 0) & (rows < len(truth))
    return float(np.linalg.norm(joints[on] - truth[rows[on]], axis=2).mean() * 1000)


if __name__ == "__main__":
    from wbcap.huge_pages import request_huge_pages

    request_huge_pages()  # (as the wbcap command does, before torch is imported)
    main()

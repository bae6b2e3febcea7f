"""Import a BVH file with Blender's own importer and report the posed joints (run by
tests/test_export_bvh.py in a subprocess: ``python bvh_import.py FILE.bvh OUT.json FRAME...``).

Importer options: ``global_scale=0.01`` (the file is in centimetres), ``rotate_mode='NATIVE'``
(the file's Euler order), ``axis_forward='-Z'``, ``axis_up='Y'`` (the file is y up with +z
towards the viewer: Blender's (x, y, z) = file (x, -z, y)), ``use_fps_scale=False`` (one BVH
row per Blender frame), ``update_scene_fps=True`` (scene rate = the file's), ``frame_start=1``.

Writes JSON: ``bones`` (pose-bone names in armature order), ``heads`` {frame: (J, 3) world head
positions in Blender's z-up metres, ``armature.matrix_world @ pose_bone.head``}, ``fps``,
``fps_base``, ``frame_range`` of the imported action, ``keyframes`` (points per F-curve, set).
"""

from __future__ import annotations

import json
import sys

import bpy


def main(argv: list[str]) -> None:
    path, out, frames = argv[0], argv[1], [int(f) for f in argv[2:]]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.import_anim.bvh(
        filepath=path, global_scale=0.01, rotate_mode="NATIVE", axis_forward="-Z", axis_up="Y",
        use_fps_scale=False, update_scene_fps=True, frame_start=1,
    )
    if result != {"FINISHED"}:
        raise SystemExit(f"import failed: {result}")
    scene = bpy.context.scene
    arm = next(o for o in scene.objects if o.type == "ARMATURE")
    action = arm.animation_data.action
    curves = [c for layer in action.layers for strip in layer.strips for bag in strip.channelbags for c in bag.fcurves]
    heads = {}
    for f in frames:
        scene.frame_set(f)
        heads[f] = [list(arm.matrix_world @ pb.head) for pb in arm.pose.bones]
    report = {
        "bones": [pb.name for pb in arm.pose.bones],
        "heads": heads,
        "fps": scene.render.fps,
        "fps_base": scene.render.fps_base,
        "frame_range": list(action.frame_range),
        "keyframes": sorted({len(c.keyframe_points) for c in curves}),
    }
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(report, fh)


if __name__ == "__main__":
    main(sys.argv[1:])

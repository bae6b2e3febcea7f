"""Import a GLB with Blender's own glTF importer and report its animated, skinned mesh (run by
tests/test_export_blender.py in a subprocess: ``python glb_read.py FILE.glb OUT_DIR [RATE]``).

Without ``RATE`` the scene keeps Blender's factory rate (24 fps, ``fps_base`` 1) as a user's would,
so a 25 or 29.97 fps clip's keys fall between frames: the importer puts a key at time ``t`` on frame
``t * fps * fps_base`` (``io_scene_gltf2/blender/imp/animation_node.py``), and the mesh is
evaluated there with ``scene.frame_set(floor(f), subframe=f - floor(f))``; times are reported
back as ``frame / (fps * fps_base)``. With ``RATE`` (the clip's frames per second), the README's
recipe for importing a GLB at its own rate (Animation files): ``fps = round(RATE)``, ``fps_base =
RATE / fps`` while importing (so that ``fps * fps_base`` is the rate), then ``fps_base = fps /
RATE`` (the scene plays at ``fps / fps_base``); times are reported as ``frame / RATE``.

Importer options: factory defaults except ``disable_bone_shape=True`` (no helper "Icosphere"
mesh). One work-around, as :mod:`wbcap.export.blender_fbx` does: Blender clamps shape-key
values to each key's slider range and the importer widens that range for the first keyframe's
value only (``animation_weight.py``: ``min(coords[1:2])``), so the sliders are widened to every
keyed value before evaluating (without it expression weights outside [0, 1] are clamped).

Writes ``OUT_DIR/result.json`` (:func:`report`), ``OUT_DIR/vertices.npy`` ``(K, V, 3)`` float64
world positions at the K key frames (K = 1, the current frame, for a file without animation) and ``OUT_DIR/rest.npy`` ``(V, 3)`` the undeformed mesh in
world space, both in glTF's y-up frame, metres: Blender's z-up world ``(x, y, z)`` is glTF
``(x, -z, y)`` (the importer's conversion, ``blender_gltf.py`` ``convert_loc``), so glTF
``(x, y, z)`` = Blender ``(x, z, -y)``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import bpy
import numpy as np


def fcurves(owner: Any) -> list[Any]:
    """The F-curves animating ``owner`` (an object or shape-key block): its action's channel bag
    for its slot (Blender 5 actions are layered and slotted; one action may animate several IDs)."""
    from bpy_extras import anim_utils

    ad = owner.animation_data
    if ad is None or ad.action is None:
        return []
    bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
    return list(bag.fcurves) if bag is not None else []


def animated_ids() -> list[Any]:
    """Objects and shape-key blocks with animation."""
    return [i for i in [*bpy.data.objects, *bpy.data.shape_keys] if fcurves(i)]


def widen_sliders() -> None:
    """Shape-key slider ranges that hold every keyed value (see the module docstring)."""
    for key in bpy.data.shape_keys:
        for curve in fcurves(key):
            block = key.path_resolve(curve.data_path.rsplit(".", 1)[0])
            values = [k.co[1] for k in curve.keyframe_points]
            block.slider_min = max(-10.0, min(block.slider_min, math.floor(min(values))))
            block.slider_max = min(10.0, max(block.slider_max, math.ceil(max(values))))


def gltf_from_blender(points: np.ndarray) -> np.ndarray:
    """Blender z-up ``(..., 3)`` -> glTF y-up: ``(x, z, -y)``."""
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], -1)


def world_vertices(obj: Any) -> np.ndarray:
    """``(V, 3)`` evaluated (skinned, shape-keyed) vertices of mesh ``obj`` in Blender's world."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(depsgraph)
    mesh = ev.to_mesh()
    co = np.empty(len(mesh.vertices) * 3)
    mesh.vertices.foreach_get("co", co)
    m = np.array(ev.matrix_world)
    ev.to_mesh_clear()
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def report(out_dir: Path, frame_to_time: Any, extra: dict[str, Any] | None = None) -> None:
    """Evaluate the one skinned mesh at every key frame; write the files of the module docstring.

    ``result.json``: ``objects`` [[name, type, parent]], ``armature``, ``bones`` (names in
    armature order), ``mesh``, ``shape_keys`` (names, Basis first), ``fps``, ``fps_base``,
    ``key_frames`` (sorted distinct key frames over all F-curves of the active actions),
    ``key_times`` (``frame_to_time`` of them, seconds), ``keys_per_curve`` (distinct counts),
    ``num_curves``, ``vertex_count``, ``cameras`` (per camera object: ``matrix_world`` 4 x 4 in
    Blender's world, ``angle_x`` and ``angle_y`` radians, ``sensor_fit``, ``type``), and ``extra``.
    """
    scene = bpy.context.scene
    arm = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    mesh = next(o for o in bpy.data.objects if o.type == "MESH" and o.find_armature() == arm)
    curves = [c for i in animated_ids() for c in fcurves(i)]
    frames = sorted({float(k.co[0]) for c in curves for k in c.keyframe_points})
    rest = np.array([v.co for v in mesh.data.vertices], np.float64)
    m = np.array(mesh.matrix_world)
    verts = []
    for f in frames:
        whole = math.floor(f)
        scene.frame_set(whole, subframe=f - whole)
        verts.append(world_vertices(mesh))
    if not frames:  # no animation: the pose the file was imported in
        scene.frame_set(scene.frame_current)
        verts.append(world_vertices(mesh))
    np.save(out_dir / "vertices.npy", gltf_from_blender(np.array(verts)))
    np.save(out_dir / "rest.npy", gltf_from_blender(rest @ m[:3, :3].T + m[:3, 3]))
    keys = mesh.data.shape_keys
    result = {
        "objects": [[o.name, o.type, o.parent.name if o.parent else None] for o in bpy.data.objects],
        "armature": arm.name,
        "bones": [b.name for b in arm.data.bones],
        "mesh": mesh.name,
        "shape_keys": [b.name for b in keys.key_blocks] if keys else [],
        "fps": scene.render.fps,
        "fps_base": scene.render.fps_base,
        "key_frames": frames,
        "key_times": [frame_to_time(f) for f in frames],
        "keys_per_curve": sorted({len(c.keyframe_points) for c in curves}),
        "num_curves": len(curves),
        "vertex_count": len(mesh.data.vertices),
        "cameras": {o.name: {"matrix_world": [list(r) for r in o.matrix_world], "angle_x": o.data.angle_x,
                             "angle_y": o.data.angle_y, "sensor_fit": o.data.sensor_fit, "type": o.data.type}
                    for o in bpy.data.objects if o.type == "CAMERA"},
        **(extra or {}),
    }
    (out_dir / "result.json").write_text(json.dumps(result))


def main(argv: list[str]) -> None:
    path, out_dir = argv[0], Path(argv[1])
    clip_rate = float(argv[2]) if len(argv) > 2 else None
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    if clip_rate is not None:  # (the README's recipe, as a user types it)
        scene.render.fps = round(clip_rate)
        scene.render.fps_base = clip_rate / round(clip_rate)
    if bpy.ops.import_scene.gltf(filepath=path, disable_bone_shape=True) != {"FINISHED"}:
        raise SystemExit(f"glTF import failed: {path}")
    widen_sliders()
    rate = scene.render.fps * scene.render.fps_base  # the importer's frames per second
    if clip_rate is not None:
        scene.render.fps_base = round(clip_rate) / clip_rate
    report(out_dir, lambda f: f / rate)


if __name__ == "__main__":
    main(sys.argv[1:])

"""GLB -> FBX inside Blender's Python (``bpy``): the script :func:`wbcap.export.fbx.write_fbx` runs
in a subprocess, never imported into wbcap's own process (bpy is large and keeps global state).

Usage: ``python blender_fbx.py IN.glb OUT.fbx FPS [STEP]`` (``FPS`` the clip's rows per second, e.g.
``25`` or ``29.97002997``; ``STEP`` the FBX's frames per row, default 1: the FBX's rate is
``FPS * STEP``, :func:`key_step`). Exit status 0 on success, :data:`EXIT_NO_BPY` when ``bpy``
cannot be imported, 1 on any other failure (traceback on stderr). Blender's chatter goes to
stdout/stderr; the caller sends both to a log file.

Below, the FBX's rate is ``FPS * STEP`` (the clip's rate unless its first row lies between two
of its frames).

Steps (Blender 5.0.1's bundled importers/exporters, ``io_scene_gltf2`` and ``io_scene_fbx``;
options and their reasons are in :mod:`wbcap.export.fbx`):

1. factory-empty scene; scene rate ``round(rate)`` with ``fps_base = 1`` while importing: the glTF
   importer puts a key at ``t * fps * fps_base`` (``io_scene_gltf2/blender/imp/animation_node.py``,
   ``animation_weight.py``; ``fps / fps_base`` would be the scene's true rate, so the product is
   only right for ``fps_base = 1``);
2. import the GLB; scale every key's frame by ``rate / round(rate)`` (1 for a whole rate) and round
   it to a whole frame, so key ``k`` (time ``t0 + k / FPS``, float32 in the GLB) lies exactly on
   frame ``t0 * rate + k * STEP``, and set the scene rate to exactly ``rate`` (:func:`scene_rate`,
   e.g. ``30000 / 1001``); a first key between two frames (no ``STEP`` fitted it) moves the clip
   by less than a frame onto the grid (logged); keys off the grid (a GLB at another rate) are an
   error;
3. widen each animated shape key's slider range to its keyed values: Blender clamps a shape key's
   value to ``[slider_min, slider_max]`` (default ``[0, 1]``) and the glTF importer widens the
   range for the *first* key only (``animation_weight.py``: ``min(coords[1:2])``), which would
   clamp expression coefficients outside ``[0, 1]`` (in Blender's hard limits ``[-10, 10]``);
4. scene frame range = first..last key; scene name = the animation's name (the FBX take name);
5. keep the armature and its skinned meshes only (the glTF mesh node's empty and the source
   camera are dropped), name the armature object ``Armature`` (Unreal's FBX importer skips a
   Blender root node of that name instead of adding it as an extra root bone), the mesh after
   the glTF mesh node (``<track>_body``, :func:`wbcap.export.gltf.mesh_node_name`);
6. turn the armature and mesh *data* by -90 degrees about x and their objects by +90 degrees, so
   the objects look the same in Blender but the FBX exporter's axis conversion (z up -> y up,
   also -90 degrees about x) cancels the object rotation: the FBX root nodes have identity
   transforms, the data is y up (the GLB's frame), and joints keep identity rest rotations;
7. export FBX to ``OUT.fbx`` with :data:`FBX_OPTIONS` and ``bake_anim_step = STEP`` (a sample on
   every row's frame, from the first key's) (the caller gives a temporary name and
   renames it when this succeeds), with ``GlobalSettings``' ``TimeSpanStart`` / ``TimeSpanStop``
   set to the take's first and last key (:func:`_time_span`; Blender writes 0 and 1 s).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("wbcap.blender_fbx")

#: Exit status when ``bpy`` cannot be imported (the caller prints how to install it).
EXIT_NO_BPY = 3

#: ``bpy.ops.import_scene.gltf`` options (see :mod:`wbcap.export.fbx` for the reasons).
GLTF_IMPORT_OPTIONS: dict[str, Any] = {
    "bone_heuristic": "BLENDER",
    "guess_original_bind_pose": True,
    "disable_bone_shape": True,
    "import_shading": "NORMALS",
    "merge_vertices": False,
    "import_scene_extras": False,
}

#: ``bpy.ops.export_scene.fbx`` options (see :mod:`wbcap.export.fbx` for the reasons).
FBX_OPTIONS: dict[str, Any] = {
    "check_existing": False,
    "use_selection": False,
    "use_visible": False,
    "use_active_collection": False,
    "object_types": {"ARMATURE", "MESH"},
    "global_scale": 1.0,
    "apply_unit_scale": True,
    "apply_scale_options": "FBX_SCALE_ALL",
    "axis_forward": "-Z",
    "axis_up": "Y",
    "use_space_transform": True,
    "bake_space_transform": False,
    "use_mesh_modifiers": False,
    "mesh_smooth_type": "FACE",
    "use_triangles": False,
    "use_tspace": False,
    "use_custom_props": False,
    "colors_type": "NONE",
    "add_leaf_bones": False,
    "primary_bone_axis": "Y",
    "secondary_bone_axis": "X",
    "use_armature_deform_only": False,
    "armature_nodetype": "NULL",
    "bake_anim": True,
    "bake_anim_use_all_bones": True,
    "bake_anim_use_nla_strips": False,
    "bake_anim_use_all_actions": False,
    "bake_anim_force_startend_keying": True,
    "bake_anim_step": 1.0,
    "bake_anim_simplify_factor": 0.0,
    "path_mode": "AUTO",
    "embed_textures": False,
    "batch_mode": "OFF",
    "use_metadata": True,
}

#: Largest distance of a key from the clip's frame grid, in frames, beside float32's own spacing
#: there (:func:`grid_tolerance`).
GRID_TOLERANCE = 0.01

#: Blender's last frame (``MAXFRAME``): 9.7 hours at 30 fps.
MAX_FRAME = 1048574

#: The most FBX frames per row :func:`key_step` gives (an FBX rate of up to 60 times the clip's).
MAX_STEP = 60

#: The finest FBX rate :func:`key_step` writes, frames per second: the fastest common camera
#: rate (240 fps slow motion). A finer one would come from a coincidence of the numbers (a
#: variable-rate clip's average rate times some ``m``), not from the source's frames, and engines
#: that resample a clip at its file's rate would do so thousands of times a second (a review:
#: 3000 fps FBXs); Blender's scene rate also ends at 32767.
MAX_KEY_RATE = 240.0

#: A first row this close to a frame, in seconds, is on it (:func:`grid_miss`): Matroska and
#: WebM store times in whole milliseconds, so a constant-rate video's rows lie up to 0.5 ms off
#: its frames; moving a key by under a millisecond shows in no animation.
TIME_JITTER_S = 0.001

#: The armature object's name in the FBX (Unreal drops a root node of this name).
ARMATURE_NAME = "Armature"


def _fcurves(owner: Any) -> list[Any]:
    """The F-curves animating ``owner`` (an object or shape-key block): those of its action's
    channel bag for its slot (Blender 5 actions are layered and slotted; the glTF importer gives
    the armature and the shape keys one action with a slot each)."""
    from bpy_extras import anim_utils

    ad = owner.animation_data
    if ad is None or ad.action is None:
        return []
    bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
    return list(bag.fcurves) if bag is not None else []


def _animated(bpy: Any) -> list[Any]:
    """The objects and shape-key blocks with animation."""
    return [i for i in [*bpy.data.objects, *bpy.data.shape_keys] if _fcurves(i)]


def _shift_keys(curves: list[Any], scale: float, offset: float) -> None:
    """Map every key of ``curves`` from frame ``f`` to ``f * scale + offset`` rounded to a whole
    frame (the float32 jitter of the GLB's times and of Blender's key frames goes), handles
    moved with their key."""
    for curve in curves:
        for key in curve.keyframe_points:
            old = key.co[0]
            new = float(round(old * scale + offset))
            key.co[0] = new
            for handle in (key.handle_left, key.handle_right):
                handle[0] = new + (handle[0] - old) * scale
        curve.update()


def scene_rate(fps: float) -> tuple[int, float]:
    """Blender's ``(render.fps, render.fps_base)`` for ``fps`` frames per second.

    Blender stores ``fps_base`` as float32, so ``30 / 1.001`` is off by 5e-8 (relative); a
    fraction ``n / d`` with small integers (``30000 / 1001``, ``2997 / 100``) is exact. Falls back to
    ``(round(fps), round(fps) / fps)`` when no such fraction is within 1e-9 of ``fps``.
    """
    from fractions import Fraction

    f = Fraction(fps).limit_denominator(1001)
    if f.numerator <= 32767 and abs(f.numerator / f.denominator - fps) <= 1e-9 * fps:
        return f.numerator, float(f.denominator)
    n = max(1, round(fps))
    return n, n / fps


def grid_offset(first_frame: float) -> float:
    """Frames a clip moves so that its first key, at frame ``first_frame`` of the FBX's rate,
    lies on a whole frame (step 2 of the module docstring; also :func:`wbcap.export.fbx.grid_shift`,
    which says it): onto the nearer frame, and from half way between two (within
    :func:`grid_tolerance`, the float32 times' jitter) onto the earlier one. The tracks of one run
    share one grid, so they all move the same way; Python's ``round`` takes a half to the even
    frame (0.5 to 0 but 1.5 to 2), which put the FBXs of one ``--every 2`` run a frame out of step
    with each other (a user trial)."""
    below = math.floor(first_frame)
    part = first_frame - below
    return -part if part <= 0.5 + grid_tolerance(first_frame) else 1.0 - part


def grid_tolerance(frame: float) -> float:
    """Largest distance, in frames, of a key at ``frame`` from the frame grid that still counts as
    on it: :data:`GRID_TOLERANCE` plus twice float32's spacing at ``frame``. The GLB's key times
    are float32 (glTF's only type for them) and so are Blender's key frames: their spacing grows
    with the time, 1/64 frame from frame 131072 (36 min at 60 fps), 1/16 frame at Blender's last
    frame, so a fixed 0.01 frame refused every clip starting an hour or more into a 60 fps video (a
    user trial: "keys up to 0.016 frame off a 60 fps grid"). Still far under the half frame at
    which rounding to the nearest frame would take the wrong one."""
    spacing = 2.0 ** (math.frexp(abs(frame))[1] - 24) if frame else 0.0
    return GRID_TOLERANCE + 2.0 * spacing


def grid_miss(time_s: float, rate: float) -> float:
    """Frames a key at ``time_s`` seconds moves onto the frame grid of ``rate`` frames per second
    (:func:`grid_offset`), or 0.0 where it is on it: within :func:`grid_tolerance` (float32) or
    :data:`TIME_JITTER_S` (millisecond timestamps) of a frame."""
    frame = time_s * rate
    move = grid_offset(frame)
    return 0.0 if abs(move) <= max(grid_tolerance(frame), TIME_JITTER_S * rate) else move


def key_step(first_time: float, fps: float, last_time: float) -> int:
    """FBX frames per row for a clip at ``fps`` rows per second whose rows run from ``first_time``
    to ``last_time`` seconds: the FBX is written at ``m * fps`` frames per second with a key every
    ``m`` frames, for the smallest ``m`` up to :data:`MAX_STEP` (and, above 1, up to
    :data:`MAX_KEY_RATE` frames per second) at which

    * the first row lies on a whole frame (:func:`grid_miss`): Blender's FBX exporter keys whole
      frames of the scene's rate only, so a clip starting between two of its frames (``wbcap run
      --start 0.1 --every 2`` of a 10 fps video: rows at 0.1, 0.3, ... s, 5 fps) had its keys
      moved 0.1 s earlier; at 10 fps with a key every 2 frames they keep the rows' times;
    * and, where some ``m`` allows it, the rate is a whole number: Blender's FBX importer places
      keys by the file's rate rounded to a whole number, so the 3.33 fps of ``--every 3`` of a
      10 fps video landed on the wrong frames there, and at 10 fps they do not (a rate such as
      29.97 fps has no whole multiple: that importer's limit stays).

    ``m`` is ``--every`` for such runs (the source's own rate). 1 where no ``m`` fits, and ``m``
    is never taken when the last row would pass Blender's last frame (:data:`MAX_FRAME`) at
    ``m * fps``: a first row between two frames then moves onto the grid (:func:`grid_offset`,
    said by :func:`wbcap.export.fbx.write_fbx`)."""
    on_grid = [m for m in range(1, MAX_STEP + 1)
               if (m == 1 or fps * m <= MAX_KEY_RATE) and not grid_miss(first_time, fps * m)
               and last_time * fps * m <= MAX_FRAME]
    whole = [m for m in on_grid if abs(fps * m - round(fps * m)) <= 1e-9 * fps * m]
    return (whole or on_grid or [1])[0]


def _retime(bpy: Any, fps: float) -> tuple[int, int] | None:
    """Steps 2 and 4 of the module docstring: keys on whole frames at ``fps``; returns the frame
    range ``(first, last)`` or None for a file without animation.

    Raises:
        RuntimeError: keys off the ``fps`` grid by more than :func:`grid_tolerance` (the
            GLB is not at ``fps``), or past Blender's last frame.
    """
    scene = bpy.context.scene
    rate = scene.render.fps
    curves = [c for i in _animated(bpy) for c in _fcurves(i)]
    frames = sorted({k.co[0] for c in curves for k in c.keyframe_points})
    scene.render.fps, scene.render.fps_base = scene_rate(fps)
    if abs(scene.render.fps / scene.render.fps_base - fps) > 1e-6 * fps:  # (Blender clamps fps to 32767, silently)
        raise RuntimeError(f"Blender's scene cannot run at {fps:g} fps (it holds {scene.render.fps} / "
                           f"{scene.render.fps_base:g})")
    if not frames:
        return None
    scale = fps / rate
    first = frames[0] * scale
    offset = grid_offset(first)
    if abs(offset) > grid_tolerance(first):
        logger.warning("first key at frame %.6f: the clip moves by %+.6f frame onto the frame grid", first, offset)
    else:
        offset = 0.0  # (float32's jitter: each key is rounded to its own frame below)
    misses = [abs(g - round(g)) for g in (f * scale + offset for f in frames) if abs(g - round(g)) > grid_tolerance(g)]
    if misses:
        raise RuntimeError(f"the GLB's keys are up to {max(misses):.3f} frame off a {fps:g} fps grid; "
                           "pass the clip's own fps (clip.fps)")
    _shift_keys(curves, scale, offset)
    last = round(frames[-1] * scale + offset)
    if last > MAX_FRAME:
        raise RuntimeError(f"the clip ends on frame {last} at {fps:g} fps, past Blender's last frame {MAX_FRAME}")
    return round(first + offset), last


def _widen_sliders(bpy: Any) -> None:
    """Step 3 of the module docstring."""
    for key in bpy.data.shape_keys:
        for curve in _fcurves(key):
            if not curve.data_path.endswith(".value"):
                continue
            block = key.path_resolve(curve.data_path.rsplit(".", 1)[0])
            values = [k.co[1] for k in curve.keyframe_points]
            if values:
                block.slider_min = max(-10.0, min(block.slider_min, math.floor(min(values))))
                block.slider_max = min(10.0, max(block.slider_max, math.ceil(max(values))))


def _clean_objects(bpy: Any) -> tuple[Any, list[Any]]:
    """Step 5 of the module docstring; returns the armature and its meshes."""
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    if len(armatures) != 1:
        raise RuntimeError(f"expected one armature in the GLB, found {len(armatures)}")
    arm = armatures[0]
    meshes = [o for o in bpy.data.objects if o.type == "MESH" and o.find_armature() == arm]
    if not meshes:
        raise RuntimeError("the GLB has no mesh skinned by its armature")
    keep = {arm.name, *(m.name for m in meshes)}
    names = {}
    for obj in list(bpy.data.objects):
        if obj.name not in keep:
            names[obj.name] = obj.type
            bpy.data.objects.remove(obj, do_unlink=True)
    for mesh in meshes:  # the glTF node name freed by the dropped empty ('track_3_body.001' -> 'track_3_body')
        base = mesh.name.rsplit(".", 1)[0]
        if base in names and base not in bpy.data.objects:
            mesh.name = base
    arm.name = arm.data.name = ARMATURE_NAME
    for mesh in meshes:
        mesh.data.name = mesh.name
    return arm, meshes


def _identity_roots(bpy: Any, arm: Any, meshes: list[Any]) -> None:
    """Step 6 of the module docstring."""
    from mathutils import Matrix

    up = Matrix.Rotation(math.pi / 2.0, 4, "X")  # object: y-up data shown z up in Blender
    world = {o.name: o.matrix_world.copy() for o in (arm, *meshes)}
    arm.data.transform(up.inverted() @ world[arm.name])
    arm.matrix_world = up
    # the pose keeps the old rest matrices until the armature is re-evaluated from its data
    arm.data.update_tag()
    arm.update_tag(refresh={"OBJECT", "DATA"})
    bpy.context.view_layer.update()
    for mesh in meshes:
        mesh.data.transform(up.inverted() @ world[mesh.name], shape_keys=True)
        mesh.matrix_world = up
        mesh.data.update_tag()
        mesh.update_tag(refresh={"OBJECT", "DATA"})
    bpy.context.view_layer.update()


@contextlib.contextmanager
def _time_span(start_s: float, stop_s: float) -> Iterator[None]:
    """Inside the block Blender's FBX exporter writes ``GlobalSettings``' ``TimeSpanStart`` and
    ``TimeSpanStop`` as ``start_s`` and ``stop_s`` seconds (FBX KTime). Its
    ``fbx_header_elements`` (``io_scene_fbx/export_fbx_bin.py``) writes 0 and one second whatever
    the animation, and the FBX SDK gives that span as the scene's default timeline
    (``FbxGlobalSettings::GetTimelineDefaultTimeSpan``), so a 10 s take showed a 1 s scene there.
    Done by wrapping the module's ``elem_props_set`` (which the function looks up when it runs)
    for these two names; put back when the block ends. The seconds are computed as the exporter
    computes the take's ``LocalStart`` / ``LocalStop`` (frame / scene rate), so the two spans agree."""
    from io_scene_fbx import export_fbx_bin

    span = {b"TimeSpanStart": int(export_fbx_bin.convert_sec_to_ktime(start_s)),
            b"TimeSpanStop": int(export_fbx_bin.convert_sec_to_ktime(stop_s))}
    original = export_fbx_bin.elem_props_set

    def elem_props_set(elem: Any, ptype: str, name: bytes, value: Any = None, *args: Any, **kwargs: Any) -> Any:
        if ptype == "p_timestamp" and name in span:
            value = span[name]
        return original(elem, ptype, name, value, *args, **kwargs)

    export_fbx_bin.elem_props_set = elem_props_set
    try:
        yield
    finally:
        export_fbx_bin.elem_props_set = original


def convert(glb: str, fbx: str, fps: float, step: int = 1) -> None:
    """GLB -> FBX (the steps of the module docstring): ``fps`` the clip's rows per second, ``step``
    the FBX's frames per row (:func:`key_step`)."""
    import bpy

    rate = fps * step
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = max(1, round(rate))
    scene.render.fps_base = 1.0
    if bpy.ops.import_scene.gltf(filepath=glb, **GLTF_IMPORT_OPTIONS) != {"FINISHED"}:
        raise RuntimeError(f"Blender's glTF importer did not finish on {glb}")
    frame_range = _retime(bpy, rate)
    _widen_sliders(bpy)
    arm, meshes = _clean_objects(bpy)
    if frame_range is None:
        scene.frame_start = scene.frame_end = 0
    else:
        scene.frame_start, scene.frame_end = frame_range
        owner = arm if _fcurves(arm) else _animated(bpy)[0]
        scene.name = owner.animation_data.action.name  # the glTF animation's name
    scene.frame_set(scene.frame_start)
    _identity_roots(bpy, arm, meshes)
    options = dict(FBX_OPTIONS, bake_anim=frame_range is not None, bake_anim_step=float(step))
    rate = scene.render.fps / scene.render.fps_base
    span = _time_span(scene.frame_start / rate, scene.frame_end / rate) if frame_range else contextlib.nullcontext()
    with span:
        if bpy.ops.export_scene.fbx(filepath=fbx, **options) != {"FINISHED"}:
            raise RuntimeError(f"Blender's FBX exporter did not finish on {fbx}")
    logger.info("wrote %s: frames %d..%d at %d/%r fps, %d bones, meshes %s", fbx, scene.frame_start, scene.frame_end,
                scene.render.fps, scene.render.fps_base, len(arm.data.bones), [m.name for m in meshes])


def main(argv: list[str]) -> int:
    """Command line: ``IN.glb OUT.fbx FPS [STEP]``; returns the exit status. Messages go to stderr as
    ``wbcap: <message>`` lines (the caller quotes the last one when Blender fails)."""
    from wbcap.subprocesses import end_with_parent

    end_with_parent()  # (a wbcap killed with SIGKILL could not stop this conversion)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wbcap: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if len(argv) not in (3, 4):
        logger.error("usage: blender_fbx.py IN.glb OUT.fbx FPS [STEP]")
        return 2
    try:
        import bpy  # noqa: F401
    except ImportError as exc:
        logger.error("cannot import bpy: %s", exc)
        return EXIT_NO_BPY
    try:
        convert(argv[0], argv[1], float(argv[2]), int(argv[3]) if len(argv) == 4 else 1)
    except Exception as exc:
        logger.debug("traceback", exc_info=True)
        logger.error("%s: %s", type(exc).__name__, " ".join(str(exc).split()))  # the one line the caller quotes
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Import an FBX with Blender's own FBX importer and report its animated mesh and raw FBX content
(run by tests/test_export_blender.py in a subprocess: ``python fbx_read.py FILE.fbx OUT_DIR``).

Importer options: factory defaults (as a user's File > Import > FBX). The importer sets the scene
rate from the file (``fps = round(rate)``, ``fps_base = fps / rate``) and puts a key at FBX time
``t`` on frame ``anim_offset + t * scene.render.fps`` (``io_scene_fbx/import_fbx.py``
``_convert_fbx_time_to_blender_time``; ``anim_offset`` defaults to 1). That is the scene's
integer ``fps``, not ``fps / fps_base``, so the keys of a 29.97 fps file land between frames; the
mesh is evaluated on the keys' own (sub)frames and times are reported back with the same formula.

Besides :func:`glb_read.report`'s files, ``result.json`` gets ``fbx`` (:func:`raw_fbx`), read
from the file itself with Blender's FBX parser (``io_scene_fbx.parse_fbx``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bpy
import glb_read

#: FBX time units per second (``io_scene_fbx/fbx_utils.py`` ``FBX_KTIME``).
FBX_KTIME = 46186158000


def _props(elem: Any) -> dict[str, list[Any]]:
    """``Properties70`` of an FBX element: name -> values."""
    out: dict[str, list[Any]] = {}
    for child in elem.elems:
        if child.id == b"Properties70":
            for p in child.elems:
                out[p.props[0].decode()] = [v.decode() if isinstance(v, bytes) else v for v in p.props[4:]]
    return out


def _name(elem: Any) -> str:
    """An object's name (``b'name\\x00\\x01Class'`` in binary FBX)."""
    return elem.props[1].split(b"\x00\x01")[0].decode()


def raw_fbx(path: str) -> dict[str, Any]:
    """What Unity and Unreal read: global settings, models, shapes, takes and key times.

    Returns a dict: ``channels`` (:func:`_channels`), ``global`` (``UpAxis``, ``UpAxisSign``, ``FrontAxis``, ``FrontAxisSign``,
    ``CoordAxis``, ``CoordAxisSign``, ``UnitScaleFactor``, ``TimeMode``, ``CustomFrameRate``),
    ``time_span`` (``TimeSpanStart``, ``TimeSpanStop``: seconds),
    ``models`` [[name, type, Lcl Translation, Lcl Rotation (degrees), Lcl Scaling]], ``shapes``
    (Shape geometry names), ``stacks`` [[name, LocalStart s, LocalStop s]], ``key_times`` (the
    distinct KeyTime arrays of all animation curves, seconds), ``num_curves``.
    """
    from io_scene_fbx import parse_fbx

    root, _version = parse_fbx.parse(path)
    top = {e.id: e for e in root.elems}
    settings = _props(top[b"GlobalSettings"])
    wanted = ("UpAxis", "UpAxisSign", "FrontAxis", "FrontAxisSign", "CoordAxis", "CoordAxisSign", "UnitScaleFactor",
              "TimeMode", "CustomFrameRate")
    objects = top[b"Objects"].elems
    models = []
    for e in objects:
        if e.id == b"Model":
            p = _props(e)
            models.append([_name(e), e.props[2].decode(), p.get("Lcl Translation", [0.0] * 3),
                           p.get("Lcl Rotation", [0.0] * 3), p.get("Lcl Scaling", [1.0] * 3)])
    stacks = []
    for e in objects:
        if e.id == b"AnimationStack":
            p = _props(e)
            # (a property at its default is left out: a take starting at 0 s has no LocalStart)
            stacks.append([_name(e), p.get("LocalStart", [0])[0] / FBX_KTIME, p["LocalStop"][0] / FBX_KTIME])
    key_times = set()
    curves = {}
    for e in objects:
        if e.id == b"AnimationCurve":
            times = next(c for c in e.elems if c.id == b"KeyTime").props[0]
            key_times.add(tuple(int(t) for t in times))
            curves[e.props[0]] = [float(v) for v in next(c for c in e.elems if c.id == b"KeyValueFloat").props[0]]
    return {
        "channels": _channels(top, objects, curves),
        "global": {k: settings[k][0] for k in wanted if k in settings},
        "time_span": [settings[k][0] / FBX_KTIME for k in ("TimeSpanStart", "TimeSpanStop")],
        "models": models,
        "shapes": [_name(e) for e in objects if e.id == b"Geometry" and e.props[2] == b"Shape"],
        "stacks": stacks,
        "key_times": [[t / FBX_KTIME for t in ts] for ts in sorted(key_times)],
        "num_curves": len(curves),
    }


def _channels(top: dict[bytes, Any], objects: list[Any], curves: dict[int, list[float]]) -> dict[str, dict[str, Any]]:
    """Animated values by target: ``"<model or blend-shape channel>|<property>"`` -> ``{"X": values,
    ...}`` (``Lcl Rotation`` in degrees, Euler XYZ; ``DeformPercent`` under ``"DeformPercent"``),
    following ``Connections`` (curve -> curve node ``d|X``, curve node -> target property)."""
    by_id = {e.props[0]: e for e in objects}
    node_values: dict[int, dict[str, list[float]]] = {}
    targets: dict[int, str] = {}
    for c in top[b"Connections"].elems:
        if c.props[0] != b"OP":
            continue
        child, parent, prop = c.props[1], c.props[2], c.props[3].decode()
        if child in curves:
            node_values.setdefault(parent, {})[prop.removeprefix("d|")] = curves[child]
        elif child in by_id and by_id[child].id == b"AnimationCurveNode" and parent in by_id:
            targets[child] = f"{_name(by_id[parent])}|{prop}"
    return {name: node_values.get(node, {}) for node, name in targets.items()}


def main(argv: list[str]) -> None:
    path, out_dir = argv[0], Path(argv[1])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.import_scene.fbx(filepath=path)
    if result != {"FINISHED"}:
        raise SystemExit(f"FBX import failed: {path}")
    scene = bpy.context.scene
    offset = 1.0  # import_scene.fbx's default anim_offset
    glb_read.report(out_dir, lambda f: (f - offset) / scene.render.fps, {"fbx": raw_fbx(path)})


if __name__ == "__main__":
    main(sys.argv[1:])

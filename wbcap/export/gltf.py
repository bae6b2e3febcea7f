"""One person's motion as a skinned, animated glTF 2.0 binary (``.glb``).

The file follows the glTF 2.0 specification (Khronos, https://registry.khronos.org/glTF/specs/2.0/glTF-2.0.html;
sections "Skins", "Morph Targets", "Animations", "Cameras") and is written with ``pygltflib``.
It opens in Blender (File > Import > glTF 2.0), three.js (``GLTFLoader``), Unity and Unreal
importers, and passes the Khronos glTF validator without errors.

World
-----
glTF's own frame, the y-up world of :mod:`wbcap.export.clip`: metres, ``x`` = camera right,
``y`` = up, ``z`` = from the scene towards the source camera. A person facing the camera faces
``+z``, which is glTF's "front". The source camera sits at the origin with no rotation and looks
down ``-z`` (the y-up world is the OpenCV camera frame turned 180 degrees about ``x``); with
``camera=`` it is written as the node ``source_camera``. A clip of ``wbcap run --world``
(``clip.frame == "world"``) is in the world of the estimated ground instead: gravity ``-y``, the
ground ``y = 0``, and the ``source_camera`` node placed where the camera stands (its translation
and rotation), a fusion's other cameras (``other_cameras=``) nodes of their own names placed
likewise; ``asset.extras.frame`` (and the scene's) says which (``"camera"`` or ``"world"``). Keyframe times are ``clip.times``:
seconds on the source's clock (a video's presentation timestamps), so that the animation lines
up with the footage; the first key may be later than 0 s, and a reader holds it until then.

Content
-------
* 55 joint nodes named as :data:`wbcap.export.rig.JOINT_NAMES_55`, parented as SMPL-X
  (``rig.parents``); rest translation = ``rig.offsets`` (the pelvis: ``rig.rest_joints[0]``),
  rest rotation identity, so the bind pose is the shaped T-pose and each inverse bind matrix is
  ``translation(-rest_joint)``.
* The node ``<clip name>`` (no transform) holding the skeleton's root: the scene's roots are
  it, the mesh node and the camera node (in Blender it becomes the armature object, and the
  camera stays apart from it; the skinned mesh node is a root, as glTF advises).
* A mesh node ``<clip name>_body`` (:func:`mesh_node_name`) skinned by them (the skin: ``<clip name>``) (``JOINTS_0``/``WEIGHTS_0``: each vertex's 4 largest
  SMPL-X weights, renormalised; :func:`wbcap.export.rig.build_rig`), rest mesh = the shaped
  SMPL-X template, with ``E`` expression morph targets (``expression_00`` ...; names in
  ``mesh.extras.targetNames``, which three.js and Blender read).
* One animation named ``clip.name``: per joint a rotation channel (unit quaternions ``XYZW``,
  consecutive keys in the same hemisphere), the pelvis translation, and the morph weights (one
  row of expression coefficients per key), all ``LINEAR`` (rotations: slerp). A one-row clip
  (a photo) has no animation: the pose is the nodes' own TRS and the expression the mesh's
  default weights.
* ``scene.extras`` and ``asset.extras``: units, up axis, frame (``camera``/``world``; with
  ``world`` also the ground and ``camera_position_m``), fps, first time, source frame indices,
  valid flags, betas, the dropped skin weight, whether the file is exact.

What linear blend skinning cannot express
-----------------------------------------
SMPL-X (Pavlakos et al. 2019, eq. 1-3; ``smplx/lbs.py``) adds to LBS of the shaped mesh two
terms a glTF skin cannot hold:

* pose-corrective blend shapes (``posedirs``, linear in ``R - I`` of the 54 non-root joints),
  which fix the volume of bent elbows, knees, shoulders and fingers;
* expression-dependent joints: SMPL-X regresses its joints from the shaped *and expressed*
  mesh, so the expression moves the jaw, neck and eye joints slightly; the file's skeleton
  depends on the shape only.

A plain file therefore shows :func:`wbcap.export.rig.lbs_vertices` (the 4-influence skin plus
expression morphs), not the SMPL-X mesh.

The exact option
----------------
``write_glb(..., exact_vertices=smplx_rows(body, clip))`` (:func:`wbcap.export.clip.smplx_rows`) adds one morph target per row
``t``: the rest-space residual ``d = (sum_k w_k R_k)^-1 (v_exact - v_lbs)``
(``R_k`` the rotation part of the vertex's 4 skinning matrices at key ``t``; skinning is affine
in the rest position, so ``d`` moves the skinned vertex by exactly ``v_exact - v_lbs``), so
that the skinned vertex equals the SMPL-X vertex at every key; its weight is 1 at key ``t`` and
0 at the other keys, so between two keys the two residuals blend linearly. On the synthetic test
model the file then matches SMPL-X to about 2e-6 m at the keys, where the plain file is off by up
to 20 mm (mean 5 mm; the correctives dominate, the expression-dependent joints add up to 1.4 mm).

Size (measured by ``tests/test_export_gltf.py``, SMPL-X's 10,475 vertices, 10 expression
coefficients): a plain file is about 1.86 MB (rest mesh, normals, skin, indices, expression
targets) plus about 0.97 kB per row (55 quaternions, a translation, 10 weights, a time, the row's
metadata). The exact option adds about 126 kB per row: ``12 V`` bytes (125,700) for the float32
residual, about 350 bytes of JSON for its accessor, and one more weight per row in every row of
the weights channel (``4 T`` bytes per row, so the channel grows as ``T^2``). Each row is a morph
target, so readers also slow down with long clips (Blender makes one shape key per row; three.js
packs the targets into a texture array, at most ``MAX_ARRAY_TEXTURE_LAYERS``, often 2048): use
it for photos and short clips.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wbcap.atomic import atomic_write_bytes, final_path
from wbcap.errors import JSON_ERRORS, InputError
from wbcap.export.rig import Rig, lbs_vertices, skinning_transforms

if TYPE_CHECKING:
    import pygltflib

    from wbcap.camera import ImageCamera
    from wbcap.export.clip import MotionClip

__all__ = ["CAMERA_NODE_NAME", "PlacedCamera", "mesh_node_name", "write_glb"]

logger = logging.getLogger(__name__)

def mesh_node_name(clip_name: str) -> str:
    """The skinned mesh's node (and mesh) name in the GLB of the clip ``clip_name``:
    ``<clip_name>_body`` (``track_3_body``). The skin is named ``clip_name``: Blender names the
    armature and the mesh objects after them, so the people of several files stay apart."""
    return f"{clip_name}_body"


#: Name of the source camera's node.
CAMERA_NODE_NAME = "source_camera"


@dataclass(frozen=True)
class PlacedCamera:
    """One more camera of a clip in a world frame, written as a camera node of its own beside
    ``source_camera`` (a fusion's other cameras: ``wbcap fuse``).

    Attributes:
        name: the node's (and camera's) name, e.g. ``camera_cam02``; not ``source_camera``.
        camera: its intrinsics (:class:`wbcap.camera.ImageCamera`).
        rotation: ``(3, 3)`` float, OpenCV camera axes -> the clip's world, in the world ``up``
            (a point ``x_c`` of the camera frame is at ``rotation @ x_c + position``), as
            ``MotionClip.camera_rotation``.
        position: ``(3,)`` float, metres, the camera's centre in that world.
        up: the world's up axis, ``"z"`` (an AMASS npz's: a fusion's track files) or ``"y"``.
    """

    name: str
    camera: ImageCamera
    rotation: np.ndarray
    position: np.ndarray
    up: str = "z"


_FLOAT = 5126  # glTF componentType codes (spec 3.6.2.2 "Accessor Data Types")
_UNSIGNED_BYTE = 5121
_UNSIGNED_SHORT = 5123
_UNSIGNED_INT = 5125
_ARRAY_BUFFER = 34962  # bufferView.target (spec 3.6.1.2)
_ELEMENT_ARRAY_BUFFER = 34963
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
_COMPONENTS = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint8): _UNSIGNED_BYTE,
               np.dtype(np.uint16): _UNSIGNED_SHORT, np.dtype(np.uint32): _UNSIGNED_INT}


@dataclass
class _Blob:
    """The binary chunk being built: arrays appended as bufferView + accessor pairs."""

    gltf: pygltflib.GLTF2
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def add(self, array: np.ndarray, *, target: int | None = None, min_max: bool = False) -> int:
        """Append ``array`` ((N,) or (N, C), a dtype of :data:`_COMPONENTS`) as one tightly packed
        bufferView (4-byte aligned, GLB spec 4.4.3.3) and accessor; returns the accessor index."""
        import pygltflib

        a = np.ascontiguousarray(array)
        width = 1 if a.ndim == 1 else int(np.prod(a.shape[1:]))
        data = a.tobytes()
        self.gltf.bufferViews.append(
            pygltflib.BufferView(buffer=0, byteOffset=self.size, byteLength=len(data), target=target)
        )
        self.chunks.append(data + b"\0" * (-len(data) % 4))
        self.size += len(data) + (-len(data) % 4)
        flat = a.reshape(a.shape[0], width)
        accessor = pygltflib.Accessor(
            bufferView=len(self.gltf.bufferViews) - 1,
            componentType=_COMPONENTS[a.dtype],
            count=int(a.shape[0]),
            type=_TYPES[width],
        )
        if min_max:  # exact float32 values, as the validator compares them
            accessor.min = [float(v) for v in flat.min(0)]
            accessor.max = [float(v) for v in flat.max(0)]
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1

    def bytes(self) -> bytes:
        return b"".join(self.chunks)


def _quaternions(poses: np.ndarray) -> np.ndarray:
    """``(T, 55, 3)`` axis-angle -> ``(T, 55, 4)`` unit quaternions ``XYZW`` (glTF's order, spec
    5.29 ``node.rotation``), each key in the hemisphere of the previous one (so that readers that
    interpolate without the shortest-path test also turn the short way)."""
    from scipy.spatial.transform import Rotation

    p = np.asarray(poses, np.float64)
    q = Rotation.from_rotvec(p.reshape(-1, 3)).as_quat().reshape(*p.shape[:-1], 4)
    for t in range(1, q.shape[0]):
        flip = np.einsum("jc,jc->j", q[t], q[t - 1]) < 0
        q[t, flip] *= -1.0
    return q


def _skin_weights_float32(rig: Rig) -> tuple[np.ndarray, np.ndarray]:
    """``JOINTS_0`` (V, 4) uint8 and ``WEIGHTS_0`` (V, 4) float32 whose rows sum to 1 in the
    validator's check (the largest weight absorbs the float32 rounding); unused influences point
    at joint 0 (spec 3.7.3.3: "unused joint values SHOULD be set to zero")."""
    w = np.asarray(rig.skin_weights, np.float32).copy()
    w[:, 0] = (1.0 - w[:, 1:].astype(np.float64).sum(1)).astype(np.float32)
    j = np.where(w > 0, rig.skin_joints, 0).astype(np.uint8)
    return j, w


def _normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals (V, 3) float32 of the rest mesh, the overlay renderer's
    (:func:`wbcap.export.render.vertex_normals`); a vertex in no face gets +z."""
    from wbcap.export.render import vertex_normals

    return vertex_normals(vertices, faces)


def _checked(rig: Rig, clip: MotionClip, exact_vertices: np.ndarray | None, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Validate the inputs; returns the float32 key times (T,) and the expression (T, E_rig)."""
    t = len(clip)
    if t < 1:
        raise ValueError(f"{path}: the clip {clip.name!r} has no rows; export a clip with at least one row")
    if clip.poses.shape != (t, 55, 3) or clip.transl.shape != (t, 3):
        raise ValueError(f"{path}: clip poses/transl must be (T, 55, 3)/(T, 3), got {clip.poses.shape}/{clip.transl.shape}")
    betas = np.zeros(max(rig.betas.size, clip.betas.size))
    betas[: clip.betas.size] = clip.betas
    rig_betas = np.zeros_like(betas)
    rig_betas[: rig.betas.size] = rig.betas
    if not np.allclose(betas, rig_betas, atol=1e-4):
        raise ValueError(f"{path}: the rig was built for other betas than the clip's; use build_rig(body, clip.betas)")
    e_rig = rig.expression_dirs.shape[2]
    expr = np.zeros((t, e_rig))
    e_clip = np.asarray(clip.expression, np.float64).reshape(t, -1)
    if e_clip.shape[1] > e_rig and np.any(e_clip[:, e_rig:] != 0):
        raise ValueError(
            f"{path}: the clip has {e_clip.shape[1]} expression coefficients, the rig {e_rig}; "
            "build the body layer with num_expression >= the clip's"
        )
    expr[:, : min(e_rig, e_clip.shape[1])] = e_clip[:, :e_rig]
    times = np.asarray(clip.times, np.float64).reshape(-1).astype(np.float32)
    if times.shape != (t,) or not np.all(np.isfinite(times)):
        raise ValueError(f"{path}: clip times must be (T,) finite seconds")
    if t > 1 and (times[0] < 0 or np.any(np.diff(times) <= 0)):
        raise ValueError(
            f"{path}: glTF key times must be >= 0 and strictly increasing in float32 "
            f"(spec 3.11), got {times[0]}..{times[-1]} s; shift the clip's times"
        )
    for name, value in (("poses", clip.poses), ("transl", clip.transl), ("expression", expr)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: the clip's {name} have NaN/inf values; fill or drop those rows first")
    if exact_vertices is not None:
        shape = (t, rig.rest_vertices.shape[0], 3)
        if np.shape(exact_vertices) != shape:
            raise ValueError(f"{path}: exact_vertices must be {shape} (wbcap.export.clip.smplx_rows(body, clip)), "
                             f"got {np.shape(exact_vertices)}")
    return times, expr


def _exact_residuals(rig: Rig, poses: np.ndarray, transl: np.ndarray, expression: np.ndarray,
                     exact: np.ndarray) -> np.ndarray:
    """Rest-space residuals ``(T, V, 3)`` float64 that make the 4-joint skin (with expression
    morphs) equal ``exact`` at each row: ``d = (sum_k w_k R_k)^-1 (v_exact - v_lbs)``. Skinning
    is affine in the rest position (``x -> A x + b`` with ``A = sum_k w_k R_k``), so adding ``d``
    moves the skinned vertex by ``A d``."""
    out = np.empty((poses.shape[0], *rig.rest_vertices.shape))
    for s in range(0, poses.shape[0], 16):  # rows in chunks: (16, V, 3, 3) at a time
        sl = slice(s, s + 16)
        rot, _ = skinning_transforms(rig, poses[sl], transl[sl])
        a = np.einsum("vk,tvkab->tvab", rig.skin_weights, rot[:, rig.skin_joints])
        v_lbs = lbs_vertices(rig, poses[sl], transl[sl], expression[sl])
        diff = np.asarray(exact[sl], np.float64) - v_lbs
        out[sl] = np.linalg.solve(a, diff[..., None])[..., 0]
    return out


def _metadata(rig: Rig, clip: MotionClip, exact: bool, expr_count: int,
              source_start: float | None = None) -> dict[str, Any]:
    """What a reader needs to line the file up with its source (JSON-able)."""
    from wbcap.versions import wbcap_version

    world = clip.frame == "world"
    calibrated = world and clip.ground_from == "calibration"
    levelled = world and clip.ground_from == "calibration_levelled"  # (wbcap.fuse.level.LEVELLED)
    extra: dict[str, Any] = {}
    if world:
        _, position = clip.camera_pose()
        extra = {"ground": ("y = 0 (the floor of the camera's calibration, its z = 0; gravity is -y)" if calibrated else
                            "y = 0 (the floor the fused people's feet give in their cameras' calibration's frame; "
                            "gravity is -y)" if levelled else
                            "y = 0 (the ground estimated by wbcap run --world; gravity is -y)"),
                 "camera_position_m": [float(v) for v in position]}
    return {
        "generator": f"wbcap {wbcap_version()}",
        "clip": clip.name,
        "units": "metres",
        "up_axis": "y",
        "frame": clip.frame,
        **extra,
        "front_axis": (f"+z (the calibration's -y: its z-up world as glTF's y-up, x kept; the camera is the node "
                       f"{CAMERA_NODE_NAME})" if calibrated else
                       "+z (the levelled world's -y, whose x is the calibration's x laid on the floor and whose origin "
                       f"lies on the floor under the calibration's; the camera is the node {CAMERA_NODE_NAME})"
                       if levelled else
                       "+z (the source camera's backward direction laid on the ground; the camera is the node "
                       f"{CAMERA_NODE_NAME}, above the origin)" if world else
                       "+z (towards the source camera, which sits at the origin looking down -z)"),
        **({"time": "key times are seconds on the source's clock (first_time_s is the first key)"} if source_start is None
           else {"time": "key times are seconds from the clip's first row, which is source_start_s on the source's clock",
                 "source_start_s": float(source_start)}),
        "fps": float(clip.fps),
        "first_time_s": float(clip.times[0]),
        "num_rows": len(clip),
        "frame_indices": [int(v) for v in np.asarray(clip.frame_indices).reshape(-1)],
        "valid": [bool(v) for v in np.asarray(clip.valid).reshape(-1)],
        "betas": [float(v) for v in rig.betas],
        "expression_targets": expr_count,
        "dropped_skin_weight": float(rig.dropped_weight),
        "exact": bool(exact),
        "exact_note": ("one morph target per row restores the SMPL-X mesh (pose correctives, expression "
                       "joints) at every key" if exact else
                       "linear blend skinning only: no SMPL-X pose correctives, no expression-dependent joints"),
    }


def _camera(camera: ImageCamera, name: str = CAMERA_NODE_NAME) -> pygltflib.Camera:
    """A camera as a glTF perspective camera (spec 3.10), its principal point offset in extras."""
    import pygltflib

    w, h = camera.image_size
    off = (float(camera.princpt[0] - w / 2.0), float(camera.princpt[1] - h / 2.0))
    return pygltflib.Camera(
        name=name,
        type="perspective",
        perspective=pygltflib.Perspective(yfov=camera.yfov, aspectRatio=camera.aspect, znear=0.01),
        extras={
            "focal_px": [float(v) for v in camera.focal],
            "principal_point_px": [float(v) for v in camera.princpt],
            "image_size_px": [int(w), int(h)],
            "principal_point_offset_px": list(off),
            "note": ("glTF perspective cameras have their principal point at the image centre; "
                     + (f"this camera's is off by ({off[0]:.3f}, {off[1]:.3f}) pixels (x right, y down), "
                        "which the file cannot express (shift the rendered image by that much)"
                        if max(abs(off[0]), abs(off[1])) >= 5e-4 else "so is this camera's")),
        },
    )


#: The name of the joint ``write_glb(..., root_bone=True)`` adds above the pelvis (Unreal's and
#: Unity's convention for a root-motion bone).
ROOT_BONE = "root"


def write_glb(
    path: str | Path,
    rig: Rig,
    clip: MotionClip,
    *,
    camera: ImageCamera | None = None,
    exact_vertices: np.ndarray | None = None,
    intermediate: bool = False,
    root_bone: bool = False,
    source_start: float | None = None,
    other_cameras: tuple[PlacedCamera, ...] = (),
) -> Path:
    """Write one clip as a skinned, animated ``.glb`` (see the module docstring), atomically.

    Args:
        path: the ``.glb`` to write (its folder must exist; replaced if present).
        rig: :func:`wbcap.export.rig.build_rig` for the clip's betas.
        clip: the motion; turned into the y-up world (``clip.in_world('y')``) if it is z up.
            One row writes a static pose (no animation).
        camera: the source's :class:`wbcap.camera.ImageCamera`, written as the node
            ``source_camera`` (origin, no rotation, ``yfov``/``aspectRatio`` from it, ``znear``
            0.01 m, no ``zfar``).
        other_cameras: more cameras of a clip in a world frame (``clip.frame == "world"``), each
            a node of its name after ``source_camera``, placed as that one is;
            ``asset.extras.other_cameras`` lists their names.
        exact_vertices: ``(T, V, 3)`` metres, the SMPL-X mesh of each row in the world of the
            ``clip`` given (``clip.up``; :func:`wbcap.export.clip.smplx_rows` ``(body, clip)``): adds the
            per-row morph targets that make the file show it exactly at each key.
        intermediate: a file that is no output, only read by the next step and deleted (the GLB
            an FBX is made from, in a temporary folder): its "wrote" line is logged at DEBUG.
        source_start: the source's time (seconds) of key time 0, for a clip whose times were
            moved to start at 0 (``AnimationExport.start_at_zero``): ``asset.extras.source_start_s``
            (None: the keys are on the source's clock).
        root_bone: add a joint ``root`` above the pelvis (:data:`ROOT_BONE`), for game engines'
            root motion: at rest at the origin with the rest (bind) pose standing on it, the
            lowest rest vertex at ``y = 0`` (:func:`rest_lift`: the pose was SMPL-X's, whose
            origin is at the chest, feet 1.3 m below the root: a game developer's trial), keyed
            at the pelvis's ground projection (its ``x`` and ``z``, ``y = 0``: the ground in the
            world frame, the camera's height in the camera frame), no rotation; the pelvis keyed
            relative to it. The skinned mesh is the same at every key.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: a clip that does not fit the rig (betas, expression size), non-finite
            values, key times that are negative or not increasing in float32,
            ``exact_vertices`` of the wrong shape, or ``other_cameras`` of a clip in a camera's
            frame, named alike or ``source_camera``.
    """
    import pygltflib

    from wbcap.export.clip import YUP_FROM_ZUP
    from wbcap.versions import wbcap_version

    path = Path(path)
    if exact_vertices is not None and clip.up == "z":
        exact_vertices = np.asarray(exact_vertices, np.float64) @ YUP_FROM_ZUP.T
    names = [c.name for c in other_cameras]
    if other_cameras and (clip.frame != "world" or len(set(names)) < len(names) or CAMERA_NODE_NAME in names):
        raise ValueError(f"{path}: scene cameras {names} need a clip in a world frame and names of their own")
    turns = {"z": YUP_FROM_ZUP, "y": np.eye(3)}
    if any(c.up not in turns for c in other_cameras):
        raise ValueError(f"{path}: scene cameras' up must be 'z' or 'y', got {[c.up for c in other_cameras]}")
    placed = [(c.name, c.camera, _camera_node_pose(turns[c.up] @ np.asarray(c.rotation, np.float64),
                                                   turns[c.up] @ np.asarray(c.position, np.float64)))
              for c in other_cameras]
    clip = clip.in_world("y")
    times, expr = _checked(rig, clip, exact_vertices, path)
    n_rows = len(clip)
    n_expr = expr.shape[1]
    poses = np.asarray(clip.poses, np.float64)
    transl = np.asarray(clip.transl, np.float64)
    animated = n_rows > 1

    gltf = pygltflib.GLTF2()
    blob = _Blob(gltf)
    gltf.asset = pygltflib.Asset(version="2.0", generator=f"wbcap {wbcap_version()}")
    meta = _metadata(rig, clip, exact_vertices is not None, n_expr, source_start)
    if placed:
        meta["other_cameras"] = names
    gltf.asset.extras = meta

    quats = _quaternions(poses).astype(np.float32)
    pelvis = rig.rest_joints[0] + transl  # (T, 3) the pelvis's position, the clip's y-up world
    root = pelvis * np.array([1.0, 0.0, 1.0]) if root_bone else None  # (T, 3) its ground projection
    lift = rest_lift(rig) if root_bone else np.zeros(3)  # (rest geometry only: the keys place the pelvis)
    if root_bone:
        meta["root_bone"] = ROOT_BONE
        meta["rest_lift_m"] = [float(v) for v in lift]
    _add_joint_nodes(gltf, rig, quats, pelvis if root is None else pelvis - root, animated, lift)
    if root is not None:
        gltf.nodes.append(pygltflib.Node(name=ROOT_BONE, children=[0], translation=[float(v) for v in (
            root[0].astype(np.float32) if not animated else np.zeros(3, np.float32))]))
    targets, weights = _add_mesh(gltf, blob, rig, expr, poses, transl, exact_vertices, animated, clip.name, lift)
    source = [] if camera is None else [
        (CAMERA_NODE_NAME, camera, _camera_node_pose(*clip.camera_pose()) if clip.frame == "world" else None)]
    mesh_node = _add_skin_and_scene(gltf, blob, rig, clip.name, [*source, *placed], meta, root_bone, lift)
    if animated:
        _add_animation(gltf, blob, rig, clip.name, times, quats, pelvis if root is None else pelvis - root, mesh_node,
                       weights if targets else None, root)

    gltf.buffers.append(pygltflib.Buffer(byteLength=blob.size))
    gltf.set_binary_blob(blob.bytes())
    atomic_write_bytes(path, b"".join(gltf.save_to_bytes()))
    logger.log(logging.DEBUG if intermediate else logging.INFO, "wrote %s (%d row%s, %d morph targets, %d bytes)",
               final_path(path), n_rows, "" if n_rows == 1 else "s", len(targets), path.stat().st_size)
    return path


def rest_lift(rig: Rig) -> np.ndarray:
    """``(3,)`` metres: how far up (+y, the body model's up) the rest pose moves so that its lowest
    vertex (the soles, in the T-pose) is at ``y = 0``: ``(0, -min y, 0)``."""
    return np.array([0.0, -float(rig.rest_vertices[:, 1].min()), 0.0])


def _add_joint_nodes(gltf: Any, rig: Rig, quats: np.ndarray, pelvis: np.ndarray, animated: bool,
                     lift: np.ndarray) -> None:
    """Nodes 0..54: the joints in model order, rest translation = offsets (the pelvis's moved by
    ``lift``, :func:`rest_lift`); a static file (one row) also gets the row's rotations and the
    pelvis position (``pelvis`` ``(T, 3)``, in its parent's frame)."""
    import pygltflib

    offsets = rig.offsets
    offsets[0] += lift
    for j, name in enumerate(rig.joint_names):
        node = pygltflib.Node(name=name, translation=[float(v) for v in offsets[j].astype(np.float32)])
        if not animated:
            node.rotation = [float(v) for v in quats[0, j]]
            if j == 0:
                node.translation = [float(v) for v in pelvis[0].astype(np.float32)]
        node.children = [int(c) for c in np.flatnonzero(rig.parents == j)]
        gltf.nodes.append(node)


def _add_mesh(gltf: Any, blob: _Blob, rig: Rig, expr: np.ndarray, poses: np.ndarray, transl: np.ndarray,
              exact_vertices: np.ndarray | None, animated: bool, name: str, lift: np.ndarray) -> tuple[list, np.ndarray]:
    """The skinned mesh (named :func:`mesh_node_name` of the clip ``name``; its rest positions
    moved by ``lift``, :func:`rest_lift`) with its morph targets (expression, then the exact rows);
    returns the targets and the ``(T, n_targets)`` float32 morph weights per row."""
    import pygltflib

    n_rows, n_expr = expr.shape
    v = rig.rest_vertices.shape[0]
    attributes = pygltflib.Attributes(
        POSITION=blob.add((rig.rest_vertices + lift).astype(np.float32), target=_ARRAY_BUFFER, min_max=True),
        NORMAL=blob.add(_normals(rig.rest_vertices, rig.faces), target=_ARRAY_BUFFER),
    )
    joints_0, weights_0 = _skin_weights_float32(rig)
    attributes.JOINTS_0 = blob.add(joints_0, target=_ARRAY_BUFFER)
    attributes.WEIGHTS_0 = blob.add(weights_0, target=_ARRAY_BUFFER)
    index_dtype = np.uint16 if v <= 65535 else np.uint32
    indices = blob.add(rig.faces.reshape(-1).astype(index_dtype), target=_ELEMENT_ARRAY_BUFFER)
    targets: list[pygltflib.Attributes] = []
    names: list[str] = []
    for e in range(n_expr):
        delta = rig.expression_dirs[..., e].astype(np.float32)
        targets.append(pygltflib.Attributes(POSITION=blob.add(delta, target=_ARRAY_BUFFER, min_max=True)))
        names.append(f"expression_{e:02d}")
    if exact_vertices is not None:
        residuals = _exact_residuals(rig, poses, transl, expr, np.asarray(exact_vertices))
        for t in range(n_rows):
            acc = blob.add(residuals[t].astype(np.float32), target=_ARRAY_BUFFER, min_max=True)
            targets.append(pygltflib.Attributes(POSITION=acc))
            names.append(f"exact_row_{t:05d}")
    # morph weights per row: expression, then the exact row indicator (identity)
    weights = np.concatenate([expr, np.eye(n_rows)], 1) if exact_vertices is not None else expr
    weights = weights.astype(np.float32)
    primitive = pygltflib.Primitive(attributes=attributes, indices=indices, mode=pygltflib.TRIANGLES)
    mesh = pygltflib.Mesh(name=mesh_node_name(name), primitives=[primitive])
    if targets:
        primitive.targets = targets
        mesh.extras = {"targetNames": names}
        mesh.weights = [float(w) for w in weights[0]] if not animated else [0.0] * len(targets)
    gltf.meshes.append(mesh)
    return targets, weights


def _camera_node_pose(rotation: np.ndarray, position: np.ndarray) -> tuple[list[float], list[float]]:
    """A camera node's ``(rotation XYZW, translation)`` for a camera at ``rotation`` (OpenCV
    camera axes -> the clip's y-up world) and ``position`` (metres there): a glTF camera looks
    down its -z with +y up, i.e. OpenCV's axes with y and z flipped, so the node's rotation is
    ``rotation @ diag(1, -1, -1)``."""
    from scipy.spatial.transform import Rotation

    quat = Rotation.from_matrix(rotation @ np.diag([1.0, -1.0, -1.0])).as_quat()  # x, y, z, w
    return [float(v) for v in quat], [float(v) for v in position]


def _add_skin_and_scene(gltf: Any, blob: _Blob, rig: Rig, name: str,
                        cameras: list[tuple[str, ImageCamera, tuple[list[float], list[float]] | None]], meta: dict,
                        root_bone: bool, lift: np.ndarray) -> int:
    """The skin (joints in model order, inverse bind = translation(-(rest joint + ``lift``)), column-major;
    with ``root_bone`` the root, node 55, last: its inverse bind the identity), the mesh node, a
    node per camera of ``cameras`` (``(name, camera, pose)``: at the pose, ``(rotation XYZW,
    translation)``, or at the origin with no rotation where it is None), the person's node
    ``name`` (last) holding the skeleton's root, and the scene; returns the mesh node's index."""
    import pygltflib

    n = 56 if root_bone else 55
    ibm = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    ibm[:55, :3, 3] = -(rig.rest_joints + lift).astype(np.float32)
    gltf.skins.append(pygltflib.Skin(
        name=name, joints=list(range(n)), skeleton=55 if root_bone else 0,
        inverseBindMatrices=blob.add(np.ascontiguousarray(ibm.transpose(0, 2, 1)).reshape(n, 16)),
    ))
    mesh_node = len(gltf.nodes)
    gltf.nodes.append(pygltflib.Node(name=mesh_node_name(name), mesh=0, skin=0))
    camera_nodes = []
    for camera_name, camera, camera_pose in cameras:
        camera_nodes.append(len(gltf.nodes))
        node = pygltflib.Node(name=camera_name, camera=len(gltf.cameras))
        gltf.cameras.append(_camera(camera, camera_name))
        if camera_pose is not None:
            node.rotation, node.translation = camera_pose
        gltf.nodes.append(node)
    # The skeleton under a node of its own: Blender's importer makes a skeleton that has no
    # parent node the parent of every other root node (a trial found the camera moving with the
    # character). The skinned mesh node stays a root (glTF: parent transforms do not move it).
    gltf.nodes.append(pygltflib.Node(name=name, children=[55 if root_bone else 0]))
    # (the scene named apart from that node: three.js's loader gave the node `track_0_1` when both were
    # `track_0`, a break-it trial)
    gltf.scenes.append(pygltflib.Scene(name=f"{name}_scene", nodes=[len(gltf.nodes) - 1, mesh_node, *camera_nodes],
                                       extras=meta))
    gltf.scene = 0
    return mesh_node


def _add_animation(gltf: Any, blob: _Blob, rig: Rig, name: str, times: np.ndarray, quats: np.ndarray,
                   pelvis: np.ndarray, mesh_node: int, weights: np.ndarray | None, root: np.ndarray | None = None) -> None:
    """One LINEAR animation: a rotation channel per joint, the pelvis translation (``pelvis``
    ``(T, 3)``, in its parent's frame), the root's (``root`` ``(T, 3)``, node 55, when there is
    one), the morph weights (when the mesh has targets), all on ``times``."""
    import pygltflib

    time_acc = blob.add(times, min_max=True)
    samplers: list[pygltflib.AnimationSampler] = []
    channels: list[pygltflib.AnimationChannel] = []

    def channel(node: int, path_: str, output: np.ndarray) -> None:
        samplers.append(pygltflib.AnimationSampler(input=time_acc, output=blob.add(output), interpolation="LINEAR"))
        channels.append(pygltflib.AnimationChannel(
            sampler=len(samplers) - 1, target=pygltflib.AnimationChannelTarget(node=node, path=path_)))

    for j in range(55):
        channel(j, "rotation", np.ascontiguousarray(quats[:, j]))
    channel(0, "translation", pelvis.astype(np.float32))
    if root is not None:
        channel(55, "translation", root.astype(np.float32))
    if weights is not None:
        channel(mesh_node, "weights", weights.reshape(-1))
    gltf.animations.append(pygltflib.Animation(name=name, samplers=samplers, channels=channels))


def glb_fix(path: str | Path) -> str:
    """The fix of a damaged track GLB: writing it again from its run folder (a ``wbcap fuse``
    folder's, holding ``fuse.json``: fusing again)."""
    if (Path(path).parent / "fuse.json").is_file():
        return "fuse the runs again with --overwrite (fuse.json lists them)"
    return f"write it again with `wbcap export {Path(path).parent}`"


def glb_json(path: str | Path) -> dict[str, Any]:
    """The JSON chunk of a ``.glb`` (glTF 2.0 spec, section 4.4: 12-byte header, then the JSON chunk).

    Raises:
        InputError: not a GLB file, or a damaged one (shorter than its header says, a JSON chunk
            that is not a JSON object); naming the file and ``wbcap export <its folder>`` as the fix.
    """
    path = Path(path)
    fix = glb_fix(path)
    with open(path, "rb") as fh:
        head = fh.read(20)
        if len(head) < 20:
            raise InputError(f"{path}: not a GLB file (too short); {fix}")
        magic, _version, length, size, kind = struct.unpack("<4sIIII", head)
        if magic != b"glTF" or kind != 0x4E4F534A:  # "JSON"
            raise InputError(f"{path}: not a GLB file; {fix}")
        actual = os.fstat(fh.fileno()).st_size
        if actual != length or 20 + size > length:
            raise InputError(f"{path}: a damaged GLB file ({actual} bytes, where its header says {length}: cut "
                             f"short?); {fix}")
        try:
            g = json.loads(fh.read(size))
        except JSON_ERRORS as exc:
            raise InputError(f"{path}: a damaged GLB file (its JSON: {exc}); {fix}") from None
    if not isinstance(g, dict):
        raise InputError(f"{path}: a damaged GLB file (its JSON is not an object); {fix}")
    return g

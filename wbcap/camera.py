"""Cameras and coordinate frames of wbcap, in one place.

Every function here is pure and batched (torch; a ``_np`` variant exists where a numpy caller
needs one) and computes in the dtype type promotion gives its inputs: pass float64 for exact
geometry. Importing this module does not import torch, and the camera maps' ``_np`` variants
(:func:`crop_to_image_camera_np` and the shared-camera ones) evaluate the same formula in numpy,
so a numpy-only caller (``wbcap view`` of a photo folder) never loads it (~1 s).

Conventions
-----------
* **OpenCV camera frame** (every 3D result of wbcap unless said otherwise): origin at the camera
  centre, ``x`` right, ``y`` down, ``z`` forward (into the scene), metres.
* **Pinhole camera** ``(focal, princpt)``: ``focal = (fx, fy)`` and ``princpt = (cx, cy)`` in
  pixels of some image; a point ``(x, y, z)`` lands on pixel ``(fx x / z + cx, fy y / z + cy)``
  (Hand4Whole's projection, upstream ``main/model.py`` ``Model.get_coord``; pixels x right,
  y down).
* **Rotations** are ``(3, 3)`` matrices acting on column vectors; axis-angle vectors are
  ``(..., 3)``, radians (see :mod:`wbcap.body.rotations`).

The cameras of one person
-------------------------
1. **Virtual crop camera.** Hand4Whole regresses the body's translation ``cam_trans`` in a
   virtual camera of its 256x192 body input (``ModelConfig.input_body_shape``): focal
   ``(5000, 5000)`` and principal point ``(96, 128)`` pixels of that grid (upstream
   ``main/config.py``: ``focal``, ``princpt = (input_body_shape[1] / 2, input_body_shape[0] / 2)``).
   The network's camera output ``(t_x, t_y, gamma)`` becomes ``cam_trans = (t_x, t_y,
   k * sigmoid(gamma))`` metres with ``k = sqrt(fx * fy * 2.5^2 / (256 * 192))`` (upstream
   ``main/model.py`` ``Model.get_camera_trans``; here
   :meth:`wbcap.model.hand4whole.Hand4Whole.camera_translation`). The same camera on the 512x384
   network input is :func:`crop_intrinsics`.
2. **Image camera.** The crop is an axis-aligned scaled window ``crop_box`` (xywh) of the image,
   so the same mesh projects onto the full image with the crop camera rescaled to the box:
   :func:`crop_to_image_camera` (``Person.focal`` / ``Person.princpt``).
3. **Shared camera.** Each box has its own image camera; to put several people (image outputs)
   or one person over many frames (video) into one camera, :func:`to_shared_camera` (every
   point keeps its pixel: for drawing) / :func:`shared_camera_offset` and
   :func:`shared_camera_translation` (the body moves rigidly: for 3D).

World frames (:func:`frame_rotation`)
-------------------------------------
* ``"zup"``, the AMASS convention of :mod:`wbcap.export.amass`: ``x`` right, ``y`` forward (into
  the scene), ``z`` up; ``x_w = x``, ``y_w = z``, ``z_w = -y`` (:data:`ZUP_FROM_OPENCV`).
* ``"yup"``, the glTF convention: ``x`` right, ``y`` up, ``z`` backward, i.e. pointing from the
  scene towards the camera (the viewer); ``x_w = x``, ``y_w = -y``, ``z_w = -z``
  (:data:`YUP_FROM_OPENCV`). This is glTF's camera frame: a camera node at the origin with no
  rotation looks down ``-z`` with ``+y`` up and sees the original image; a person facing the
  camera faces ``+z``, which is the front of a glTF asset.

Both are rotations about the camera centre (no translation, no ground estimate). Turning a
posed SMPL-X body by a rotation needs its rest pelvis (:func:`rotate_root`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

    from wbcap.config import ModelConfig

__all__ = [
    "OPENSIM_FROM_ZUP",
    "UNDISTORTION_VERSION",
    "YUP_FROM_OPENCV",
    "YUP_FROM_ZUP",
    "ZUP_FROM_OPENCV",
    "CameraPose",
    "ImageCamera",
    "LensCalibration",
    "change_frame",
    "crop_intrinsics",
    "crop_to_image_camera",
    "crop_to_image_camera_np",
    "frame_rotation",
    "image_to_crop_camera",
    "perspective_projection",
    "rotate_points",
    "rotate_root",
    "rotate_root_np",
    "rotation_array",
    "shared_camera_offset",
    "shared_camera_offset_np",
    "shared_camera_translation",
    "shared_camera_translation_np",
    "to_shared_camera",
    "to_shared_camera_np",
    "virtual_camera_translation",
]

Frame = Literal["zup", "yup"]
ArrayT = TypeVar("ArrayT", "torch.Tensor", np.ndarray)

#: Rotation (row-major 3x3) taking OpenCV camera coordinates (x right, y down, z forward) to the
#: z-up world of AMASS (x right, y forward, z up): ``x_w = x``, ``y_w = z``, ``z_w = -y`` (a
#: -90 degree turn about x).
ZUP_FROM_OPENCV: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))

#: Rotation (row-major 3x3) taking OpenCV camera coordinates to the y-up world of glTF (x right,
#: y up, z from the scene towards the camera): ``x_w = x``, ``y_w = -y``, ``z_w = -z`` (a
#: 180 degree turn about x).
YUP_FROM_OPENCV: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))

#: Rotation (row-major 3x3) taking the z-up world of AMASS to the y-up world of glTF:
#: ``x' = x``, ``y' = z``, ``z' = -y`` (``YUP_FROM_OPENCV @ ZUP_FROM_OPENCV.T``).
YUP_FROM_ZUP: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))

#: Rotation (row-major 3x3) taking the z-up world of AMASS to OpenSim's y-up frame as Pose2Sim
#: writes its TRC files (Pose2Sim ``common.zup2yup``): ``x' = y`` (away from the camera: a person
#: facing the camera faces -x', OpenSim's models +x'), ``y' = z`` (up), ``z' = x`` (the camera's right).
OPENSIM_FROM_ZUP: tuple[tuple[float, float, float], ...] = ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0))

_FRAMES = {"zup": ZUP_FROM_OPENCV, "yup": YUP_FROM_OPENCV}


def rotation_array(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """One of this module's frame rotations (:data:`ZUP_FROM_OPENCV`, ...) as a read-only
    ``(3, 3)`` float64 array, for module-level constants no caller can change."""
    array = np.array(rows, np.float64)
    array.setflags(write=False)
    return array


def _tensor(array: np.ndarray | Sequence, dtype: np.dtype | None = None) -> torch.Tensor:
    """A CPU tensor sharing ``array``'s memory when it is writable (else a copy), same dtype
    unless ``dtype`` is given."""
    import torch

    return torch.from_numpy(np.require(np.asarray(array, dtype), requirements=["W"]))


# --------------------------------------------------------------------------- virtual crop camera


def virtual_camera_translation(
    cam_param: torch.Tensor, focal: Sequence[float], camera_3d_size: float, input_hw: Sequence[int]
) -> torch.Tensor:
    """A network's camera output -> the model's translation in the virtual camera of its input.

    ``(t_x, t_y, gamma)`` becomes ``(t_x, t_y, k * sigmoid(gamma))`` metres with
    ``k = sqrt(fx * fy * camera_3d_size^2 / (H * W))``: the depth at which an object
    ``camera_3d_size`` metres across fills the ``(H, W)`` input (upstream Hand4Whole
    ``main/model.py`` ``Model.get_camera_trans``; the body: 2.5 m on the 256x192 body input, about
    56.4 m at most; the hand-only model of the Pose2Pose branch: 0.4 m on its 256x256 input).

    Args:
        cam_param: ``(B, 3)`` float tensor.
        focal: ``(fx, fy)`` pixels of the input; ``camera_3d_size``: metres; ``input_hw``: ``(H, W)``.

    Returns:
        ``(B, 3)`` metres, OpenCV camera axes, ``cam_param``'s dtype.
    """
    import torch

    k = math.sqrt(focal[0] * focal[1] * camera_3d_size * camera_3d_size / (input_hw[0] * input_hw[1]))
    return torch.cat((cam_param[:, :2], (k * torch.sigmoid(cam_param[:, 2]))[:, None]), 1)


def crop_intrinsics(c: ModelConfig) -> tuple[tuple[float, float], tuple[float, float]]:
    """Intrinsics ``((fx, fy), (cx, cy))`` of the network's virtual camera in input-crop pixels
    (``c.input_img_shape``, 512x384): upstream's ``cfg.focal``/``cfg.princpt``, given for the body
    input (``c.input_body_shape``), scaled to the crop."""
    sx = c.input_img_shape[1] / c.input_body_shape[1]
    sy = c.input_img_shape[0] / c.input_body_shape[0]
    return (c.focal[0] * sx, c.focal[1] * sy), (c.princpt[0] * sx, c.princpt[1] * sy)


def perspective_projection(points: torch.Tensor, focal: Sequence[float], princpt: Sequence[float]) -> torch.Tensor:
    """``(B, J, 3)`` camera points (metres, OpenCV axes) -> ``(B, J, 2)`` pixels
    ``(x / (z + 1e-4) * fx + cx, y / (z + 1e-4) * fy + cy)`` (upstream Hand4Whole ``get_coord``;
    the 1e-4 keeps a point at the camera finite)."""
    import torch

    z = points[:, :, 2] + 1e-4
    return torch.stack((points[:, :, 0] / z * focal[0] + princpt[0], points[:, :, 1] / z * focal[1] + princpt[1]), 2)


# --------------------------------------------------------------------------- crop <-> image


def _width_height(hw: Sequence[int], like: ArrayT) -> ArrayT:
    """``(W, H)`` of a ``(height, width)`` pair, as ``like``: a tensor of its dtype and device,
    or a numpy array of its dtype."""
    if isinstance(like, np.ndarray):
        return np.array((float(hw[1]), float(hw[0])), dtype=like.dtype)
    import torch

    return torch.tensor((float(hw[1]), float(hw[0])), dtype=like.dtype, device=like.device)


def _crop_to_image(focal: ArrayT, princpt: ArrayT, crop_box: ArrayT, crop_hw: Sequence[int]) -> tuple[ArrayT, ArrayT]:
    """The formula of :func:`crop_to_image_camera`, for torch tensors or numpy arrays alike."""
    size = _width_height(crop_hw, crop_box)
    wh, xy = crop_box[..., 2:4], crop_box[..., 0:2]
    return focal / size * wh, princpt / size * wh + xy


def crop_to_image_camera(
    focal: torch.Tensor, princpt: torch.Tensor, crop_box: torch.Tensor, crop_hw: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The crop camera rescaled onto the full image: the camera under which the crop camera's
    mesh projects onto the original image.

    The crop of ``crop_hw`` pixels shows the axis-aligned window ``crop_box`` of the image, so a
    crop pixel ``p`` is the image pixel ``p * (w, h) / (W, H) + (x, y)``; applied to the pinhole
    projection this gives ``focal_img = focal / (W, H) * (w, h)`` and
    ``princpt_img = princpt / (W, H) * (w, h) + (x, y)``. Source: upstream Hand4Whole
    ``demo/demo.py`` (``focal = [cfg.focal[0] / cfg.input_body_shape[1] * bbox[2], ...]``,
    ``princpt = [cfg.princpt[0] / cfg.input_body_shape[1] * bbox[2] + bbox[0], ...]``), here with
    the same operation order so the values match it bit for bit.

    Args:
        focal: ``(2,)`` or ``(B, 2)`` ``(fx, fy)``, pixels of the crop grid (Hand4Whole: the
            256x192 body input, ``(5000, 5000)``).
        princpt: ``(2,)`` or ``(B, 2)`` ``(cx, cy)``, pixels of the crop grid (``(96, 128)``).
        crop_box: ``(B, 4)`` ``(x, y, w, h)`` of the cropped window, image pixels (the 3:4 box
            of :func:`wbcap.crop.bbox.process_bbox`; may extend past the image).
        crop_hw: ``(H, W)`` of the crop grid ``focal``/``princpt`` refer to (the
            ``ModelConfig.input_body_shape`` order).

    Returns:
        ``(focal_img, princpt_img)``, each ``(B, 2)`` image pixels, in the promoted dtype of
        the inputs (float64 inputs: exact upstream values).
    """
    return _crop_to_image(focal, princpt, crop_box, crop_hw)


def image_to_crop_camera(
    focal_img: torch.Tensor, princpt_img: torch.Tensor, crop_box: torch.Tensor, crop_hw: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`crop_to_image_camera`: an image camera expressed on the crop grid.

    ``focal = focal_img / (w, h) * (W, H)``, ``princpt = (princpt_img - (x, y)) / (w, h) * (W, H)``.

    Args:
        focal_img: ``(B, 2)`` ``(fx, fy)``, image pixels.
        princpt_img: ``(B, 2)`` ``(cx, cy)``, image pixels.
        crop_box: ``(B, 4)`` ``(x, y, w, h)`` image pixels, ``w, h > 0``.
        crop_hw: ``(H, W)`` of the crop grid.

    Returns:
        ``(focal, princpt)``, each ``(B, 2)`` pixels of the crop grid.
    """
    size = _width_height(crop_hw, crop_box)
    wh, xy = crop_box[..., 2:4], crop_box[..., 0:2]
    return focal_img / wh * size, (princpt_img - xy) / wh * size


def crop_to_image_camera_np(
    focal: Sequence[float] | np.ndarray,
    princpt: Sequence[float] | np.ndarray,
    crop_box: np.ndarray,
    crop_hw: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`crop_to_image_camera` on numpy arrays: the same formula, evaluated by numpy (no
    torch call, so a pipeline reads nothing back from its device here; shapes, units and order
    of operations as there). ``focal``/``princpt`` are taken as float64; the result has
    ``crop_box``'s promoted dtype (float64 boxes: the upstream values bit for bit).
    """
    return _crop_to_image(np.asarray(focal, np.float64), np.asarray(princpt, np.float64), crop_box, crop_hw)


# --------------------------------------------------------------------------- per-box -> shared


def _per_row(value: float | ArrayT) -> float | ArrayT:
    """A per-batch-row ``(B,)`` tensor or array as ``(B, 1)`` (to broadcast over points); scalars
    as is."""
    if getattr(value, "ndim", 0) >= 1:
        return value[..., None]
    return value


def _to_shared(points: ArrayT, focal_k: ArrayT, princpt_k: ArrayT, focal: float | ArrayT, princpt: ArrayT,
               stack) -> ArrayT:
    """The formula of :func:`to_shared_camera` for torch tensors or numpy arrays alike
    (``princpt`` already an array of ``princpt_k``'s kind; ``stack``: ``torch.stack`` or
    ``np.stack``)."""
    c = princpt[..., None, :]  # (1 | B, 1, 2)
    ck = princpt_k[..., None, :]  # (B, 1, 2)
    fk = focal_k[..., None]  # (B, 1)
    f = _per_row(focal)
    z = points[..., 2]  # (B, N)
    u = points[..., 0] / z * fk + ck[..., 0]  # pixels in camera k
    v = points[..., 1] / z * fk + ck[..., 1]
    z_new = z * f / fk
    return stack(((u - c[..., 0]) * z_new / f, (v - c[..., 1]) * z_new / f, z_new), -1)


def to_shared_camera(
    points: torch.Tensor,
    focal_k: torch.Tensor,
    princpt_k: torch.Tensor,
    focal: float | torch.Tensor,
    princpt: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """Move points seen by a per-box camera ``k`` into one shared camera, pixel for pixel.

    The one definition of "per-box camera -> shared camera" in wbcap. Camera ``k`` is a person's
    own image camera (:func:`crop_to_image_camera`, focal ``f_k``, principal point ``c_k``); the
    shared camera has focal ``f`` and principal point ``c``. Each point ``(x, y, z)``, ``z > 0``,
    keeps its pixel ``(u, v)`` in camera ``k``, its depth is scaled by ``f / f_k``, and it is
    unprojected from the shared camera::

        u = f_k x / z + c_k,x            v = f_k y / z + c_k,y
        z' = z f / f_k
        x' = (u - c_x) z' / f            y' = (v - c_y) z' / f

    (in closed form ``x' = x + z (c_k,x - c_x) / f_k``, likewise y: a linear map of the point).
    So it lands on the **same pixel** and keeps its **apparent size**: a small length ``d``
    across the view spans ``f_k d / z`` pixels in camera ``k`` and ``f d / z'``, the same, in
    the shared camera. Square pixels are assumed (``fx == fy``; true for Hand4Whole's 3:4
    boxes): ``f_k`` and ``f`` are the x focal lengths.

    Two uses, the same operation:

    * **Image outputs** (:func:`wbcap.export.image_outputs.to_common_camera`): every person's
      *mesh vertices* are mapped, into the camera of the largest box, so that all people render
      in one pass; each vertex keeps its pixel exactly (the overlay equals per-person renders),
      depths stay consistent between people for occlusion.
    * **Video's shared camera** (:func:`shared_camera_translation`, ``wbcap run``): only the
      *pelvis* is mapped, into the camera ``(sqrt(W^2 + H^2) or --focal, image centre or
      --principal-point)``, and
      the body follows rigidly by moving ``cam_trans``, so the SMPL-X parameters stay a valid
      body from frame to frame.

    Both move the pelvis to the same point: the video translation is this map evaluated at
    the pelvis; the image outputs apply it to every vertex instead of only the pelvis. The map
    is not a rigid motion (it scales depth by ``f / f_k`` and shears x, y with depth): it is for
    drawing; to place bodies in 3D (``wbcap view``) use :func:`shared_camera_offset`.

    Args:
        points: ``(B, N, 3)`` metres, OpenCV axes (x right, y down, z forward), camera ``k`` of
            each batch row.
        focal_k: ``(B,)`` focal length of camera ``k``, pixels.
        princpt_k: ``(B, 2)`` principal point of camera ``k``, pixels.
        focal: shared focal length, pixels: a float, or a ``(B,)`` / ``()`` tensor.
        princpt: shared principal point ``(cx, cy)``, pixels: ``(2,)`` or ``(B, 2)``.

    Returns:
        ``(B, N, 3)`` metres, OpenCV axes, shared camera; the promoted dtype of the inputs
        (float32 points with float64 cameras give float64).
    """
    import torch

    c = torch.as_tensor(princpt, dtype=princpt_k.dtype, device=princpt_k.device)
    return _to_shared(points, focal_k, princpt_k, focal, c, torch.stack)


def shared_camera_offset(
    anchor: torch.Tensor,
    focal_k: torch.Tensor,
    princpt_k: torch.Tensor,
    focal: float | torch.Tensor,
    princpt: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """The translation that moves a rigid body from camera ``k`` into the shared camera.

    :func:`to_shared_camera` keeps every point's pixel by a projective map that scales depth by
    ``f / f_k``: a body whose box differs in size from the shared camera's is stretched along
    the view (5-8x for a small person in a photo with a large one). For 3D, a body keeps its
    exact shape and is only translated: the translation is that map evaluated at one
    ``anchor`` point of the body (the pelvis, or the SMPL-X origin ``cam_trans``), ``delta =
    to_shared_camera(anchor) - anchor``, in closed form (``q = anchor``)::

        delta = q_z ((c_k,x - c_x) / f_k,  (c_k,y - c_y) / f_k,  f / f_k - 1)

    Every point ``p`` of the body goes to ``p + delta``: the anchor keeps its pixel and its
    apparent size exactly (its depth becomes ``q_z f / f_k``, as under the point map, so people
    keep their depth order); another point lands off its pixel in camera ``k`` by depth
    parallax only, which grows with its depth offset ``p_z - q_z`` from the anchor (not
    scaled, unlike under the point map) and vanishes when camera ``k`` is the shared camera
    (then ``delta = 0``).

    This is the standard crop-camera -> full-image-camera translation conversion: 4D-Humans'
    ``cam_crop_to_full`` (``hmr2/utils/renderer.py``: ``tz = 2 f / (b s)``,
    ``tx = 2 (c_x,box - W / 2) / (b s) + t_x``, i.e. ``t_x' = t_x + (c_box - c) t_z' / f``, the
    formula above with ``t_z' = t_z f / f_k``; CLIFF's ``cam_crop2full`` is the same), with the
    box's camera ``(f_k, c_k)`` (:func:`crop_to_image_camera`: ``c_k`` is the crop box's centre)
    in place of the crop's weak-perspective camera and the shared ``(f, c)`` in place of the full
    image's.

    Args:
        anchor: ``(B, 3)`` the point each body is anchored at, metres, OpenCV axes (x right,
            y down, z forward, ``z > 0``), camera ``k`` of each batch row.
        focal_k, princpt_k, focal, princpt: as in :func:`to_shared_camera` (pixels; ``(B,)``,
            ``(B, 2)``, a float or ``(B,)``, ``(2,)`` or ``(B, 2)``).

    Returns:
        ``(B, 3)`` metres, OpenCV axes: add it to every point (or to ``cam_trans``) of row
        ``b``'s body to place it in the shared camera; the promoted dtype of the inputs.
    """
    import torch

    c = torch.as_tensor(princpt, dtype=princpt_k.dtype, device=princpt_k.device)
    return _offset(anchor, focal_k, princpt_k, focal, c, torch.stack)


def _offset(anchor: ArrayT, focal_k: ArrayT, princpt_k: ArrayT, focal: float | ArrayT, princpt: ArrayT,
            stack) -> ArrayT:
    """The formula of :func:`shared_camera_offset` (arguments as :func:`_to_shared`'s)."""
    return _to_shared(anchor[:, None, :], focal_k, princpt_k, focal, princpt, stack)[:, 0] - anchor


def shared_camera_translation(
    transl: torch.Tensor,
    root: torch.Tensor,
    focal_k: torch.Tensor,
    princpt_k: torch.Tensor,
    focal: float | torch.Tensor,
    princpt: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """Move a person's translation into the shared camera: :func:`shared_camera_offset` at the pelvis.

    The posed pelvis ``p = root + transl`` (SMPL-X rotates the body about its rest pelvis, so
    the posed pelvis does not depend on the pose) goes to ``p'`` by :func:`to_shared_camera`; the
    body moves rigidly with it: ``transl' = transl + (p' - p)``. The pelvis keeps its pixel and
    apparent size; other points keep theirs to first order. Used for the video's one camera
    (``wbcap run``: ``params.jsonl``, ``track_<id>.npz``, meshes and ``render.mp4``).

    Args:
        transl: ``(B, 3)`` SMPL-X translation (Hand4Whole ``cam_trans``), metres, OpenCV axes,
            camera ``k``.
        root: ``(B, 3)`` or ``(3,)`` rest pelvis of the shaped body
            (:meth:`wbcap.body.smplx_layer.SMPLXLayer.rest_root`), metres.
        focal_k, princpt_k, focal, princpt: as in :func:`to_shared_camera`.

    Returns:
        ``(B, 3)`` translation in the shared camera, metres, OpenCV axes.
    """
    return transl + shared_camera_offset(root + transl, focal_k, princpt_k, focal, princpt)  # at the posed pelvis


def _translation(transl: ArrayT, root: ArrayT, focal_k: ArrayT, princpt_k: ArrayT, focal: float | ArrayT,
                 princpt: ArrayT, stack) -> ArrayT:
    """The formula of :func:`shared_camera_translation` (arguments as :func:`_to_shared`'s)."""
    return transl + _offset(root + transl, focal_k, princpt_k, focal, princpt, stack)


def to_shared_camera_np(
    points: np.ndarray,
    focal_k: np.ndarray,
    princpt_k: np.ndarray,
    focal: float,
    princpt: Sequence[float],
) -> np.ndarray:
    """:func:`to_shared_camera` on numpy arrays (shapes, units and axes as there).

    The same formula in numpy (no torch); arrays keep their dtypes (float64 for exact
    results), ``princpt`` takes ``princpt_k``'s; ``focal`` is a float, ``princpt`` ``(cx, cy)``.
    Returns a numpy array in the promoted dtype.
    """
    return _shared_on_numpy(_to_shared, (points,), focal_k, princpt_k, focal, princpt)


def shared_camera_offset_np(
    anchor: np.ndarray,
    focal_k: np.ndarray,
    princpt_k: np.ndarray,
    focal: float,
    princpt: Sequence[float],
) -> np.ndarray:
    """:func:`shared_camera_offset` on numpy arrays (shapes, units and axes as there).

    The same formula in numpy (no torch); arrays keep their dtypes (float64 for exact
    results), ``princpt`` takes ``princpt_k``'s; ``focal`` is a float, ``princpt`` ``(cx, cy)``.
    Returns ``(B, 3)`` in the promoted dtype.
    """
    return _shared_on_numpy(_offset, (anchor,), focal_k, princpt_k, focal, princpt)


def shared_camera_translation_np(
    transl: np.ndarray,
    root: np.ndarray,
    focal_k: np.ndarray,
    princpt_k: np.ndarray,
    focal: float,
    princpt: Sequence[float],
) -> np.ndarray:
    """:func:`shared_camera_translation` on numpy arrays (shapes, units and axes as there).

    The same formula in numpy (no torch); arrays keep their dtypes: float32 ``transl``/``root``
    are summed in float32 and the rest follows numpy's promotion (float64 with float64
    cameras). Returns ``(B, 3)``.
    """
    return _shared_on_numpy(_translation, (transl, root), focal_k, princpt_k, focal, princpt)


def _shared_on_numpy(fn, arrays: Sequence[np.ndarray], focal_k: np.ndarray, princpt_k: np.ndarray, focal: float,
                     princpt: Sequence[float]) -> np.ndarray:
    """``fn(*arrays, focal_k, princpt_k, focal, princpt, np.stack)`` (the formula of one of the
    shared-camera maps) on numpy arrays, each with its dtype; ``princpt`` in ``princpt_k``'s."""
    princpt_k = np.asarray(princpt_k)
    c = np.asarray([float(v) for v in princpt], dtype=princpt_k.dtype)
    return fn(*(np.asarray(a) for a in arrays), np.asarray(focal_k), princpt_k, float(focal), c, np.stack)


# --------------------------------------------------------------------------- world frames


def frame_rotation(
    frame: Frame, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """The ``(3, 3)`` rotation taking OpenCV camera coordinates to ``frame``.

    Args:
        frame: ``"zup"`` (AMASS: x right, y forward, z up; :data:`ZUP_FROM_OPENCV`) or ``"yup"``
            (glTF: x right, y up, z towards the camera; :data:`YUP_FROM_OPENCV`).
        dtype: the matrix's dtype (default float64); device: its device.

    Returns:
        ``(3, 3)`` rotation matrix ``M`` (``v_world = M @ v_opencv``); its transpose goes back.
    """
    import torch

    if frame not in _FRAMES:
        raise ValueError(f"frame must be one of {sorted(_FRAMES)}, got {frame!r}")
    return torch.tensor(_FRAMES[frame], dtype=torch.float64 if dtype is None else dtype, device=device)


def rotate_points(points: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate points about the origin (the camera centre): ``v' = M @ v``.

    Args:
        points: ``(..., 3)`` metres (e.g. ``(B, V, 3)`` vertices in the OpenCV camera frame).
        rotation: ``(3, 3)`` or ``(..., 3, 3)`` (broadcast against the points' batch) ``M``.

    Returns:
        ``(..., 3)`` metres in the rotated frame.
    """
    return (rotation @ points.unsqueeze(-1)).squeeze(-1)


def rotate_root(
    global_orient: torch.Tensor, transl: torch.Tensor, rest_root: torch.Tensor, rotation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-express SMPL-X root rotation and translation in a frame rotated by ``M`` about the origin.

    SMPL-X rotates the body about its rest pelvis ``J0`` (which depends on ``betas``), not about
    the origin, so turning the whole posed body by ``M`` is ``global_orient' = M R`` **and**
    ``transl' = M (J0 + transl) - J0``: rotating ``global_orient`` alone would also swing the
    body about ``J0`` and move the mesh. With these, every vertex satisfies
    ``v' = M v`` (:func:`rotate_points`) exactly.

    Args:
        global_orient: ``(B, 3)`` axis-angle root rotation, radians, source frame.
        transl: ``(B, 3)`` SMPL-X translation, metres, source frame.
        rest_root: ``(3,)`` or ``(B, 3)`` rest pelvis of the shaped body
            (:meth:`wbcap.body.smplx_layer.SMPLXLayer.rest_root`), metres.
        rotation: ``(3, 3)`` rotation ``M`` from the source frame to the target frame
            (:func:`frame_rotation`, or its transpose to go back).

    Returns:
        ``(global_orient', transl')``, ``(B, 3)`` each, target frame, the inputs' promoted dtype
        (use float64: the axis-angle conversion is then exact to ~1e-15).
    """
    from wbcap.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    m = rotation.to(global_orient.dtype)
    go = matrix_to_axis_angle(m @ axis_angle_to_matrix(global_orient))
    j0 = rest_root.to(transl.dtype)
    tr = (j0 + transl) @ m.to(transl.dtype).T - j0
    return go, tr


def change_frame(
    global_orient: torch.Tensor, transl: torch.Tensor, rest_root: torch.Tensor, frame: Frame, *, inverse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rotate_root` from the OpenCV camera frame to ``frame`` (``"zup"``: AMASS, ``"yup"``:
    glTF), or back from it with ``inverse``; shapes and units as there."""
    m = frame_rotation(frame, global_orient.dtype, global_orient.device)
    return rotate_root(global_orient, transl, rest_root, m.T if inverse else m)


def rotate_root_np(
    global_orient: np.ndarray, transl: np.ndarray, rest_root: np.ndarray, rotation: np.ndarray | Sequence
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rotate_root` on numpy arrays, computed in float64 (shapes, units as there).

    Returns:
        ``(global_orient', transl')`` as numpy arrays with the dtypes of ``global_orient`` and
        ``transl``.
    """
    go_in, tr_in = np.asarray(global_orient), np.asarray(transl)
    go, tr = rotate_root(
        _tensor(go_in, np.float64),
        _tensor(tr_in, np.float64),
        _tensor(rest_root, np.float64),
        _tensor(rotation, np.float64),
    )
    return go.numpy().astype(go_in.dtype), tr.numpy().astype(tr_in.dtype)


@dataclass(frozen=True)
class ImageCamera:
    """The pinhole camera of a whole photo or video (OpenCV axes: x right, y down, z forward).

    Attributes:
        focal: ``(fx, fy)`` pixels.
        princpt: ``(cx, cy)`` principal point, pixels (top-left pixel's corner at 0).
        image_size: ``(W, H)`` pixels.
    """

    focal: tuple[float, float]
    princpt: tuple[float, float]
    image_size: tuple[int, int]

    @classmethod
    def default(cls, image_size: tuple[int, int], focal: float | None = None) -> ImageCamera:
        """The camera of an image ``(W, H)`` pixels whose real camera is unknown: ``focal``
        pixels (None: ``sqrt(W^2 + H^2)``, a ~53 degree diagonal field of view, the usual guess),
        square pixels, the principal point at the image's centre. ``wbcap run``'s camera unless
        ``--principal-point`` moves its principal point.

        Raises:
            ValueError: a side that is not a whole number above 0, or a focal that is not a finite
                number above 0.
        """
        w, h = image_size
        if any(isinstance(v, bool) or int(v) != v or v < 1 for v in (w, h)):
            raise ValueError(f"image_size {tuple(image_size)}: two whole numbers of pixels above 0")
        if focal is not None and (isinstance(focal, bool) or not (math.isfinite(float(focal)) and float(focal) > 0)):
            raise ValueError(f"focal {focal}: a finite number of pixels above 0 (None: the default)")
        w, h = int(w), int(h)
        f = float(focal) if focal is not None else float(math.hypot(w, h))
        return cls(focal=(f, f), princpt=(w / 2.0, h / 2.0), image_size=(w, h))

    @property
    def yfov(self) -> float:
        """Vertical field of view, radians: ``2 atan(H / (2 fy))`` (exact when ``cy = H / 2``)."""
        return float(2.0 * np.arctan(self.image_size[1] / (2.0 * self.focal[1])))

    @property
    def aspect(self) -> float:
        """Width over height of the image times ``fy / fx`` (glTF's ``aspectRatio``)."""
        return float(self.image_size[0] / self.image_size[1] * self.focal[1] / self.focal[0])

    def project(self, points: np.ndarray) -> np.ndarray:
        """``(..., 3)`` camera-frame points, metres -> ``(..., 2)`` pixels."""
        p = np.asarray(points, np.float64)
        z = p[..., 2:3]
        return np.concatenate([self.focal[0] * p[..., :1] / z + self.princpt[0],
                               self.focal[1] * p[..., 1:2] / z + self.princpt[1]], -1)


def camera_to_dict(camera: ImageCamera) -> dict:
    """``camera`` as ``params.jsonl`` lines and ``meta.json`` store it (JSON-able): ``focal``,
    ``princpt`` and ``image_size`` lists; read back by :func:`camera_from_dict`."""
    return {"focal": list(camera.focal), "princpt": list(camera.princpt), "image_size": list(camera.image_size)}


def camera_from_dict(cam: dict) -> ImageCamera:
    """The camera :func:`camera_to_dict` stored (``params.jsonl`` lines, ``meta.json``).

    Raises:
        KeyError, TypeError, ValueError, OverflowError: a damaged record: not 2 numbers each
            (JSON numbers: no strings or booleans), a focal that is not from
            :data:`~wbcap.limits.MIN_FOCAL` to :data:`~wbcap.limits.MAX_FOCAL` pixels, a principal
            point more than :data:`~wbcap.limits.MAX_FOCAL` pixels from the origin, or an
            image size that is not whole numbers above 0 or is over
            :data:`~wbcap.io.images.MAX_IMAGE_PIXELS` pixels (no input wbcap reads is bigger; a
            tampered 10^9 would size what is drawn from it).
    """
    from wbcap.io.images import MAX_IMAGE_PIXELS
    from wbcap.limits import MAX_FOCAL, MIN_FOCAL

    values = {k: list(cam[k]) for k in ("focal", "princpt", "image_size")}
    if any(len(v) != 2 for v in values.values()):
        raise ValueError(f"camera {cam!r}: focal, princpt and image_size need 2 numbers each")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for v in values.values() for x in v):
        raise ValueError(f"camera {cam!r}: focal, princpt and image_size need numbers")
    camera = ImageCamera(focal=tuple(float(v) for v in values["focal"]), princpt=tuple(float(v) for v in values["princpt"]),
                         image_size=tuple(int(v) for v in values["image_size"]))
    if not all(MIN_FOCAL <= v <= MAX_FOCAL for v in camera.focal) or not all(abs(v) <= MAX_FOCAL
                                                                              for v in camera.princpt):
        raise ValueError(f"camera {cam!r}: focal needs numbers from {MIN_FOCAL:g} to {MAX_FOCAL:g} pixels, princpt "
                         f"numbers from -{MAX_FOCAL:g} to {MAX_FOCAL:g}")
    w, h = camera.image_size
    if any(float(v) != int(v) for v in values["image_size"]) or min(w, h) < 1 or w * h > MAX_IMAGE_PIXELS:
        raise ValueError(f"camera {cam!r}: image_size needs 2 whole numbers above 0, at most {MAX_IMAGE_PIXELS} pixels")
    return camera


#: The smallest scale of an undistorted camera against its lens (``--undistort-scale``'s least; a
#: default camera that would be smaller is refused: people would be a speck).
MIN_SCALE = 0.05

#: The version of how :class:`LensCalibration` undistorts (its undistorted camera, its inversion):
#: a run's resume matches it, so that frames undistorted into another camera are never mixed.
UNDISTORTION_VERSION = 1

#: The numbers of OpenCV distortion coefficients ``cv2.calibrateCamera`` writes (``k1, k2, p1, p2``,
#: then ``k3``, then ``k4, k5, k6``, then the thin prism's ``s1..s4``, then the tilt's ``tx, ty``);
#: the fisheye model's four (``k1..k4``); none at all (a pinhole camera).
PINHOLE_DISTORTION_SIZES = (0, 4, 5, 8, 12, 14)
FISHEYE_DISTORTION_SIZES = (0, 4)


@dataclass(frozen=True)
class CameraPose:
    """A calibrated camera's extrinsics: where it stands in its calibration's world (a lab's
    frame), in OpenCV's convention ``x_c = rotation @ x_w + translation`` for a world point
    ``x_w`` (``cv2.calibrateCamera``'s and ``cv2.solvePnP``'s ``rvec``/``tvec``; Pose2Sim's,
    Anipose's and FreeMoCap's ``rotation``/``translation``, EasyMocap's ``R``/``T``).

    Attributes:
        rotation: ``(3, 3)`` world -> OpenCV camera axes, row-major (a proper rotation; made
            exactly orthonormal, by SVD, from the file's rounded values).
        translation: ``(3,)`` in the calibration's own units: metres in Pose2Sim's and
            EasyMocap's files, the calibration board's unit (often millimetres) in Anipose's and
            FreeMoCap's (:func:`wbcap.world.estimate.ground_tracks` tells which).
        metric: whether those units are a length's (metres, millimetres...). False for a
            structure-from-motion reconstruction's world (COLMAP's ``images.txt``), whose scale
            is its own: ``wbcap fuse`` finds it from the people the cameras saw
            (:func:`wbcap.fuse.level.reconstruction_scale`).

    Raises:
        ValueError: not 3 x 3 and 3 finite numbers, a translation beyond :attr:`MAX_TRANSLATION`,
            or a rotation that is not one (rows not orthonormal within 1e-3, or a mirror:
            determinant -1).
    """

    rotation: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    translation: tuple[float, float, float]
    metric: bool = True

    #: The largest translation component taken, in the calibration's units: 10 km in
    #: millimetres (a lab's world is metres across; a geographic one's float32 track files
    #: would lose their millimetres).
    MAX_TRANSLATION = 1e7

    def __post_init__(self) -> None:
        r = np.asarray(self.rotation, np.float64)
        t = np.asarray(self.translation, np.float64).reshape(-1)
        if r.shape != (3, 3) or not np.isfinite(r).all():
            raise ValueError(f"rotation {r.tolist()}: 3 x 3 finite numbers (or a rotation vector of 3)")
        if t.shape != (3,) or not np.isfinite(t).all():
            raise ValueError(f"translation {t.tolist()}: 3 finite numbers")
        if np.abs(t).max() > self.MAX_TRANSLATION:
            raise ValueError(f"translation {t.tolist()}: beyond {self.MAX_TRANSLATION:g} of its units (10 km in mm), "
                             "not a camera in a lab's world")
        if np.abs(r @ r.T - np.eye(3)).max() > 1e-3 or np.linalg.det(r) < 0:
            raise ValueError(f"rotation {r.tolist()}: not a rotation matrix (orthonormal rows, determinant +1)")
        u, _, vt = np.linalg.svd(r)
        r = u @ vt
        object.__setattr__(self, "rotation", tuple(tuple(float(v) for v in row) for row in r))
        object.__setattr__(self, "translation", tuple(float(v) for v in t))

    @classmethod
    def from_values(cls, rotation: Sequence[float], translation: Sequence[float], metric: bool = True) -> CameraPose:
        """A pose from a file's numbers: ``rotation`` a rotation vector (3 numbers: axis times
        angle, radians; ``cv2.Rodrigues``'s) or a matrix (9, row-major); ``translation`` 3;
        ``metric`` as the attribute.

        Raises:
            ValueError: other counts, or values :class:`CameraPose` refuses.
        """
        r = np.asarray(rotation, np.float64).reshape(-1)
        if r.size == 3:
            if not (np.isfinite(r).all() and np.linalg.norm(r) <= 1e3):  # (radians: a few turns at most)
                raise ValueError(f"rotation {r.tolist()}: a rotation vector of finite radians")
            from scipy.spatial.transform import Rotation

            r = Rotation.from_rotvec(r).as_matrix()
        elif r.size != 9:
            raise ValueError(f"rotation {r.tolist()}: a rotation vector (3 numbers) or a 3 x 3 matrix")
        return cls(rotation=r.reshape(3, 3), translation=translation, metric=metric)

    @classmethod
    def from_record(cls, record: object) -> CameraPose | None:
        """The pose a :meth:`LensCalibration.to_dict` record holds (``meta.json``'s
        ``calibration``), or None where it holds none.

        Raises:
            ValueError: a record whose ``rotation`` or ``translation`` is not a pose's, or whose
                ``metric`` is not a boolean.
        """
        if not isinstance(record, dict) or record.get("rotation") is None or record.get("translation") is None:
            return None
        metric = record.get("metric", True)
        if not isinstance(metric, bool):
            raise ValueError(f"metric {metric!r}: true or false")
        for key in ("rotation", "translation"):  # (numbers as wbcap writes them: not strings, not booleans)
            flat = np.asarray(record[key], dtype=object).reshape(-1)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
                raise ValueError(f"{key} {record[key]!r}: numbers")
        try:
            return cls.from_values(record["rotation"], record["translation"], metric)
        except (TypeError, OverflowError) as exc:
            raise ValueError(f"rotation/translation: {exc}") from None

    @property
    def centre(self) -> np.ndarray:
        """``(3,)`` float64: the camera's centre in the world, ``-rotation^T translation`` (its units)."""
        r = np.asarray(self.rotation, np.float64)
        return -r.T @ np.asarray(self.translation, np.float64)

    def to_dict(self) -> dict:
        """``{"rotation": 3 x 3 rows, "translation": [3]}`` (JSON-able), and ``"metric": false``
        for a world without a scale (a metric pose's record is as before the key existed)."""
        return {"rotation": [list(row) for row in self.rotation], "translation": list(self.translation),
                **({} if self.metric else {"metric": False})}


@dataclass(frozen=True)
class LensCalibration:
    """A calibrated camera's intrinsics: OpenCV's camera matrix and lens distortion
    (``cv2.calibrateCamera``'s, or ``cv2.fisheye.calibrate``'s), as calibration tools write them
    (Pose2Sim's and Anipose's ``Calib.toml``, OpenCV's and ROS's YAML: :mod:`wbcap.io.calibration`).

    ``wbcap run --calibration`` reads each frame undistorted into :meth:`undistorted`, a pinhole
    camera of square pixels of the same size in which every pixel of the source is kept, and
    expresses every result in that camera (the real camera's frame: OpenCV axes, metres).

    Attributes:
        image_size: ``(W, H)`` pixels of the pictures the calibration was made on (upright); None
            where the file does not say (EasyMocap's ``intri.yml``): taken as the frames' own
            (:meth:`fit`).
        matrix: the camera matrix ``K``, row-major ``((fx, s, cx), (0, fy, cy), (0, 0, 1))``,
            pixels, in **OpenCV's pixel convention** (the top-left pixel's centre at ``(0, 0)``;
            wbcap's :class:`ImageCamera` puts that pixel's corner there, so its principal point
            is OpenCV's plus 0.5).
        distortion: OpenCV's coefficients in its order, ``(k1, k2, p1, p2[, k3[, k4, k5, k6[,
            s1, s2, s3, s4[, tx, ty]]]])`` (:data:`PINHOLE_DISTORTION_SIZES`); with ``fisheye``
            the equidistant model's ``(k1, k2, k3, k4)``; ``()`` for none.
        fisheye: OpenCV's fisheye (equidistant, Kannala-Brandt) model (``cv2.fisheye``).
        name: the camera's name in its file (``""`` where the file holds one unnamed camera).
        file: the file read (for the record in ``meta.json``; ``""`` when built in code).
        scale: the undistorted camera's focal length over the calibration's (the smaller of
            ``fx``, ``fy``), from 0.05 to 4 (``--undistort-scale``: 0.5 for a very wide lens keeps
            people larger and leaves the source's far edges out); None: the longest that keeps
            every source pixel (:meth:`undistorted`).
        pose: where the camera stands in the calibration's world (:class:`CameraPose`), where the
            file says (``wbcap run --world`` then writes the tracks in that world); None.

    Raises:
        ValueError: a size that is not two whole numbers above 0; a matrix that is not 3 x 3
            finite numbers of that form with focal lengths from
            :data:`~wbcap.limits.MIN_FOCAL` to :data:`~wbcap.limits.MAX_FOCAL` pixels; a number of
            distortion coefficients OpenCV does not use, or one that is not finite.
    """

    image_size: tuple[int, int] | None
    matrix: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    distortion: tuple[float, ...] = ()
    fisheye: bool = False
    name: str = ""
    file: str = ""
    scale: float | None = None
    pose: CameraPose | None = None

    def __post_init__(self) -> None:
        from wbcap.limits import MAX_FOCAL, MIN_FOCAL

        if self.pose is not None and not isinstance(self.pose, CameraPose):
            raise ValueError(f"pose {self.pose!r}: a CameraPose or None")

        size = self.image_size
        if size is not None and (len(size) != 2 or any(
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in size)):
            raise ValueError(f"image size {tuple(size)}: two whole numbers of pixels above 0")
        k = np.asarray(self.matrix, np.float64)
        if k.shape != (3, 3) or not np.isfinite(k).all():
            raise ValueError(f"camera matrix {self.matrix!r}: 3 x 3 finite numbers")
        if k[1, 0] != 0 or k[2, 0] != 0 or k[2, 1] != 0 or k[2, 2] != 1:
            raise ValueError(f"camera matrix {k.tolist()}: its last row must be (0, 0, 1) and its [1][0] 0 (fx, 0, cx; "
                             "0, fy, cy; 0, 0, 1)")
        if k[0, 1] != 0:  # (OpenCV's lens models, and every calibration of theirs, have none: its functions ignore it)
            raise ValueError(f"camera matrix {k.tolist()}: a skew ([0][1] {k[0, 1]:g}) OpenCV's lens models do not have; "
                             "calibrate without skew (OpenCV's calibrateCamera does)")
        if not (MIN_FOCAL <= k[0, 0] <= MAX_FOCAL and MIN_FOCAL <= k[1, 1] <= MAX_FOCAL):
            raise ValueError(f"camera matrix {k.tolist()}: focal lengths fx, fy must be from {MIN_FOCAL:g} to "
                             f"{MAX_FOCAL:g} pixels")
        if max(abs(k[0, 2]), abs(k[1, 2])) > MAX_FOCAL:
            raise ValueError(f"camera matrix {k.tolist()}: a principal point within {MAX_FOCAL:g} pixels of the corner")
        sizes = FISHEYE_DISTORTION_SIZES if self.fisheye else PINHOLE_DISTORTION_SIZES
        d = np.asarray(self.distortion, np.float64).reshape(-1)
        if d.size not in sizes or not np.isfinite(d).all():
            model = "the fisheye model's" if self.fisheye else "OpenCV's"
            raise ValueError(f"distortion {list(self.distortion)}: {model} coefficients, "
                             f"{' or '.join(str(n) for n in sizes if n)} finite numbers (or none)")
        if self.scale is not None and not (isinstance(self.scale, (int, float)) and not isinstance(self.scale, bool)
                                           and MIN_SCALE <= self.scale <= 4):
            raise ValueError(f"scale {self.scale!r}: a number from 0.05 to 4 (None: keep every source pixel)")
        object.__setattr__(self, "image_size", None if size is None else (int(size[0]), int(size[1])))
        object.__setattr__(self, "matrix", tuple(tuple(float(v) for v in row) for row in k))
        object.__setattr__(self, "distortion", tuple(float(v) for v in d))

    @property
    def distorts(self) -> bool:
        """Whether the lens model moves any point: a non-zero coefficient, or the fisheye model
        (equidistant, ``r = f theta`` where a pinhole has ``f tan theta``: even without
        coefficients; a break-it review)."""
        return self.fisheye or any(v != 0 for v in self.distortion)

    @property
    def square_pixels(self) -> bool:
        """``fx == fy`` and no skew: the pinhole part is already a :class:`ImageCamera`'s."""
        return self.matrix[0][0] == self.matrix[1][1] and self.matrix[0][1] == 0

    #: At most this many pixels of a side told apart from the calibration's picture are taken as
    #: cropped or padded at the right or bottom edge, the picture's pixels unmoved (codecs store
    #: 1080 rows as 1088, and calibrations made on stored frames say 1088).
    CROP_PIXELS = 16

    def fit(self, image_size: tuple[int, int]) -> tuple[LensCalibration, str]:
        """The calibration of the same camera's frames of ``image_size`` ``(W, H)``, and how it
        was fitted:

        * ``"same"``: the calibration's own size.
        * ``"assumed"``: a calibration without a size, taken as the frames' (unchanged).
        * ``"scaled"``: the same shape (width over height within one pixel's rounding), a
          resized picture (a video recorded or converted at another resolution): ``fx``, ``s``,
          ``cx`` scale with the width, ``fy``, ``cy`` with the height, about the picture's corner
          (OpenCV's ``cx`` is a pixel centre's: ``(cx + 0.5) sx - 0.5``); the distortion, a
          function of the normalised image point, is unchanged.
        * ``"cropped"``: each side within :data:`CROP_PIXELS` of the calibration's: the same
          pixels, cropped or padded at the right or bottom edge (the calibration unchanged).

        Raises:
            ValueError: a picture of another shape (another orientation, a crop of more than a
                few pixels); the message says which (the caller gives the fix).
        """
        w, h = (int(v) for v in image_size)
        if self.image_size is None:
            return replace(self, image_size=(w, h)), "assumed"
        w0, h0 = self.image_size
        if (w, h) == (w0, h0):
            return self, "same"
        sx, sy = w / w0, h / h0
        if abs(sx - sy) <= 1.0 / min(w0, h0) + 1.0 / min(w, h):
            (fx, s, cx), (_, fy, cy), _ = self.matrix
            matrix = ((fx * sx, s * sx, (cx + 0.5) * sx - 0.5), (0.0, fy * sy, (cy + 0.5) * sy - 0.5), (0.0, 0.0, 1.0))
            return replace(self, image_size=(w, h), matrix=matrix), "scaled"
        if abs(w - w0) <= self.CROP_PIXELS and abs(h - h0) <= self.CROP_PIXELS:
            return replace(self, image_size=(w, h)), "cropped"
        turned = (h0 > w0) != (h > w)
        raise ValueError(f"calibrated on {w0}x{h0} pictures, for {w}x{h} ones ("
                         + ("turned" if turned else "another shape: a crop") + ")")

    def undistorted(self) -> ImageCamera:
        """The pinhole camera the frames are undistorted into: square pixels, no skew, the
        calibration's picture size, the principal point at the picture's centre (the optical axis
        through it: a glTF camera, which has no principal point, then overlays the picture exactly)
        and, by default, the longest focal length whose picture holds **every pixel of the source**
        the lens model reaches (the source's border, every pixel's outer edge, undistorted:
        :attr:`border_reach`; a polynomial that turns back before a corner leaves that corner out),
        so that nobody at the picture's edge is lost; the source's corners may then leave black
        margins (as OpenCV's ``getOptimalNewCameraMatrix`` with ``alpha`` 1 and
        ``centerPrincipalPoint``, which ``cv2.fisheye``'s estimate is not). With :attr:`scale`,
        that fraction of the calibration's focal length (the source's far edges may then be left
        out). Without distortion, with square pixels and no :attr:`scale` it is the calibration's
        own camera (its principal point kept: nothing is resampled). The principal point is in
        wbcap's convention (OpenCV's plus 0.5). Where the lens model turns back, in the margins,
        the frames are left black (:meth:`undistort_maps`).

        Raises:
            ValueError: by default, a lens model that does not reach 90 % of the source's border
                (:attr:`border_reach`): its radial mapping turns back before the picture's edge
                (two rays would meet at one pixel), a fisheye sees 90 degrees or more off its axis
                there (no pinhole picture holds such rays: :attr:`scale` keeps the middle), or the
                undistortion does not converge; a focal length under
                :data:`~wbcap.limits.MIN_FOCAL`.
        """
        from wbcap.limits import MIN_FOCAL

        (fx, _, _), (_, fy, _), _ = self.matrix
        w, h = self._size()
        own = self.pinhole_camera()
        centre = (w / 2.0, h / 2.0)
        if self.scale is not None:
            f = float(self.scale * min(fx, fy))
            if f < MIN_FOCAL:
                raise ValueError(f"scale {self.scale:g}: a focal length of {f:g} pixels (at least {MIN_FOCAL:g})")
            return ImageCamera(focal=(f, f), princpt=centre, image_size=(w, h))
        if not self.distorts and self.square_pixels:
            return own
        border, reached = self.border_reach
        # (the farthest reach from the axis on each side: the picture spans W / 2 each way of it)
        reach = np.abs(border[reached]).max(0) if reached.mean() >= 0.9 else np.full(2, np.nan)
        with np.errstate(all="ignore"):
            f = float(min(w / 2 / reach[0], h / 2 / reach[1]))
        from wbcap.errors import setting

        if math.isfinite(f) and f < max(MIN_FOCAL, MIN_SCALE * min(fx, fy)):  # (a review: a fisheye's corners just
            # past 90 degrees gave a focal length of 1.2 px, people 244 times smaller, with warnings only)
            why = (f"a focal length under {MIN_FOCAL:g} pixel in a {w}x{h} picture" if f < MIN_FOCAL else
                   "its edge seeing nearly 90 degrees off its axis" if self.fisheye else "its edge's distortion")
            raise ValueError(f"keeping every source pixel would show the scene at {f / min(fx, fy):.3g} times the "
                             f"lens's scale ({why}); give {setting('undistort_scale', api='a scale')} (1 keeps the "
                             "lens's scale in the picture's middle)")
        if not math.isfinite(f):
            raise ValueError(f"distortion {list(self.distortion)}: the lens model cannot be inverted over the whole "
                             "picture (at its edge it turns back, folding the picture over"
                             + (", or sees 90 degrees or more off its axis" if self.fisheye else "")
                             + f"); check the coefficients, or give {setting('undistort_scale', api='a scale')} (0.5 "
                             "keeps the picture's middle)")
        return ImageCamera(focal=(f, f), princpt=centre, image_size=(w, h))

    def pinhole_camera(self) -> ImageCamera:
        """The calibration's own pinhole camera (``fx``, its principal point in wbcap's convention),
        which :meth:`undistorted` is for a lens without distortion, with square pixels and no
        :attr:`scale`: frames then need no resampling."""
        (fx, _, cx), (_, _, cy), _ = self.matrix
        return ImageCamera(focal=(fx, fx), princpt=(cx + 0.5, cy + 0.5), image_size=self._size())

    def _radial(self, r: np.ndarray) -> np.ndarray:
        """The lens's radial mapping of normalised undistorted radii ``r`` (``x / z``): OpenCV's
        rational radial factor ``r (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)``,
        or the fisheye's ``theta_d = theta (1 + k1 theta^2 + ... + k4 theta^8)`` with
        ``theta = atan r`` (OpenCV's ``calib3d`` documentation); the distorted normalised
        radius either way."""
        d = list(self.distortion) + [0.0] * 14
        with np.errstate(all="ignore"):
            if self.fisheye:
                t = np.arctan(r)
                return t * (1 + d[0] * t**2 + d[1] * t**4 + d[2] * t**6 + d[3] * t**8)
            r2 = r * r
            return r * (1 + d[0] * r2 + d[1] * r2**2 + d[4] * r2**3) / (1 + d[5] * r2 + d[6] * r2**2 + d[7] * r2**3)

    @functools.cached_property
    def fold_radius(self) -> float | None:
        """The smallest normalised radius (``x / z``) at which the lens's radial mapping
        (:meth:`_radial`) stops growing, where two rays would meet at one pixel (or stops being
        finite and positive); None where it grows for every ray in front of the camera. The last
        still-growing one of 20000 samples evenly spread in angle up to 90 degrees (0.0045
        degrees apart), computed once: the border's reach, the remap tables' mask, the keypoints
        and the undistortion all take the same one."""
        t = np.linspace(0.0, math.pi / 2, 20001)[1:-1]
        r = np.tan(t)
        radial = self._radial(r)
        bad = ~np.isfinite(radial) | (radial <= 0) | np.concatenate([[False], np.diff(radial) <= 0])
        if not bad.any():
            return None
        first = int(np.argmax(bad))
        return float(r[first - 1]) if first > 0 else 0.0

    @functools.cached_property
    def border_reach(self) -> tuple[np.ndarray, np.ndarray]:
        """The source picture's border (:meth:`_border_pixels`) undistorted, ``(N, 2)`` normalised
        points, and ``(N,)`` whether the lens model reaches each: its undistorted point is finite
        (:meth:`_normalised` gives none at or past where the model turns back along its ray,
        :meth:`beyond_fold`: such a point is another ray's), and goes back through the lens onto the border pixel (to 0.05 px: the
        undistortion converged). A fit's polynomial may turn back before the picture's corners
        (a GoPro HERO10's published Max 4:3 profile does, at one corner): those points are not
        reached, and :meth:`undistorted` leaves them out. Computed once (read-only arrays)."""
        pixels = self._border_pixels()
        border = self._normalised(pixels)
        reached = np.isfinite(border).all(1)
        if reached.any():
            back = self._project(np.concatenate([border[reached], np.ones((int(reached.sum()), 1))], 1))
            reached[reached] = np.abs(back - pixels[reached]).max(1) < 0.05
        border.flags.writeable = reached.flags.writeable = False
        return border, reached

    def _border_pixels(self, per_side: int = 129) -> np.ndarray:
        """The source picture's border, its pixels' outer edges: ``(4 per_side, 2)`` pixels in
        OpenCV's convention (the picture spans -0.5 .. W - 0.5)."""
        w, h = self._size()
        xs, ys = np.linspace(-0.5, w - 0.5, per_side), np.linspace(-0.5, h - 0.5, per_side)
        return np.concatenate([np.stack([xs, np.full_like(xs, -0.5)], 1), np.stack([xs, np.full_like(xs, h - 0.5)], 1),
                               np.stack([np.full_like(ys, -0.5), ys], 1), np.stack([np.full_like(ys, w - 0.5), ys], 1)])

    def _coefficients(self) -> np.ndarray:
        """The distortion as OpenCV's functions take it: the fisheye's ``(4, 1)`` (zeros where
        none), the pinhole's ``(n,)``."""
        if self.fisheye:
            return np.asarray(self.distortion or (0.0,) * 4, np.float64).reshape(4, 1)
        return np.asarray(self.distortion, np.float64)

    def _project(self, rays: np.ndarray) -> np.ndarray:
        """Camera-frame rays ``(N, 3)`` through the lens: ``(N, 2)`` source pixels in OpenCV's
        convention (``cv2.projectPoints``, ``cv2.fisheye.projectPoints``)."""
        import cv2

        zero = np.zeros((3, 1))
        k = np.asarray(self.matrix, np.float64)
        if self.fisheye:
            uv, _ = cv2.fisheye.projectPoints(rays.reshape(-1, 1, 3), zero, zero, k, self._coefficients())
        else:
            uv, _ = cv2.projectPoints(rays.reshape(-1, 3), zero, zero, k, self._coefficients())
        return uv.reshape(-1, 2)

    def _normalised(self, pixels: np.ndarray) -> np.ndarray:
        """Source pixels ``(N, 2)`` (OpenCV's convention) undistorted: normalised image points
        ``(x / z, y / z)``, NaN where no ray in front of the camera gives the pixel.

        A radial model (the fisheye, or a pinhole without tangential, prism or tilt terms) by
        inverting its radial mapping (:meth:`_radial`) by bisection over the rays where it grows
        (below 90 degrees and :attr:`fold_radius`): OpenCV's ``cv2.fisheye.undistortPoints`` stops
        at 90 degrees and diverged near a wide lens's turn (a GoPro HERO10's published Max
        profile), its ``undistortPointsIter`` diverged for a strong barrel lens (COLMAP's RADIAL
        k1 -0.2 at f 120 on 384 px: reviews). Other pinhole models (tangential, prism, tilt terms)
        by OpenCV's ``undistortPointsIter`` (iterated to 1e-12; fast), and where that did not
        converge (its point does not project back to 1e-10: a fixed-point iteration diverged at
        the edges of a wide lens whose radial terms alone undistort well, f 160 on 384 px, ``k1
        -0.3, k2 0.1`` with ``p1 0.002, p2 -0.001``, which was refused as turning back) by
        Newton's method on the whole model (:meth:`_newton`) from OpenCV's point, from the radial
        inverse, from the distorted point itself and from OpenCV's point pulled back short of the
        fold (the converged one nearer the axis: the ray before any fold); where none
        converges, OpenCV's point where it goes back within 0.05 px (as :attr:`border_reach`
        checks), else NaN (a review: near a fold, points OpenCV had to 2e-5 px were lost). A point
        past where the model turns back along its ray (:meth:`beyond_fold`) is another ray's, not
        the pixel's: not taken from either."""
        import cv2

        k = np.asarray(self.matrix, np.float64)
        distorted = np.stack([(pixels[:, 0] - k[0, 2]) / k[0, 0], (pixels[:, 1] - k[1, 2]) / k[1, 1]], 1)
        if self.fisheye or self._radial_only:
            return self._radial_inverse(distorted)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        out = cv2.undistortPointsIter(pixels.reshape(-1, 1, 2), k, self._coefficients(), None, None,
                                      criteria).reshape(-1, 2)
        with np.errstate(all="ignore"):
            error = np.abs(self._through(out) - distorted).max(1)
        folds = self.turns_back
        missed = ~(error < 1e-10)
        if folds:  # (OpenCV's point past the fold is another ray's: the pixel's own may lie before it)
            missed |= self.beyond_fold(out)
        if missed.any():  # (Newton from four starts at once; the converged point nearest the axis wins)
            d = distorted[missed]
            starts = [out[missed], self._radial_inverse(d), d]
            if folds:  # (OpenCV's point pulled back along its ray short of the fold: a review's pixel whose
                # own ray no other start reached)
                with np.errstate(all="ignore"):
                    pull = np.minimum(1.0, 0.98 * self._fold_along(starts[0]) / np.hypot(*starts[0].T))
                starts.append(starts[0] * pull[:, None])
            tries = self._newton(np.tile(d, (len(starts), 1)), np.concatenate(starts)).reshape(len(starts), *d.shape)
            found = np.isfinite(tries).all(2)
            if folds:
                found &= ~self.beyond_fold(tries.reshape(-1, 2)).reshape(found.shape)
            radius = np.where(found, np.hypot(tries[..., 0], tries[..., 1]), np.inf)
            pick = np.argmin(radius, 0)
            best, found = tries[pick, np.arange(len(d))], found[pick, np.arange(len(d))]
            # (none converged: OpenCV's point kept where it goes back within OpenCV's own 0.05 px, as before)
            near = error[missed] * min(k[0, 0], k[1, 1]) < 0.05
            if folds:
                near &= ~self.beyond_fold(out[missed])
            out[missed] = np.where(found[:, None], best, np.where(near[:, None], out[missed], np.nan))
        return out

    def _radial_inverse(self, distorted: np.ndarray) -> np.ndarray:
        """Distorted normalised points ``(N, 2)`` undistorted by the radial mapping alone
        (:meth:`_radial`, by bisection over the rays where it grows: :meth:`_normalised`); NaN
        past its reach."""
        r_d = np.hypot(distorted[:, 0], distorted[:, 1])
        top = math.pi / 2 * (1 - 1e-9) if self.fold_radius is None else math.atan(self.fold_radius)
        lo, hi = np.zeros_like(r_d), np.full_like(r_d, top)  # (angles off the axis: r = tan)
        for _ in range(64):
            mid = (lo + hi) / 2
            grows = self._radial(np.tan(mid)) < r_d
            lo, hi = np.where(grows, mid, lo), np.where(grows, hi, mid)
        reached = r_d <= self._radial(np.tan(np.array([top])))[0]
        with np.errstate(all="ignore"):
            scale = np.where(r_d > 0, np.tan((lo + hi) / 2) / r_d, 1.0)
        return np.where(reached[:, None], distorted * scale[:, None], np.nan)

    def _through(self, points: np.ndarray) -> np.ndarray:
        """Undistorted normalised points ``(N, 2)`` through the whole pinhole model: the distorted
        normalised points (``cv2.projectPoints`` with an identity camera matrix; NaN in, NaN out)."""
        import cv2

        out = np.full(points.shape, np.nan)
        ok = np.isfinite(points).all(1)
        if ok.any():
            rays = np.concatenate([points[ok], np.ones((int(ok.sum()), 1))], 1)
            uv, _ = cv2.projectPoints(rays, np.zeros((3, 1)), np.zeros((3, 1)), np.eye(3), self._coefficients())
            out[ok] = uv.reshape(-1, 2)
        return out

    def _through_jacobian(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_through` of ``points`` ``(N, 2)`` and its Jacobian ``(N, 2, 2)``, ``[i, a, b]`` the
        derivative of the distorted point's coordinate ``a`` by the undistorted one's ``b``: OpenCV's
        own (``cv2.projectPoints``'s derivative by the translation, which for the ray ``(x, y, 1)``
        without rotation moves ``x / z`` and ``y / z`` alike). NaN in, NaN out."""
        import cv2

        out, jacobian = np.full(points.shape, np.nan), np.full((len(points), 2, 2), np.nan)
        ok = np.isfinite(points).all(1)
        if ok.any():
            rays = np.concatenate([points[ok], np.ones((int(ok.sum()), 1))], 1)
            uv, d = cv2.projectPoints(rays, np.zeros((3, 1)), np.zeros((3, 1)), np.eye(3), self._coefficients())
            out[ok], jacobian[ok] = uv.reshape(-1, 2), d.reshape(-1, 2, d.shape[1])[:, :, 3:5]
        return out, jacobian

    #: :attr:`_fold_radii` samples the model along this many directions about its axis, at this many
    #: angles off it evenly up to 90 degrees (0.35 degrees apart), and densely about where its radial
    #: terms alone turn back, pass a pole or a zero (:meth:`_fold_hints`), before finding each turn
    #: by bisection.
    FOLD_DIRECTIONS, FOLD_SAMPLES = 720, 256

    def _fold_hints(self) -> np.ndarray:
        """Angles off the axis (radians) about which the whole model's fold may be a thin ring that
        even samples step over: where the radial terms alone turn back (:attr:`fold_radius`) and the
        real roots of the rational radial factor's numerator ``1 + k1 r^2 + k2 r^4 + k3 r^6`` and
        denominator ``1 + k4 r^2 + k5 r^4 + k6 r^6`` (a pole and a zero nearly shared: a ring of a
        few pixels folded over, which a review found 256 samples missing); tangential, prism and
        tilt terms add to the radial mapping, so they move such a ring little."""
        d = list(self.distortion) + [0.0] * 14
        radii = [] if self.fold_radius is None else [self.fold_radius]
        for k3, k2, k1 in ((d[4], d[1], d[0]), (d[7], d[6], d[5])):
            roots = np.roots(np.trim_zeros(np.array([k3, k2, k1, 1.0]), "f"))
            s = roots.real[(np.abs(roots.imag) <= 1e-12 * np.abs(roots)) & (roots.real > 0)]
            radii.extend(np.sqrt(s))
        return np.arctan(np.asarray(radii, np.float64))

    @functools.cached_property
    def _fold_radii(self) -> np.ndarray:
        """``(FOLD_DIRECTIONS,)`` for the directions ``2 pi i / n`` about the axis (from ``x``
        towards ``y``), the normalised radius (``x / z``) along each at which the whole pinhole
        model first turns back: the determinant of its Jacobian (:meth:`_through_jacobian`) stops
        being positive and finite, the picture folding over (a tangential, prism or tilt model's
        fold need not be a circle); ``inf`` where it does not below 90 degrees. For radial terms
        alone it is their turn (:attr:`fold_radius`, here to 1e-12 rad) in every direction.
        Sampled at :data:`FOLD_SAMPLES` angles and at 41 within 0.03 rad of each of
        :meth:`_fold_hints` (down to 1e-9 rad apart), the turn then found by bisection between the
        last sample where the determinant is positive and the next. Computed once (about 0.1 s)."""
        n = self.FOLD_DIRECTIONS
        phi = np.arange(n) * (2 * math.pi / n)
        ways = np.stack([np.cos(phi), np.sin(phi)], 1)
        near = np.geomspace(1e-9, 0.03, 20)
        hints = self._fold_hints()
        angles = np.unique(np.concatenate([np.linspace(0.0, math.pi / 2, self.FOLD_SAMPLES + 1)[1:-1],
                                           (hints[:, None] + np.concatenate([-near, [0.0], near])).reshape(-1)]))
        angles = angles[(angles > 0) & (angles < math.pi / 2)]

        def unfolded(angle: np.ndarray, which: np.ndarray) -> np.ndarray:
            points = (np.tan(angle)[..., None] * ways[which][(slice(None),) + (None,) * (angle.ndim - 1)])
            _, j = self._through_jacobian(points.reshape(-1, 2))
            with np.errstate(all="ignore"):
                det = j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]
            return (det > 0).reshape(angle.shape)

        everywhere = np.arange(n)
        bad = ~unfolded(np.broadcast_to(angles, (n, len(angles))), everywhere)
        turns = np.flatnonzero(bad.any(1))
        radii = np.full(n, np.inf)
        if len(turns):
            first = bad[turns].argmax(1)
            lo = np.where(first > 0, angles[np.maximum(first - 1, 0)], 0.0)
            hi = angles[first]
            for _ in range(40):  # (to 1e-12 of a radian)
                mid = (lo + hi) / 2
                good = unfolded(mid, turns)
                lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
            radii[turns] = np.tan(lo)
        radii.flags.writeable = False
        return radii

    @property
    def turns_back(self) -> bool:
        """Whether the lens model turns back anywhere in front of the camera (:meth:`beyond_fold`)."""
        if self.fisheye or self._radial_only:
            return self.fold_radius is not None
        return bool(np.isfinite(self._fold_radii).any())

    def beyond_fold(self, points: np.ndarray) -> np.ndarray:
        """Whether each undistorted normalised point ``(N, 2)`` (``x / z``, ``y / z``) lies at or past
        where the lens model first turns back along its ray from the axis, ``(N,)`` bool: its
        pixel is another ray's (the picture folded over: shown there, it is mirrored), as are
        non-finite points. A radial model (the fisheye, or a pinhole of radial terms alone) by
        :attr:`fold_radius`; others by :attr:`_fold_radii`, the nearer of the two nearest
        directions sampled (0.5 degrees apart; linear between them, a review found, put rays
        between one whose fold is near and one whose fold is far, or none, past the fold)."""
        points = np.asarray(points, np.float64)
        with np.errstate(all="ignore"):
            return ~(np.hypot(points[:, 0], points[:, 1]) < self._fold_along(points))

    def _fold_along(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` the normalised radius at which the model first turns back along each point's
        direction from the axis (inf: nowhere; :meth:`beyond_fold`)."""
        if self.fisheye or self._radial_only:
            return np.full(len(points), np.inf if self.fold_radius is None else self.fold_radius)
        radii = self._fold_radii
        n = len(radii)
        with np.errstate(all="ignore"):
            at = np.arctan2(points[:, 1], points[:, 0]) % (2 * math.pi) * (n / (2 * math.pi))
        below = np.floor(np.where(np.isfinite(at), at, 0.0)).astype(np.int64)
        return np.minimum(radii[below % n], radii[(below + 1) % n])

    @property
    def _nearest_fold(self) -> float:
        """The smallest normalised radius at which the model turns back in any direction (inf: none)."""
        if self.fisheye or self._radial_only:
            return math.inf if self.fold_radius is None else self.fold_radius
        return float(self._fold_radii.min())

    def _newton(self, distorted: np.ndarray, start: np.ndarray, iterations: int = 30) -> np.ndarray:
        """The undistorted normalised points ``(N, 2)`` whose projection through the whole pinhole
        model (``cv2.projectPoints`` with an identity matrix: OpenCV's radial, tangential, prism and
        tilt terms) is ``distorted``, by Newton's method (OpenCV's Jacobian:
        :meth:`_through_jacobian`) from ``start``, each step halved (up to 12 times) until it
        brings the point nearer (a review: undamped steps from every start overshot, 1447 pixels
        around a 14-coefficient lens's picture had no ray) and, from a start short of the fold,
        keeps it short of the fold (:meth:`beyond_fold`: the pixel's own ray, not another's);
        NaN where ``start`` is, or where it does not converge to 1e-10 (a point the model does
        not reach)."""
        out = np.full(distorted.shape, np.nan)
        live = np.flatnonzero(np.isfinite(start).all(1))
        x, target = start[live].copy(), distorted[live]
        folds = self.turns_back
        keep = ~self.beyond_fold(x) if folds else np.zeros(len(x), bool)
        for _ in range(iterations):
            at, j = self._through_jacobian(x)
            residual = at - target
            size = np.abs(residual).max(1)
            done = size < 1e-12
            if done.all():
                break
            with np.errstate(all="ignore"):  # (the 2 x 2 system by hand: a singular one, far out, gives NaN)
                det = j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0]
                move = np.stack([j[:, 1, 1] * residual[:, 0] - j[:, 0, 1] * residual[:, 1],
                                 j[:, 0, 0] * residual[:, 1] - j[:, 1, 0] * residual[:, 0]], 1) / det[:, None]
            step = np.where(done, 0.0, 1.0)
            for _ in range(13):
                trial = x - step[:, None] * move
                with np.errstate(all="ignore"):
                    worse = ~(np.abs(self._through(trial) - target).max(1) < size)
                if folds:
                    worse |= keep & self.beyond_fold(trial)
                worse &= step > 0
                if not worse.any():
                    break
                step = np.where(worse, step / 2, step)
            moved = (step > 0) & ~worse  # (no step of 1/4096 brings it nearer: it stays, and is not found)
            if not moved.any():
                break
            x = np.where(moved[:, None], x - step[:, None] * move, x)
        with np.errstate(all="ignore"):
            converged = np.isfinite(x).all(1) & (np.abs(self._through(x) - target).max(1) < 1e-10)
        out[live[converged]] = x[converged]
        return out

    @property
    def _radial_only(self) -> bool:
        """A pinhole model with radial terms alone (no tangential ``p1``, ``p2``, prism or tilt)."""
        d = list(self.distortion) + [0.0] * 14
        return not self.fisheye and all(d[i] == 0 for i in (2, 3, *range(8, 14)))

    def _size(self) -> tuple[int, int]:
        if self.image_size is None:
            raise ValueError("the calibration has no picture size: fit it to the frames first (fit)")
        return self.image_size

    def _new_matrix(self, camera: ImageCamera) -> np.ndarray:
        """``camera`` (:meth:`undistorted`) as an OpenCV camera matrix (OpenCV's pixel convention)."""
        return np.array([[camera.focal[0], 0.0, camera.princpt[0] - 0.5],
                         [0.0, camera.focal[1], camera.princpt[1] - 0.5], [0.0, 0.0, 1.0]])

    def undistort_maps(self, camera: ImageCamera) -> tuple[np.ndarray, np.ndarray]:
        """OpenCV's remap tables (``cv2.initUndistortRectifyMap``'s, fixed-point ``CV_16SC2``)
        taking a source picture of :attr:`image_size` to ``camera`` (:meth:`undistorted`): for
        ``cv2.remap(image, *maps, cv2.INTER_LINEAR)``. Where the lens model turns back
        (:attr:`fold_radius`: a wide fisheye's margins past the source's border), the tables
        point outside the source: black, not the picture again (:meth:`beyond_fold`: a radial
        model's :attr:`fold_radius`, or where a tangential, prism or tilt model folds, which a
        review found showing 3.5 % of a picture mirrored)."""
        import cv2

        k = np.asarray(self.matrix, np.float64)
        new = self._new_matrix(camera)
        w, h = camera.image_size
        if self.fisheye:
            map_x, map_y = cv2.fisheye.initUndistortRectifyMap(k, self._coefficients(), np.eye(3), new, (w, h),
                                                               cv2.CV_32FC1)
        else:
            map_x, map_y = cv2.initUndistortRectifyMap(k, self._coefficients(), None, new, (w, h), cv2.CV_32FC1)
        if self.turns_back:  # (by bands of rows, the pixels past the nearest fold only: a review's 4000x3000
            # picture took 1.1 GB at once)
            (fx, fy), (cx, cy) = camera.focal, camera.princpt
            xs, ys = (np.arange(w) + 0.5 - cx) / fx, (np.arange(h) + 0.5 - cy) / fy
            for top in range(0, h, 256):
                band = ys[top:top + 256]
                rows, cols = np.nonzero(np.hypot(xs[None, :], band[:, None]) >= self._nearest_fold)
                beyond = self.beyond_fold(np.stack([xs[cols], band[rows]], 1))
                map_x[top + rows[beyond], cols[beyond]] = map_y[top + rows[beyond], cols[beyond]] = -10.0
        return cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)

    def distort_pixels(self, camera: ImageCamera, pixels: np.ndarray) -> np.ndarray:
        """Where points at ``pixels`` of the undistorted picture (``camera``, :meth:`undistorted`)
        are in the source picture: ``(..., 2)`` pixels (wbcap's convention: the top-left pixel's
        corner at 0) -> ``(..., 2)`` float64 source pixels, through OpenCV's lens model
        (``cv2.projectPoints``, ``cv2.fisheye.projectPoints``). Non-finite inputs stay NaN."""
        uv = np.asarray(pixels, np.float64)
        flat = uv.reshape(-1, 2)
        ok = np.isfinite(flat).all(1)
        out = np.full(flat.shape, np.nan)
        if ok.any():
            rays = np.ones((int(ok.sum()), 3))
            rays[:, :2] = (flat[ok] - np.asarray(camera.princpt)) / np.asarray(camera.focal)
            out[ok] = self._project(rays) + 0.5
        return out.reshape(uv.shape)

    def undistort_pixels(self, camera: ImageCamera, pixels: np.ndarray) -> np.ndarray:
        """Where points at ``pixels`` of the source picture are in the undistorted picture
        (``camera``, :meth:`undistorted`): ``(..., 2)`` pixels (wbcap's convention) -> ``(..., 2)``
        float64 pixels, the inverse of :meth:`distort_pixels` (:meth:`_normalised`). Non-finite
        inputs, and pixels no ray gives, are NaN."""
        uv = np.asarray(pixels, np.float64)
        flat = uv.reshape(-1, 2)
        ok = np.isfinite(flat).all(1)
        out = np.full(flat.shape, np.nan)
        if ok.any():
            out[ok] = self._normalised(flat[ok] - 0.5) * np.asarray(camera.focal) + np.asarray(camera.princpt)
        return out.reshape(uv.shape)

    def to_dict(self, pose: bool = True) -> dict:
        """JSON-able (``meta.json``'s ``calibration``, a resume's fingerprint): ``image_size``,
        ``matrix``, ``distortion``, ``fisheye``, ``name``, ``file``, ``scale``, and with a pose
        (unless ``pose`` is False) its ``rotation`` and ``translation`` (:meth:`CameraPose.to_dict`)."""
        return {"image_size": None if self.image_size is None else list(self.image_size),
                "matrix": [list(r) for r in self.matrix], "distortion": list(self.distortion),
                "fisheye": self.fisheye, "name": self.name, "file": self.file, "scale": self.scale,
                **(self.pose.to_dict() if pose and self.pose is not None else {})}

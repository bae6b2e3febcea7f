"""Person boxes and the affine body crop, matching upstream Hand4Whole's preprocessing exactly.

Semantics follow upstream ``common/utils/preprocessing.py`` (``sanitize_bbox``, ``process_bbox``,
``generate_patch_image``, ``gen_trans_from_patch_cv``) as used by ``demo/demo.py``: a detector box
(xywh, Python floats, i.e. float64) is sanitized, expanded to the 384/512 aspect ratio and scaled
by 1.25, and the image is warped with ``cv2.warpAffine(INTER_LINEAR)`` on the **uint8** image into
a 512x384 patch which is then cast to float32 (0..255) and divided by 255.

Conventions:
    * Images are ``(H, W, 3)`` uint8 **RGB** (as upstream after ``cv2.cvtColor(BGR2RGB)``).
    * Boxes are in pixel coordinates of the original image, ``xywh = [x1, y1, w, h]`` and
      ``xyxy = [x1, y1, x2, y2]`` with ``x2 = x1 + w`` (no ``+1``).
    * Affine transforms are ``(2, 3)`` float32 matrices acting on column vectors ``[x, y, 1]``
      (OpenCV convention); ``trans`` maps image -> patch, ``inv_trans`` patch -> image.
    * ``out_shape`` is ``(height, width)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import cv2
import numpy as np
import torch
from torch import Tensor

from wbcap.config import BODY_BOX_SCALE, ModelConfig

__all__ = [
    "BODY_ASPECT_RATIO",
    "BODY_BOX_SCALE",
    "crop_image",
    "crops_to_tensor",
    "get_affine_transform",
    "process_bbox",
    "process_bboxes",
    "sanitize_bbox",
    "sanitize_bboxes",
    "transform_points",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]

BODY_INPUT_SHAPE: tuple[int, int] = tuple(ModelConfig.input_img_shape)  # type: ignore[assignment]
"""Upstream ``cfg.input_img_shape`` (height, width) of the body crop: (512, 384), the released
network's (:attr:`wbcap.config.ModelConfig.input_img_shape`)."""
BODY_ASPECT_RATIO: float = BODY_INPUT_SHAPE[1] / BODY_INPUT_SHAPE[0]  # 0.75 exactly
"""Width / height of the body crop."""

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


# ----------------------------------------------------------------------------------------------
# box format conversion
# ----------------------------------------------------------------------------------------------
def xyxy_to_xywh(boxes: ArrayT) -> ArrayT:
    """``(..., 4)`` ``[x1, y1, x2, y2]`` -> ``[x1, y1, x2 - x1, y2 - y1]`` (numpy or torch, same dtype)."""
    if isinstance(boxes, Tensor):
        return torch.cat([boxes[..., :2], boxes[..., 2:4] - boxes[..., :2]], dim=-1)
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[..., :2], boxes[..., 2:4] - boxes[..., :2]], axis=-1)


def xywh_to_xyxy(boxes: ArrayT) -> ArrayT:
    """``(..., 4)`` ``[x1, y1, w, h]`` -> ``[x1, y1, x1 + w, y1 + h]`` (numpy or torch, same dtype)."""
    if isinstance(boxes, Tensor):
        return torch.cat([boxes[..., :2], boxes[..., :2] + boxes[..., 2:4]], dim=-1)
    boxes = np.asarray(boxes)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:4]], axis=-1)


# ----------------------------------------------------------------------------------------------
# box sanitizing / aspect expansion
# ----------------------------------------------------------------------------------------------
def sanitize_bboxes(xywh: np.ndarray, img_w: float, img_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Batched upstream ``sanitize_bbox``.

    Upstream semantics, including its quirk: the top-left corner is clamped to ``>= 0`` and the
    box is **shifted** (not clipped) there, keeping ``w - 1`` / ``h - 1`` before clipping the far
    corner to ``img_w - 1`` / ``img_h - 1``::

        x1 = max(0, x);  x2 = min(img_w - 1, x1 + max(0, w - 1))   (same for y)
        valid = w * h > 0 and x2 > x1 and y2 > y1

    Args:
        xywh: ``(B, 4)`` boxes ``[x, y, w, h]``; computed in float64 (what upstream gets from the
            demo's Python-float boxes).
        img_w, img_h: image size in pixels.

    Returns:
        ``(B, 4)`` float64 ``[x1, y1, x2 - x1, y2 - y1]`` (rows of invalid boxes are meaningless)
        and ``(B,)`` bool validity mask.
    """
    b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    x, y, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    x1 = np.maximum(0.0, x)
    y1 = np.maximum(0.0, y)
    x2 = np.minimum(img_w - 1, x1 + np.maximum(0.0, w - 1))
    y2 = np.minimum(img_h - 1, y1 + np.maximum(0.0, h - 1))
    valid = (w * h > 0) & (x2 > x1) & (y2 > y1)
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1), valid


def sanitize_bbox(xywh: Sequence[float] | np.ndarray, img_w: float, img_h: float) -> np.ndarray | None:
    """Upstream ``sanitize_bbox`` for one ``(4,)`` xywh box: float64 ``(4,)`` xywh or None if degenerate.

    See :func:`sanitize_bboxes` for the exact rule.
    """
    out, valid = sanitize_bboxes(np.asarray(xywh, dtype=np.float64).reshape(1, 4), img_w, img_h)
    return out[0] if bool(valid[0]) else None


def process_bboxes(
    xywh: np.ndarray,
    img_w: float,
    img_h: float,
    aspect_ratio: float = BODY_ASPECT_RATIO,
    scale: float = BODY_BOX_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched upstream ``process_bbox``: sanitize, expand to ``aspect_ratio`` (w/h), scale, keep centre.

    The shorter side is grown so that ``w / h == aspect_ratio`` (float64 arithmetic as upstream),
    then both sides are multiplied by ``scale`` around the sanitized box centre.

    Args:
        xywh: ``(B, 4)`` boxes ``[x, y, w, h]`` in image pixels.
        img_w, img_h: image size in pixels.
        aspect_ratio: target width / height (upstream: 384 / 512).
        scale: enlargement (upstream: 1.25).

    Returns:
        ``(B, 4)`` float32 xywh boxes and ``(B,)`` bool validity mask (False where upstream
        returns None).
    """
    san, valid = sanitize_bboxes(xywh, img_w, img_h)
    x1, y1, w, h = san[:, 0], san[:, 1], san[:, 2], san[:, 3]
    c_x = x1 + w / 2.0
    c_y = y1 + h / 2.0
    ar_h = aspect_ratio * h
    new_h = np.where(w > ar_h, w / aspect_ratio, h)
    new_w = np.where(w < ar_h, h * aspect_ratio, w)
    out_w = new_w * scale
    out_h = new_h * scale
    out = np.stack([c_x - out_w / 2.0, c_y - out_h / 2.0, out_w, out_h], axis=1).astype(np.float32)
    return out, valid


def process_bbox(
    xywh: Sequence[float] | np.ndarray,
    img_w: float,
    img_h: float,
    aspect_ratio: float = BODY_ASPECT_RATIO,
    scale: float = BODY_BOX_SCALE,
) -> np.ndarray | None:
    """Upstream ``process_bbox`` for one ``(4,)`` xywh box: ``(4,)`` float32 xywh, or None if degenerate.

    See :func:`process_bboxes`.
    """
    out, valid = process_bboxes(np.asarray(xywh, dtype=np.float64).reshape(1, 4), img_w, img_h, aspect_ratio, scale)
    return out[0] if bool(valid[0]) else None


# ----------------------------------------------------------------------------------------------
# affine crop
# ----------------------------------------------------------------------------------------------
def _rotate_f32(x: float, y: float, rot_rad: float) -> np.ndarray:
    """Rotate the float32-rounded point ``(x, y)`` by ``rot_rad`` in float64, return float32 ``(2,)``."""
    x64 = float(np.float32(x))
    y64 = float(np.float32(y))
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return np.array([x64 * cs - y64 * sn, x64 * sn + y64 * cs], dtype=np.float32)


def get_affine_transform(
    c_x: float,
    c_y: float,
    src_w: float,
    src_h: float,
    dst_w: float,
    dst_h: float,
    scale: float = 1.0,
    rot_deg: float = 0.0,
    inv: bool = False,
) -> np.ndarray:
    """Upstream ``gen_trans_from_patch_cv``: affine map from a (rotated, scaled) box to a patch.

    Maps the box centre ``(c_x, c_y)`` to the patch centre ``(dst_w / 2, dst_h / 2)``, the box's
    half-height down-vector (rotated by ``rot_deg`` counter-clockwise in image coordinates, i.e.
    visually as upstream) to ``(0, dst_h / 2)`` and its half-width right-vector to
    ``(dst_w / 2, 0)``; the box is ``src_w * scale`` by ``src_h * scale``. The three point pairs
    are float32 (as upstream) and solved with ``cv2.getAffineTransform``.

    Args:
        c_x, c_y: box centre in image pixels.
        src_w, src_h: box size in image pixels.
        dst_w, dst_h: patch size in pixels.
        scale: box enlargement.
        rot_deg: rotation in degrees.
        inv: if True return the patch -> image transform instead.

    Returns:
        ``(2, 3)`` float32 affine matrix.
    """
    box_w = src_w * scale
    box_h = src_h * scale
    rot_rad = np.pi * rot_deg / 180
    center = np.array([c_x, c_y], dtype=np.float32)
    down = _rotate_f32(0.0, box_h * 0.5, rot_rad)
    right = _rotate_f32(box_w * 0.5, 0.0, rot_rad)
    src = np.stack([center, center + down, center + right]).astype(np.float32)

    dst_center = np.array([dst_w * 0.5, dst_h * 0.5], dtype=np.float32)
    dst = np.stack(
        [
            dst_center,
            dst_center + np.array([0, dst_h * 0.5], dtype=np.float32),
            dst_center + np.array([dst_w * 0.5, 0], dtype=np.float32),
        ]
    ).astype(np.float32)
    trans = cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)
    return trans.astype(np.float32)


def crop_image(
    img: np.ndarray,
    bbox_xywh: Sequence[float] | np.ndarray,
    out_shape: tuple[int, int] = BODY_INPUT_SHAPE,
    scale: float = 1.0,
    rot_deg: float = 0.0,
    flip: bool = False,
    dtype: type | None = np.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upstream ``generate_patch_image``: warp the box region of ``img`` into an ``out_shape`` patch.

    ``cv2.warpAffine`` with ``INTER_LINEAR`` and a constant-0 border on the image as given (uint8 for
    the upstream demo), then cast to float32 (``dtype``; None keeps the image's dtype: a uint8
    patch holds the same values, in a quarter of the memory). With ``flip`` the image is mirrored horizontally first
    and the box centre becomes ``img_w - c_x - 1``; the returned transforms then refer to the
    **mirrored** image (as upstream).

    Args:
        img: ``(H, W, 3)`` image, uint8 RGB (any channel order is preserved).
        bbox_xywh: ``(4,)`` box ``[x, y, w, h]``, usually from :func:`process_bbox`.
        out_shape: patch ``(height, width)``.
        scale: box enlargement (augmentation; 1.0 at test time).
        rot_deg: rotation in degrees (augmentation; 0 at test time).
        flip: mirror horizontally.
        dtype: the patch's dtype (see above).

    Returns:
        ``patch`` ``(h, w, 3)`` float32 (or ``dtype``) in 0..255, ``trans`` ``(2, 3)`` float32 image -> patch and
        ``inv_trans`` ``(2, 3)`` float32 patch -> image.
    """
    if img.ndim != 3:
        raise ValueError(f"img must be (H, W, C), got shape {img.shape}")
    img_w = img.shape[1]
    bbox = np.asarray(bbox_xywh)
    c_x = float(bbox[0] + 0.5 * bbox[2])
    c_y = float(bbox[1] + 0.5 * bbox[3])
    bw = float(bbox[2])
    bh = float(bbox[3])
    if flip:
        img = np.ascontiguousarray(img[:, ::-1, :])
        c_x = img_w - c_x - 1
    out_h, out_w = int(out_shape[0]), int(out_shape[1])
    trans = get_affine_transform(c_x, c_y, bw, bh, out_w, out_h, scale, rot_deg)
    inv_trans = get_affine_transform(c_x, c_y, bw, bh, out_w, out_h, scale, rot_deg, inv=True)
    if max(img.shape[:2]) < _CV_MAX_SIDE:
        patch = cv2.warpAffine(img, trans, (out_w, out_h), flags=cv2.INTER_LINEAR)
    else:
        patch = _warp_from_footprint(img, trans, inv_trans, (out_w, out_h))
    if patch.ndim == 2:  # cv2 drops a singleton channel axis
        patch = patch[:, :, None]
    return (patch if dtype is None else patch.astype(dtype)), trans, inv_trans


#: OpenCV's remap (inside warpAffine) takes images under ``SHRT_MAX`` pixels a side: a 40000 x 342
#: panorama failed its assertion (a crash report; a user trial), within wbcap's 268 MP limit.
_CV_MAX_SIDE = 32767


def _warp_from_footprint(img: np.ndarray, trans: np.ndarray, inv_trans: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.warpAffine(img, trans, size, INTER_LINEAR)`` for an image OpenCV's remap refuses
    (:data:`_CV_MAX_SIDE`): the same warp from the part of ``img`` the patch samples (its corners
    mapped back by ``inv_trans``, 2 pixels more for the bilinear taps, clipped to the image), the
    transform shifted to that part's origin. The same pixels: outside the image both see the
    constant-0 border. A part still too large (a box itself over 32766 pixels wide, as
    ``--full-image`` on a panorama) is first shrunk by area averaging (``cv2.INTER_AREA``) to
    fit, the transform scaled to match. ``size``: ``(width, height)`` of the patch."""
    out_w, out_h = size
    corners = np.array([[0, 0, 1], [out_w, 0, 1], [0, out_h, 1], [out_w, out_h, 1]], np.float64)
    xy = corners @ np.asarray(inv_trans, np.float64).T
    h, w = img.shape[:2]
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in xy.min(0))
    x1, y1 = min(w, int(np.ceil(xy[:, 0].max())) + 3), min(h, int(np.ceil(xy[:, 1].max())) + 3)
    if x1 <= x0 or y1 <= y0:  # (the patch lies wholly outside the image)
        return np.zeros((out_h, out_w, *img.shape[2:]), img.dtype)
    shifted = np.asarray(trans, np.float64).copy()
    shifted[:, 2] += shifted[:, :2] @ np.array([x0, y0], np.float64)
    part = np.ascontiguousarray(img[y0:y1, x0:x1])
    if max(part.shape[:2]) >= _CV_MAX_SIDE:  # (a box itself that wide, e.g. --full-image: area-averaged first)
        f = (_CV_MAX_SIDE - 1) / max(part.shape[:2])
        small = (max(1, round(part.shape[1] * f)), max(1, round(part.shape[0] * f)))
        fx, fy = small[0] / part.shape[1], small[1] / part.shape[0]
        part = cv2.resize(part, small, interpolation=cv2.INTER_AREA)
        # a pixel x of the part is (x + 0.5) * fx - 0.5 of the resized one (cv2.resize's centres)
        a = shifted[:, :2] / np.array([fx, fy])
        shifted = np.concatenate([a, (shifted[:, 2] + shifted[:, :2] @ np.array([0.5 / fx - 0.5, 0.5 / fy - 0.5]))[:, None]], 1)
    return cv2.warpAffine(part, shifted, (out_w, out_h), flags=cv2.INTER_LINEAR)


def crops_to_tensor(
    patches: Sequence[np.ndarray] | np.ndarray, device: torch.device | str | None = None
) -> Tensor:
    """Stack ``(h, w, 3)`` float32 0..255 patches into the network input.

    Same as upstream ``transforms.ToTensor()(patch.astype(np.float32)) / 255`` (ToTensor does not
    rescale float input).

    Args:
        patches: ``B`` arrays ``(h, w, 3)`` or one ``(B, h, w, 3)`` array; colour order preserved
            (RGB for the model).
        device: target device (default CPU).

    Returns:
        ``(B, 3, h, w)`` float32 tensor in 0..1.
    """
    if isinstance(patches, np.ndarray):
        arr = patches.astype(np.float32, copy=False)
        if arr.ndim == 3:
            arr = arr[None]
    else:
        arr = np.stack([np.asarray(p, dtype=np.float32) for p in patches]) if len(patches) else None
        if arr is None:
            raise ValueError("crops_to_tensor needs at least one patch")
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device)
    return t.permute(0, 3, 1, 2).contiguous() / 255


def transform_points(points: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to ``(..., 2)`` xy points: ``trans @ [x, y, 1]``.

    Returns an array of shape ``(..., 2)`` in the promoted float dtype of the inputs.
    """
    points = np.asarray(points)
    trans = np.asarray(trans)
    return points @ trans[:, :2].T + trans[:, 2]
